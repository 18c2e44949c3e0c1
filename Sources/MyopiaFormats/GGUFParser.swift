// The GGUF parser behind GGUFFile (GGUF.swift): reads the header, the metadata and the tensor
// table from the front of the file, then checks every tensor against the data section. Each read
// first checks the bytes left; counts and lengths are bounded by those bytes before anything is
// allocated; shapes and byte counts use overflow-checked arithmetic.

import Foundation
import MyopiaSupport

/// A name as messages show it: quoted, control characters escaped, long names cut.
public func ggufQuoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars.prefix(200) {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += "\\u{\(String(scalar.value, radix: 16))}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + (s.unicodeScalars.count > 200 ? "…\"" : "\"")
}

/// One pass over the front of a GGUF file; `parse()` returns everything GGUFFile keeps.
struct GGUFParser {
    let bytes: UnsafeRawBufferPointer
    let source: String
    var pos = 0
    /// Metadata array elements read so far (bounded by GGUFFile.maxMetadataValues).
    private var arrayValues = 0

    init(bytes: UnsafeRawBufferPointer, source: String) {
        self.bytes = bytes
        self.source = source
    }

    struct Result {
        var version: Int
        var metadata: [String: GGUFValue]
        var keys: [String]
        var tensors: [GGUFTensorInfo]
        var alignment: Int
        var dataOffset: Int
    }

    /// Fewest bytes a metadata entry can take: u64 key length, a 1-byte key, u32 type, 1-byte value.
    private static let minimumEntryBytes = 8 + 1 + 4 + 1
    /// Fewest bytes a tensor info can take: u64 name length, a 1-byte name, u32 n_dims, u32 type, u64 offset.
    private static let minimumTensorInfoBytes = 8 + 1 + 4 + 4 + 8

    mutating func parse() throws -> Result {
        let total = bytes.count
        guard total >= 4 else {
            throw InputError.truncated(file: source, field: "header magic", expected: "4 bytes \"GGUF\"", found: "\(total) bytes")
        }
        let magic = Array(bytes[0..<4])
        guard magic == Array("GGUF".utf8) else {
            let hex = magic.map { String(format: "%02x", $0) }.joined(separator: " ")
            throw InputError.invalidHeader(file: source, field: "header magic", reason: "not a GGUF file: expected \"GGUF\" (47 47 55 46), found \(hex)")
        }
        pos = 4
        let rawVersion = try u32("header version")
        guard rawVersion == 2 || rawVersion == 3 else {
            if rawVersion.byteSwapped == 2 || rawVersion.byteSwapped == 3 {
                throw InputError.unsupported(file: source, field: "header version", value: "\(rawVersion.byteSwapped) big-endian (only little-endian GGUF is read)")
            }
            throw InputError.unsupported(file: source, field: "header version", value: "\(rawVersion) (expected 3, or 2)")
        }
        let tensorCount = try count("header tensor_count", each: Self.minimumTensorInfoBytes, what: "tensor infos")
        let entryCount = try count("header metadata_kv_count", each: Self.minimumEntryBytes, what: "metadata entries")

        // Metadata.
        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        for i in 0..<entryCount {
            let key = try name("metadata entry \(i) key")
            let field = "metadata \(ggufQuoted(key))"
            guard metadata[key] == nil else {
                throw InputError.invalidHeader(file: source, field: field, reason: "appears more than once")
            }
            let type = try valueType("\(field) type")
            metadata[key] = try value(type, depth: 0) { field }
            keys.append(key)
        }

        var alignment = GGUFFile.defaultAlignment
        if let a = metadata["general.alignment"] {
            guard let n = a.intValue, n > 0, n <= Int(UInt32.max), n & (n - 1) == 0 else {
                throw InputError.invalidValue(file: source, field: "metadata \"general.alignment\"", expected: "a power of two that fits in u32", found: "\(a.typeDescription) \(a)")
            }
            alignment = n
        }

        // Tensor infos.
        var tensorTable: [(name: String, shape: [Int], type: GGUFTensorType, offset: UInt64)] = []
        var seen = Set<String>()
        for i in 0..<tensorCount {
            let tensorName = try name("tensor info \(i) name")
            let field = "tensor \(ggufQuoted(tensorName))"
            guard seen.insert(tensorName).inserted else {
                throw InputError.invalidHeader(file: source, field: field, reason: "appears more than once in the tensor table")
            }
            let nDims = try u32("\(field) n_dims")
            guard nDims <= GGUFFile.maxDimensions else {
                throw InputError.invalidValue(file: source, field: "\(field) n_dims", expected: "at most \(GGUFFile.maxDimensions)", found: "\(nDims)")
            }
            var shape: [Int] = []
            for d in 0..<Int(nDims) {
                let ne = try u64("\(field) ne[\(d)]")
                guard ne <= UInt64(Int64.max) else {
                    throw InputError.invalidValue(file: source, field: "\(field) ne[\(d)]", expected: "at most \(Int64.max)", found: "\(ne)")
                }
                shape.append(Int(ne))
            }
            let rawType = try u32("\(field) type")
            guard let type = GGUFTensorType(rawValue: rawType) else {
                throw InputError.unsupported(file: source, field: "\(field) type", value: "\(rawType) (not a ggml tensor type this reader knows)")
            }
            let offset = try u64("\(field) offset")
            tensorTable.append((tensorName, shape, type, offset))
        }

        // The data section starts at the next multiple of the alignment.
        let (padded, overflow) = pos.addingReportingOverflow(alignment - 1)
        let dataOffset = overflow ? Int.max : padded / alignment * alignment
        let dataLength = max(0, total - dataOffset)

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(tensorCount)
        for t in tensorTable {
            tensors.append(try checkedTensor(t.name, t.shape, t.type, t.offset, alignment: alignment, dataLength: dataLength))
        }
        try checkNoOverlap(tensors)
        return Result(version: Int(rawVersion), metadata: metadata, keys: keys, tensors: tensors, alignment: alignment, dataOffset: dataOffset)
    }

