// safetensors reader (docs/DESIGN.md §6, §8).
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON (may be space-padded), then the
// data section. The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the data section) plus an optional "__metadata__" string -> string object.
//
// The file is untrusted. Everything is checked before use, and every failure is an InputError
// naming the file and the field: N is bounded before anything is sized by it, the header is parsed
// by a small strict JSON parser (StrictJSON.swift: JSONSerialization would drop duplicate names), byte
// counts use overflow-checked arithmetic, and the tensors must tile the data section exactly —
// sorted by offset, starting at 0, no overlap, no gap, no trailing bytes.

import Foundation
import MyopiaSupport

public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8", bool = "BOOL"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
        }
    }
}

public struct SafeTensorsFile: Sendable {
    public struct Entry: Equatable, Sendable {
        public let name: String
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        /// Absolute byte range within the whole file (header included).
        public let byteRange: Range<Int>
        public var elementCount: Int { shape.reduce(1, *) }   // validated not to overflow
    }

    /// A file's header, validated against the file's size: what it holds, without the data.
    /// `SafeTensorsFile.readHeader(of:)` reads one from disk without reading the data section (a
    /// sharded checkpoint's shards are all checked before any is converted).
    public struct Header: Equatable, Sendable {
        /// The file path or caller-given name used in error messages.
        public let source: String
        /// Tensors in file data order (ascending offset).
        public let entries: [Entry]
        public let metadata: [String: String]
        /// Size of the JSON header, N (excludes the 8-byte length prefix).
        public let headerByteCount: Int
        /// Size of the whole file; the data section is its last fileSize - 8 - N bytes.
        public let fileSize: Int
        private let index: [String: Int]

        public subscript(name: String) -> Entry? {
            index[name].map { entries[$0] }
        }

        public var names: [String] { entries.map(\.name) }

        /// Parses and checks the header of a file of `fileSize` bytes whose first bytes are
        /// `prefix` (the length prefix and the N bytes of JSON; more is ignored).
        init(prefix: UnsafeRawBufferPointer, fileSize total: Int, source: String) throws {
            self.source = source
            self.fileSize = total
            guard total >= 8, prefix.count >= 8 else {
                throw InputError.truncated(file: source, field: "header length", expected: "at least 8 bytes", found: "\(min(total, prefix.count)) bytes")
            }
            let n64 = UInt64(littleEndian: prefix.loadUnaligned(as: UInt64.self))
            guard n64 <= UInt64(SafeTensorsFile.maxHeaderBytes) else {
                throw InputError.invalidValue(file: source, field: "header length", expected: "at most \(SafeTensorsFile.maxHeaderBytes) bytes", found: "\(n64)")
            }
            let n = Int(n64)
            guard n <= total - 8, n <= prefix.count - 8 else {
                throw InputError.truncated(file: source, field: "header", expected: "\(n) bytes of JSON (header length)", found: "\(min(total, prefix.count) - 8) bytes after the length prefix")
            }
            headerByteCount = n
            let dataStart = 8 + n
            let dataLength = total - dataStart

            let json = UnsafeRawBufferPointer(rebasing: prefix[8..<dataStart])
            guard String(bytes: json, encoding: .utf8) != nil else {
                throw InputError.invalidHeader(file: source, field: "header", reason: "not valid UTF-8")
            }
            var parser = StrictJSON.Parser(bytes: json)
            let root: StrictJSON.Value
            do { root = try parser.parseDocument() } catch let e as StrictJSON.ParseError {
                throw InputError.invalidHeader(file: source, field: "header", reason: "invalid JSON at byte \(e.offset): \(e.message)")
            }
            guard case .object(let members) = root else {
                throw InputError.invalidHeader(file: source, field: "header", reason: "expected a JSON object, found \(root.kind)")
            }

            var seen = Set<String>()
            var metadata: [String: String] = [:]
            var parsed: [(entry: Entry, begin: Int, end: Int)] = []
            for (name, value) in members {
                guard seen.insert(name).inserted else {
                    let what = name == "__metadata__" ? "__metadata__" : "tensor \(quoted(name))"
                    throw InputError.invalidHeader(file: source, field: what, reason: "appears more than once in the header")
                }
                if name == "__metadata__" {
                    metadata = try SafeTensorsFile.parseMetadata(value, source: source)
                    continue
                }
                parsed.append(try SafeTensorsFile.parseEntry(name: name, value: value, source: source, dataStart: dataStart, dataLength: dataLength))
            }

            // The tensors must tile [0, dataLength) exactly.
            parsed.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
            var cursor = 0
            var previous: String? = nil
            for p in parsed {
                let field = "tensor \(quoted(p.entry.name)) data_offsets [\(p.begin), \(p.end)]"
                if p.begin < cursor, let previous {
                    throw InputError.invalidValue(file: source, field: field, expected: "begin \(cursor) (end of tensor \(quoted(previous)))", found: "begin \(p.begin), overlapping tensor \(quoted(previous))")
                }
                if p.begin > cursor {
                    let after = previous.map { "after tensor \(quoted($0))" } ?? "at the start of the data section"
                    throw InputError.invalidValue(file: source, field: field, expected: "begin \(cursor)", found: "begin \(p.begin), a gap of \(p.begin - cursor) bytes \(after)")
                }
                cursor = p.end
                previous = p.entry.name
            }
            if cursor != dataLength {
                throw InputError.invalidValue(file: source, field: "data section", expected: "\(cursor) bytes (end of the last tensor)", found: "\(dataLength) bytes (\(dataLength - cursor) trailing bytes)")
            }

            self.entries = parsed.map(\.entry)
            self.metadata = metadata
            var index: [String: Int] = [:]
            for (i, e) in entries.enumerated() { index[e.name] = i }
            self.index = index
        }
    }

