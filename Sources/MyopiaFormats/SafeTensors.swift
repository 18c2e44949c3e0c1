// safetensors reader (docs/DESIGN.md §6, §8).
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON (may be space-padded), then the
// data section. The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the data section) plus an optional "__metadata__" string -> string object.
//
// The file is untrusted. Everything is checked before use, and every failure is an InputError
// naming the file and the field: N is bounded before anything is sized by it, the header is parsed
// by a small strict JSON parser (JSONSerialization would silently drop duplicate names), byte
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

    /// Largest header accepted; real headers are a few hundred KB at most.
    public static let maxHeaderBytes = 100_000_000

    /// The file path or caller-given name used in error messages.
    public let source: String
    /// Tensors in file data order (ascending offset).
    public let entries: [Entry]
    public let metadata: [String: String]
    /// Size of the JSON header, N (excludes the 8-byte length prefix).
    public let headerByteCount: Int
    private let data: Data
    private let index: [String: Int]

    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        try self.init(data: data, source: url.path)
    }

    public init(data: Data, source: String) throws {
        self.source = source
        self.data = data
        let total = data.count

        guard total >= 8 else {
            throw InputError.truncated(file: source, field: "header length", expected: "at least 8 bytes", found: "\(total) bytes")
        }
        let n64: UInt64 = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard n64 <= UInt64(Self.maxHeaderBytes) else {
            throw InputError.invalidValue(file: source, field: "header length", expected: "at most \(Self.maxHeaderBytes) bytes", found: "\(n64)")
        }
        let n = Int(n64)
        guard n <= total - 8 else {
            throw InputError.truncated(file: source, field: "header", expected: "\(n) bytes of JSON (header length)", found: "\(total - 8) bytes after the length prefix")
        }
        headerByteCount = n
        let dataStart = 8 + n
        let dataLength = total - dataStart

        let root: HeaderJSON.Value = try data.withUnsafeBytes { raw in
            let header = UnsafeRawBufferPointer(rebasing: raw[8..<dataStart])
            guard String(bytes: header, encoding: .utf8) != nil else {
                throw InputError.invalidHeader(file: source, field: "header", reason: "not valid UTF-8")
            }
            var parser = HeaderJSON.Parser(bytes: header)
            do { return try parser.parseDocument() } catch let e as HeaderJSON.ParseError {
                throw InputError.invalidHeader(file: source, field: "header", reason: "invalid JSON at byte \(e.offset): \(e.message)")
            }
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
                metadata = try Self.parseMetadata(value, source: source)
                continue
            }
            parsed.append(try Self.parseEntry(name: name, value: value, source: source, dataStart: dataStart, dataLength: dataLength))
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

    public subscript(name: String) -> Entry? {
        index[name].map { entries[$0] }
    }

    public var names: [String] { entries.map(\.name) }

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

    private static func parseMetadata(_ value: HeaderJSON.Value, source: String) throws -> [String: String] {
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

    private static func parseEntry(name: String, value: HeaderJSON.Value, source: String, dataStart: Int, dataLength: Int) throws -> (entry: Entry, begin: Int, end: Int) {
        let tensor = "tensor \(quoted(name))"
        guard case .object(let pairs) = value else {
            throw InputError.invalidValue(file: source, field: tensor, expected: "an object with dtype, shape and data_offsets", found: value.kind)
        }
        var fields: [String: HeaderJSON.Value] = [:]
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

private func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += "\\u{\(String(scalar.value, radix: 16))}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

// MARK: - A small strict JSON parser for headers

/// Keeps object members in order with duplicates (so they can be reported), keeps numbers as text
/// (so 64-bit offsets are exact and 1.5 is not silently an integer), and limits nesting depth so a
/// hostile header cannot exhaust the stack.
private enum HeaderJSON {
    indirect enum Value {
        case null, bool(Bool), number(String), string(String)
        case array([Value]), object([(String, Value)])

        var kind: String {
            switch self {
            case .null: return "null"
            case .bool: return "a boolean"
            case .number: return "a number"
            case .string: return "a string"
            case .array: return "an array"
            case .object: return "an object"
            }
        }

        /// Short rendering for messages.
        var summary: String {
            switch self {
            case .null: return "null"
            case .bool(let b): return "\(b)"
            case .number(let t): return t
            case .string(let s): return quoted(s.count > 40 ? String(s.prefix(40)) + "…" : s)
            case .array(let a): return "[" + a.prefix(8).map(\.summary).joined(separator: ", ") + (a.count > 8 ? ", …]" : "]")
            case .object(let o): return "{" + o.prefix(4).map { quoted($0.0) + ": …" }.joined(separator: ", ") + (o.count > 4 ? ", …}" : "}")
            }
        }
    }

    struct ParseError: Error { let offset: Int; let message: String }

    struct Parser {
        let bytes: UnsafeRawBufferPointer
        var pos = 0
        let maxDepth = 64

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func parseDocument() throws -> Value {
            skipWhitespace()
            let value = try parseValue(depth: 0)
            skipWhitespace()   // trailing space padding
            guard pos == bytes.count else { throw fail("unexpected \(describe(pos)) after the end of the JSON value") }
            return value
        }

        private func fail(_ message: String) -> ParseError { ParseError(offset: pos, message: message) }

        private func describe(_ i: Int) -> String {
            guard i < bytes.count else { return "end of header" }
            let b = bytes[i]
            return (0x21...0x7E).contains(b) ? "'\(Character(UnicodeScalar(b)))'" : "byte 0x\(String(b, radix: 16))"
        }

        private mutating func skipWhitespace() {
            while pos < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[pos]) { pos += 1 }
        }

        private mutating func parseValue(depth: Int) throws -> Value {
            guard depth < maxDepth else { throw fail("nested deeper than \(maxDepth) levels") }
            guard pos < bytes.count else { throw fail("unexpected end of header, expected a value") }
            switch bytes[pos] {
            case UInt8(ascii: "{"): return try parseObject(depth: depth)
            case UInt8(ascii: "["): return try parseArray(depth: depth)
            case UInt8(ascii: "\""): return .string(try parseString())
            case UInt8(ascii: "t"): try expectWord("true"); return .bool(true)
            case UInt8(ascii: "f"): try expectWord("false"); return .bool(false)
            case UInt8(ascii: "n"): try expectWord("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
            default: throw fail("unexpected \(describe(pos)), expected a value")
            }
        }

        private mutating func expectWord(_ word: String) throws {
            for c in word.utf8 {
                guard pos < bytes.count, bytes[pos] == c else { throw fail("invalid literal, expected \(word)") }
                pos += 1
            }
        }

        private mutating func parseObject(depth: Int) throws -> Value {
            pos += 1
            var members: [(String, Value)] = []
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("unexpected \(describe(pos)), expected a quoted key") }
                let key = try parseString()
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("unexpected \(describe(pos)), expected ':'") }
                pos += 1
                skipWhitespace()
                members.append((key, try parseValue(depth: depth + 1)))
                skipWhitespace()
                guard pos < bytes.count else { throw fail("unexpected end of header inside an object") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
                throw fail("unexpected \(describe(pos)), expected ',' or '}'")
            }
        }

        private mutating func parseArray(depth: Int) throws -> Value {
            pos += 1
            var items: [Value] = []
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try parseValue(depth: depth + 1))
                skipWhitespace()
                guard pos < bytes.count else { throw fail("unexpected end of header inside an array") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
                throw fail("unexpected \(describe(pos)), expected ',' or ']'")
            }
        }

        /// Returns the number's text; the grammar is checked here, the value by the caller.
        private mutating func parseNumber() throws -> String {
            let start = pos
            func digits() -> Int {
                let s = pos
                while pos < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[pos]) { pos += 1 }
                return pos - s
            }
            if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            let intStart = pos
            let intDigits = digits()
            guard intDigits > 0 else { throw fail("invalid number") }
            if intDigits > 1, bytes[intStart] == UInt8(ascii: "0") { throw ParseError(offset: intStart, message: "invalid number (leading zero)") }
            if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
                pos += 1
                guard digits() > 0 else { throw fail("invalid number (no digits after '.')") }
            }
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
                pos += 1
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
                guard digits() > 0 else { throw fail("invalid number (no digits in exponent)") }
            }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        }

        private mutating func parseString() throws -> String {
            pos += 1   // opening quote
            var out = [UInt8]()
            while true {
                guard pos < bytes.count else { throw fail("unterminated string") }
                let b = bytes[pos]
                if b == UInt8(ascii: "\"") { pos += 1; break }
                if b < 0x20 { throw fail("control character 0x\(String(b, radix: 16)) in string") }
                if b != UInt8(ascii: "\\") { out.append(b); pos += 1; continue }
                pos += 1
                guard pos < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate in \\u escape")
                        }
                        pos += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid low surrogate in \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw fail("unpaired surrogate in \\u escape")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default:
                    throw fail("invalid escape '\\\(Character(UnicodeScalar(e)))'")
                }
            }
            return String(decoding: out, as: UTF8.self)
        }

        private mutating func hex4() throws -> UInt32 {
            guard pos + 4 <= bytes.count else { throw fail("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[pos]
                let d: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
                default: throw fail("invalid hex digit in \\u escape")
                }
                v = v << 4 | d
                pos += 1
            }
            return v
        }
    }
}
