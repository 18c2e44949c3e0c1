// safetensors writer: F32 tensors, little-endian, readable by `safetensors` / `transformers`.
//
// Output is byte-for-byte deterministic: tensors appear in the header and in the data section in
// the order given, metadata keys are sorted, and the header is padded with spaces to a multiple
// of 8 so the data section starts 8-aligned. Files are written atomically and streamed, so a flat
// parameter buffer of hundreds of MB is written straight from memory without a second copy.

import Foundation
import MyopiaSupport

public enum SafeTensorsWriter {
    public struct Tensor: Sendable {
        public var name: String
        public var shape: [Int]
        public var data: [Float]
        public init(name: String, shape: [Int], data: [Float]) {
            self.name = name
            self.shape = shape
            self.data = data
        }
    }

    /// Writes `tensors` (F32) to `url`, atomically; with `hashing`, returns the file's sha256.
    @discardableResult
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to url: URL, hashing: Bool = false) throws -> String? {
        let layout = tensors.map { (name: $0.name, shape: $0.shape, count: $0.data.count) }
        let header = try makeHeader(layout, metadata: metadata, file: url.path)
        return try AtomicFile.write(to: url, hashing: hashing) { writer in
            try writer.write(header)
            for t in tensors { try t.data.withUnsafeBufferPointer { try writer.write($0) } }
        }
    }

    /// Writes views into caller-owned memory (e.g. slices of one flat parameter buffer) without
    /// copying them. The buffers must stay valid for the duration of the call. With `hashing`,
    /// returns the file's sha256.
    @discardableResult
    public static func write(_ tensors: [(name: String, shape: [Int], data: UnsafeBufferPointer<Float>)],
                             metadata: [String: String] = [:], to url: URL, hashing: Bool = false) throws -> String? {
        let layout = tensors.map { (name: $0.name, shape: $0.shape, count: $0.data.count) }
        let header = try makeHeader(layout, metadata: metadata, file: url.path)
        return try AtomicFile.write(to: url, hashing: hashing) { writer in
            try writer.write(header)
            for t in tensors { try writer.write(t.data) }
        }
    }

    /// The complete file in memory (for small files and tests).
    public static func encode(_ tensors: [Tensor], metadata: [String: String] = [:], source: String = "<memory>") throws -> Data {
        let layout = tensors.map { (name: $0.name, shape: $0.shape, count: $0.data.count) }
        var out = Data(try makeHeader(layout, metadata: metadata, file: source))
        for t in tensors {
            #if _endian(little)
            t.data.withUnsafeBytes { out.append(contentsOf: $0) }
            #else
            for v in t.data { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            #endif
        }
        return out
    }

    /// The 8-byte length prefix plus the space-padded JSON header.
    static func makeHeader(_ tensors: [(name: String, shape: [Int], count: Int)], metadata: [String: String], file: String) throws -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        var names = Set<String>()
        var offset = 0
        for t in tensors {
            let field = "tensor \(jsonString(t.name))"
            guard t.name != "__metadata__" else {
                throw InputError.invalidValue(file: file, field: field, expected: "a tensor name other than __metadata__", found: "__metadata__")
            }
            guard names.insert(t.name).inserted else {
                throw InputError.invalidValue(file: file, field: field, expected: "a unique tensor name", found: "a duplicate")
            }
            var elements = 1
            for d in t.shape {
                guard d >= 0 else {
                    throw InputError.invalidValue(file: file, field: "\(field) shape", expected: "non-negative dimensions", found: "\(t.shape)")
                }
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else {
                    throw InputError.invalidValue(file: file, field: "\(field) shape", expected: "an element count that fits in 64 bits", found: "\(t.shape)")
                }
                elements = p
            }
            guard elements == t.count else {
                throw InputError.invalidValue(file: file, field: "\(field) shape \(t.shape)", expected: "\(elements) values", found: "\(t.count)")
            }
            let (bytes, o1) = elements.multipliedReportingOverflow(by: 4)
            let (end, o2) = offset.addingReportingOverflow(bytes)
            guard !o1, !o2 else {
                throw InputError.invalidValue(file: file, field: field, expected: "a total size that fits in 64 bits", found: "overflow")
            }
            if !first { json += "," }
            first = false
            json += "\(jsonString(t.name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        json += "}"
        var header = Array(json.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + header.count)
        let n = UInt64(header.count)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
        out.append(contentsOf: header)
        return out
    }

    private static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