    /// Largest header accepted; real headers are a few hundred KB at most.
    public static let maxHeaderBytes = 100_000_000

    public let header: Header
    private let data: Data

    /// The file path or caller-given name used in error messages.
    public var source: String { header.source }
    /// Tensors in file data order (ascending offset).
    public var entries: [Entry] { header.entries }
    public var metadata: [String: String] { header.metadata }
    /// Size of the JSON header, N (excludes the 8-byte length prefix).
    public var headerByteCount: Int { header.headerByteCount }

    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        try self.init(data: data, source: url.path)
    }

    public init(data: Data, source: String) throws {
        self.data = data
        header = try data.withUnsafeBytes { try Header(prefix: $0, fileSize: data.count, source: source) }
    }

    /// The header of the file at `url`, checked against the file's size, read without its data
    /// section (the first 8 + N bytes only).
    public static func readHeader(of url: URL) throws -> Header {
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: url) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        defer { try? handle.close() }
        let size: UInt64
        var prefix: Data
        do {
            size = try handle.seekToEnd()
            try handle.seek(toOffset: 0)
            prefix = try handle.read(upToCount: 8) ?? Data()
            if prefix.count == 8 {
                let n = prefix.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                if n <= UInt64(maxHeaderBytes), size >= 8, n <= size - 8, n > 0 {
                    prefix += try handle.read(upToCount: Int(n)) ?? Data()
                }
            }
        } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        guard size <= UInt64(Int.max) else {
            throw InputError.invalidValue(file: url.path, field: "file size", expected: "at most \(Int.max) bytes", found: "\(size)")
        }
        return try prefix.withUnsafeBytes { try Header(prefix: $0, fileSize: Int(size), source: url.path) }
    }

    public subscript(name: String) -> Entry? { header[name] }

    public var names: [String] { header.names }

    /// The tensor's raw little-endian bytes.
    public func withBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let entry = try lookup(name)
        return try data.withUnsafeBytes { raw in try body(UnsafeRawBufferPointer(rebasing: raw[entry.byteRange])) }
    }

    /// The tensor as fp32. F32 is copied, F16 / BF16 / F64 are converted; other dtypes throw `.unsupported`.
    public func floats(_ name: String) throws -> [Float] {
        let entry = try lookup(name)
        var out = [Float](repeating: 0, count: entry.elementCount)
        try out.withUnsafeMutableBufferPointer { try copyFloats(entry, into: $0) }
        return out
    }

    /// Converts into a caller-owned buffer (e.g. a view of a flat parameter buffer); its count must
    /// equal the tensor's element count.
    public func copyFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try copyFloats(try lookup(name), into: destination)
    }

    public func int64s(_ name: String) throws -> [Int64] {
        let entry = try lookup(name)
        return try integers(entry) { Int64(exactly: $0) }
    }

    public func int32s(_ name: String) throws -> [Int32] {
        let entry = try lookup(name)
        return try integers(entry) { Int32(exactly: $0) }
    }

    // MARK: - Conversion

    private func lookup(_ name: String) throws -> Entry {
        guard let entry = self[name] else { throw InputError.missing(file: source, field: "tensor \(quoted(name))") }
        return entry
    }

    private func copyFloats(_ entry: Entry, into destination: UnsafeMutableBufferPointer<Float>) throws {
        let count = entry.elementCount
        guard destination.count == count else {
            throw InputError.invalidValue(file: source, field: "tensor \(quoted(entry.name)) shape \(entry.shape)", expected: "a destination of \(count) floats", found: "\(destination.count)")
        }
        guard count > 0, let out = destination.baseAddress else { return }
        try data.withUnsafeBytes { raw in
            let src = UnsafeRawBufferPointer(rebasing: raw[entry.byteRange])
            switch entry.dtype {
            case .f32:
                #if _endian(little)
                UnsafeMutableRawPointer(out).copyMemory(from: src.baseAddress!, byteCount: count * 4)
                #else
                for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))) }
                #endif
            case .f16:
                for i in 0..<count {
                    out[i] = HalfFloat.float(fromHalfBits: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                }
            case .bf16:
                for i in 0..<count {
                    out[i] = HalfFloat.float(fromBFloat16Bits: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                }
            case .f64:
                for i in 0..<count {
                    out[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
                }
            default:
                throw InputError.unsupported(file: source, field: "tensor \(quoted(entry.name)) dtype", value: "\(entry.dtype.rawValue) (as floats; expected F32, F16, BF16 or F64)")
            }
        }
    }

    private func integers<T>(_ entry: Entry, _ convert: (Int64) -> T?) throws -> [T] {
        let count = entry.elementCount
        return try data.withUnsafeBytes { raw in
            let src = UnsafeRawBufferPointer(rebasing: raw[entry.byteRange])
            let load: (Int) -> Int64?
            switch entry.dtype {
            case .i64: load = { Int64(littleEndian: src.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
            case .u64: load = { Int64(exactly: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
            case .i32: load = { Int64(Int32(littleEndian: src.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
            case .u32: load = { Int64(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            case .i16: load = { Int64(Int16(littleEndian: src.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self))) }
            case .u16: load = { Int64(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) }
            case .i8: load = { Int64(Int8(bitPattern: src[$0])) }
            case .u8, .bool: load = { Int64(src[$0]) }
            default:
                throw InputError.unsupported(file: source, field: "tensor \(quoted(entry.name)) dtype", value: "\(entry.dtype.rawValue) (as integers)")
            }
            var out = [T]()
            out.reserveCapacity(count)
            for i in 0..<count {
                guard let wide = load(i), let v = convert(wide) else {
                    throw InputError.invalidValue(file: source, field: "tensor \(quoted(entry.name)) element \(i)", expected: "a value that fits \(T.self)", found: "out of range")
                }
                out.append(v)
            }
            return out
        }
    }

    // MARK: - Header validation

    fileprivate static func parseMetadata(_ value: StrictJSON.Value, source: String) throws -> [String: String] {
        guard case .object(let pairs) = value else {
            throw InputError.invalidValue(file: source, field: "__metadata__", expected: "an object of string values", found: value.kind)
        }
        var out: [String: String] = [:]
        for (key, v) in pairs {
            guard case .string(let s) = v else {
                throw InputError.invalidValue(file: source, field: "__metadata__[\(quoted(key))]", expected: "a string", found: v.kind)
            }
            guard out.updateValue(s, forKey: key) == nil else {
                throw InputError.invalidHeader(file: source, field: "__metadata__[\(quoted(key))]", reason: "appears more than once")
            }
        }
        return out
    }

    fileprivate static func parseEntry(name: String, value: StrictJSON.Value, source: String, dataStart: Int, dataLength: Int) throws -> (entry: Entry, begin: Int, end: Int) {
        let tensor = "tensor \(quoted(name))"
        guard case .object(let pairs) = value else {
            throw InputError.invalidValue(file: source, field: tensor, expected: "an object with dtype, shape and data_offsets", found: value.kind)
        }
        var fields: [String: StrictJSON.Value] = [:]
        for (key, v) in pairs {
            guard fields.updateValue(v, forKey: key) == nil else {
                throw InputError.invalidHeader(file: source, field: "\(tensor) \(key)", reason: "appears more than once")
            }
        }
        guard let dtypeValue = fields["dtype"] else { throw InputError.missing(file: source, field: "\(tensor) dtype") }
        guard let shapeValue = fields["shape"] else { throw InputError.missing(file: source, field: "\(tensor) shape") }
        guard let offsetsValue = fields["data_offsets"] else { throw InputError.missing(file: source, field: "\(tensor) data_offsets") }

        guard case .string(let dtypeName) = dtypeValue else {
            throw InputError.invalidValue(file: source, field: "\(tensor) dtype", expected: "a string", found: dtypeValue.kind)
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw InputError.unsupported(file: source, field: "\(tensor) dtype", value: quoted(dtypeName))
        }
        guard case .array(let dims) = shapeValue else {
            throw InputError.invalidValue(file: source, field: "\(tensor) shape", expected: "an array of non-negative integers", found: shapeValue.kind)
        }
        var shape: [Int] = []
        var elementCount = 1
        for d in dims {
            guard case .number(let text) = d, let dim = Int(text), dim >= 0 else {
                throw InputError.invalidValue(file: source, field: "\(tensor) shape", expected: "an array of non-negative integers", found: "element \(d.summary)")
            }
            shape.append(dim)
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: dim)
            guard !overflow else {
                throw InputError.invalidValue(file: source, field: "\(tensor) shape \(shape)", expected: "an element count that fits in 64 bits", found: "overflow")
            }
            elementCount = product
        }
        let (byteCount, overflow) = elementCount.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else {
            throw InputError.invalidValue(file: source, field: "\(tensor) shape \(shape)", expected: "a byte size that fits in 64 bits", found: "overflow")
        }

        guard case .array(let offsets) = offsetsValue, offsets.count == 2,
              case .number(let beginText) = offsets[0], case .number(let endText) = offsets[1],
              let begin = Int(beginText), let end = Int(endText), begin >= 0, end >= 0 else {
            throw InputError.invalidValue(file: source, field: "\(tensor) data_offsets", expected: "[begin, end] with non-negative integers", found: offsetsValue.summary)
        }
        let field = "\(tensor) data_offsets [\(begin), \(end)]"
        guard begin <= end else {
            throw InputError.invalidValue(file: source, field: field, expected: "begin ≤ end", found: "begin \(begin) > end \(end)")
        }
        guard end - begin == byteCount else {
            throw InputError.invalidValue(file: source, field: field, expected: "\(byteCount) bytes (\(dtype.rawValue) × \(shape))", found: "\(end - begin)")
        }
        guard end <= dataLength else {
            throw InputError.truncated(file: source, field: field, expected: "end ≤ \(dataLength) (size of the data section)", found: "end \(end)")
        }
        let entry = Entry(name: name, dtype: dtype, shape: shape, byteRange: (dataStart + begin)..<(dataStart + end))
        return (entry, begin, end)
    }
}