    /// Byte count, alignment and bounds of one tensor.
    private func checkedTensor(_ name: String, _ shape: [Int], _ type: GGUFTensorType, _ offset: UInt64,
                               alignment: Int, dataLength: Int) throws -> GGUFTensorInfo {
        let field = "tensor \(ggufQuoted(name))"
        let ne0 = shape.first ?? 1
        guard ne0 % type.blockSize == 0 else {
            throw InputError.invalidValue(file: source, field: "\(field) shape \(shape)", expected: "ne0 a multiple of \(type.blockSize) (the \(type.name) block size)", found: "ne0 = \(ne0)")
        }
        var (byteCount, overflow) = (ne0 / type.blockSize).multipliedReportingOverflow(by: type.blockBytes)
        var elements = ne0
        for ne in shape.dropFirst() {
            let (b, o1) = byteCount.multipliedReportingOverflow(by: ne)
            let (e, o2) = elements.multipliedReportingOverflow(by: ne)
            byteCount = b; elements = e
            overflow = overflow || o1 || o2
        }
        guard !overflow else {
            throw InputError.invalidValue(file: source, field: "\(field) shape \(shape)", expected: "an element and byte count that fit in 64 bits", found: "overflow")
        }
        guard offset % UInt64(alignment) == 0 else {
            throw InputError.invalidValue(file: source, field: "\(field) offset", expected: "a multiple of \(alignment) (general.alignment)", found: "\(offset)")
        }
        guard offset <= UInt64(dataLength), byteCount <= dataLength - Int(offset) else {
            throw InputError.truncated(file: source, field: "\(field) data at offset \(offset)",
                                        expected: "\(byteCount) bytes (\(type.name) × \(shape)) inside the \(dataLength)-byte data section", found: "end \(offset &+ UInt64(byteCount))")
        }
        return GGUFTensorInfo(name: name, shape: shape, type: type, offset: Int(offset), byteCount: byteCount)
    }

    private func checkNoOverlap(_ tensors: [GGUFTensorInfo]) throws {
        let sorted = tensors.filter { $0.byteCount > 0 }.sorted { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }
        for (previous, t) in zip(sorted, sorted.dropFirst()) where t.offset < previous.offset + previous.byteCount {
            throw InputError.invalidValue(file: source, field: "tensor \(ggufQuoted(t.name)) offset",
                                           expected: "at least \(previous.offset + previous.byteCount) (the end of tensor \(ggufQuoted(previous.name)))",
                                           found: "\(t.offset), overlapping tensor \(ggufQuoted(previous.name))")
        }
    }

    // MARK: Primitive reads (each checks the bytes left first)

    private mutating func need(_ n: Int, _ field: @autoclosure () -> String, _ what: @autoclosure () -> String) throws {
        guard n <= bytes.count - pos else {
            throw InputError.truncated(file: source, field: field(), expected: what(), found: "\(bytes.count - pos) bytes left at offset \(pos)")
        }
    }

    private mutating func load<T: FixedWidthInteger>(_ type: T.Type, _ field: @autoclosure () -> String) throws -> T {
        try need(MemoryLayout<T>.size, field(), "\(MemoryLayout<T>.size) bytes")
        let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: T.self))
        pos += MemoryLayout<T>.size
        return v
    }

    private mutating func u32(_ field: @autoclosure () -> String) throws -> UInt32 { try load(UInt32.self, field()) }
    private mutating func u64(_ field: @autoclosure () -> String) throws -> UInt64 { try load(UInt64.self, field()) }

    /// A header count, refused when `count` items of at least `each` bytes cannot fit in the file.
    private mutating func count(_ field: String, each: Int, what: String) throws -> Int {
        let n = try u64(field)
        let fit = (bytes.count - pos) / each
        guard n <= UInt64(fit) else {
            throw InputError.invalidValue(file: source, field: field, expected: "at most \(fit) (\(what) of ≥ \(each) bytes in the \(bytes.count - pos) bytes left)", found: "\(n)")
        }
        return Int(n)
    }

    /// A GGUF string: u64 length then that many bytes of UTF-8.
    private mutating func string(_ field: @autoclosure () -> String, maxBytes: Int = .max) throws -> String {
        let length = try u64("\(field()) length")
        guard length <= UInt64(maxBytes) else {
            throw InputError.invalidValue(file: source, field: "\(field()) length", expected: "at most \(maxBytes) bytes", found: "\(length)")
        }
        guard length <= UInt64(bytes.count - pos) else {
            throw InputError.truncated(file: source, field: field(), expected: "\(length) bytes (its length)", found: "\(bytes.count - pos) bytes left at offset \(pos)")
        }
        let n = Int(length)
        let utf8 = UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
        guard let s = decodeUTF8(utf8) else {
            throw InputError.invalidValue(file: source, field: field(), expected: "UTF-8 text", found: "\(n) bytes that are not valid UTF-8")
        }
        pos += n
        return s
    }

    /// A metadata key or tensor name: a non-empty string of at most maxNameBytes.
    private mutating func name(_ field: @autoclosure () -> String) throws -> String {
        let s = try string(field(), maxBytes: GGUFFile.maxNameBytes)
        guard !s.isEmpty else { throw InputError.invalidValue(file: source, field: field(), expected: "a non-empty string", found: "\"\"") }
        return s
    }

    private mutating func valueType(_ field: @autoclosure () -> String) throws -> GGUFValueType {
        let raw = try u32(field())
        guard let type = GGUFValueType(rawValue: raw) else {
            throw InputError.unsupported(file: source, field: field(), value: "\(raw) (GGUF value types are 0–12)")
        }
        return type
    }

    private mutating func value(_ type: GGUFValueType, depth: Int, _ field: () -> String) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try load(UInt8.self, field()))
        case .int8: return .int8(try load(Int8.self, field()))
        case .uint16: return .uint16(try load(UInt16.self, field()))
        case .int16: return .int16(try load(Int16.self, field()))
        case .uint32: return .uint32(try load(UInt32.self, field()))
        case .int32: return .int32(try load(Int32.self, field()))
        case .uint64: return .uint64(try load(UInt64.self, field()))
        case .int64: return .int64(try load(Int64.self, field()))
        case .float32: return .float32(Float(bitPattern: try load(UInt32.self, field())))
        case .float64: return .float64(Double(bitPattern: try load(UInt64.self, field())))
        case .bool:
            let b = try load(UInt8.self, field())
            guard b <= 1 else { throw InputError.invalidValue(file: source, field: field(), expected: "a BOOL (0 or 1)", found: "\(b)") }
            return .bool(b == 1)
        case .string:
            return .string(try string(field()))
        case .array:
            guard depth < GGUFFile.maxArrayDepth else {
                throw InputError.invalidValue(file: source, field: field(), expected: "arrays nested at most \(GGUFFile.maxArrayDepth) deep", found: "deeper nesting")
            }
            let element = try valueType("\(field()) array type")
            let n = try u64("\(field()) array count")
            let fit = (bytes.count - pos) / element.minimumSize
            guard n <= UInt64(fit) else {
                throw InputError.invalidValue(file: source, field: "\(field()) array count",
                                               expected: "at most \(fit) (\(element) values of ≥ \(element.minimumSize) bytes in the \(bytes.count - pos) bytes left)", found: "\(n)")
            }
            guard Int(n) <= GGUFFile.maxMetadataValues - arrayValues else {
                throw InputError.invalidValue(file: source, field: "\(field()) array count",
                                               expected: "at most \(GGUFFile.maxMetadataValues - arrayValues) (\(GGUFFile.maxMetadataValues) array values in all the metadata)", found: "\(n)")
            }
            arrayValues += Int(n)
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(n))
            for i in 0..<Int(n) {
                items.append(try value(element, depth: depth + 1) { "\(field())[\(i)]" })
            }
            return .array(element, items)
        }
    }
}

/// Strict UTF-8 decoding (nil on invalid input, rather than replacement characters).
private func decodeUTF8(_ bytes: UnsafeRawBufferPointer) -> String? {
    if !bytes.contains(where: { $0 >= 0x80 }) { return String(decoding: bytes, as: UTF8.self) }   // ASCII
    if #available(macOS 15, iOS 18, *) { return String(validating: bytes, as: UTF8.self) }
    return String(bytes: bytes, encoding: .utf8)
}
