// GGUF reader (docs/DESIGN.md §6, §8): llama.cpp's single-file model format, version 3 (and 2, which has
// the same little-endian layout).
//
// Layout, all little-endian:
//   "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count
//   metadata_kv_count × (string key, u32 value type, value)      string = u64 byte length + UTF-8
//   tensor_count × (string name, u32 n_dims, n_dims × u64 ne, u32 ggml type, u64 offset)
//   padding to a multiple of general.alignment (default 32), then the data section;
//   each tensor's offset is relative to the data section and a multiple of the alignment.
// Shape [ne0, ne1, ...] lists the fastest-varying dimension first: [ne0, ne1] is a row-major
// matrix of ne1 rows × ne0 columns (PyTorch shape [ne1, ne0]). Tensors are returned as stored:
// llama.cpp's converter reorders the rows of Llama attn_q / attn_k within each head for
// interleaved RoPE, and undoing that (for Hugging Face's half-split RoPE) is the model loader's job.
//
// The file is untrusted and is checked before anything is sized by it: the counts in the header
// and every array length are bounded by the bytes left to hold them, string lengths by the file,
// shapes and byte counts use overflow-checked arithmetic, metadata array elements are bounded in
// total (maxMetadataValues), each tensor must lie aligned inside the
// data section without overlapping another, and keys and names must be unique. Every failure is a
// InputError naming the file and the field (the checks are in GGUFParser.swift). The file is
// memory-mapped; `floats` dequantises one tensor at a time (GGUFQuantization.swift).

import Foundation
import MyopiaSupport

/// One tensor's entry in the tensor-info table.
public struct GGUFTensorInfo: Equatable, Sendable {
    public let name: String
    /// [ne0, ne1, ...]: ne0 varies fastest (the columns of a weight matrix; PyTorch's last dim).
    public let shape: [Int]
    public let type: GGUFTensorType
    /// Byte offset from the start of the data section.
    public let offset: Int
    /// Bytes of tensor data: rows × (ne0 / blockSize) × blockBytes.
    public let byteCount: Int

    /// Product of the shape (validated not to overflow).
    public var elementCount: Int { shape.reduce(1, *) }
    /// The shape as PyTorch / Hugging Face write it: [..., ne1, ne0].
    public var torchShape: [Int] { shape.reversed() }
}

public struct GGUFFile: Sendable {
    public static let defaultAlignment = 32
    /// ggml tensors have at most 4 dimensions (GGML_MAX_DIMS).
    public static let maxDimensions = 4
    /// Arrays of arrays are allowed, but not nested deeper than this.
    public static let maxArrayDepth = 8
    /// Longest metadata key or tensor name accepted (the spec bounds keys to 65535 bytes).
    public static let maxNameBytes = 65_535
    /// Most metadata array elements accepted, all arrays together. Each element is held as a
    /// GGUFValue of a few dozen bytes, so without a bound a file of one-byte elements would cost
    /// thirty times its size in memory; real tokenizers hold a few hundred thousand.
    public static let maxMetadataValues = 1 << 24

    /// The file path or caller-given name used in error messages.
    public let source: String
    public let version: Int
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensors in file (table) order.
    public let tensors: [GGUFTensorInfo]
    /// general.alignment, or 32.
    public let alignment: Int
    /// Absolute byte offset of the data section.
    public let dataOffset: Int
    private let data: Data
    private let index: [String: Int]

    /// Maps the file (a 100 MB model is not copied into memory).
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        try self.init(data: data, source: url.path)
    }

    public init(data: Data, source: String) throws {
        self.source = source
        self.data = data
        let parsed = try data.withUnsafeBytes { raw in
            var parser = GGUFParser(bytes: raw, source: source)
            return try parser.parse()
        }
        version = parsed.version
        metadata = parsed.metadata
        metadataKeys = parsed.keys
        tensors = parsed.tensors
        alignment = parsed.alignment
        dataOffset = parsed.dataOffset
        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        self.index = index
    }

    public subscript(name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

    // MARK: - Tensors

    /// The tensor dequantised to fp32, in file order (ne0 fastest). F32, F16, BF16, Q4_0, Q4_1, Q5_0,
    /// Q5_1, Q8_0 and the K-quants Q2_K to Q6_K convert, bit for bit as gguf-py's
    /// `gguf.quants.dequantize`; other types throw `.unsupported` naming the tensor, the type and
    /// the types that convert.
    public func floats(_ name: String) throws -> [Float] {
        let info = try lookup(name)
        try checkDequantizable(info)
        return try [Float](unsafeUninitializedCapacity: info.elementCount) { buffer, initialized in
            try copyFloats(info, into: buffer)
            initialized = info.elementCount
        }
    }

    /// Dequantises into a caller-owned buffer (e.g. a view of a flat parameter buffer); its count
    /// must equal the tensor's element count.
    public func copyFloats(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try copyFloats(try lookup(name), into: destination)
    }

    /// The tensor's raw bytes as stored (blocks for quantised types).
    public func withBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try lookup(name)
        let start = dataOffset + info.offset
        return try data.withUnsafeBytes { raw in try body(UnsafeRawBufferPointer(rebasing: raw[start..<(start + info.byteCount)])) }
    }

    private func lookup(_ name: String) throws -> GGUFTensorInfo {
        guard let info = self[name] else { throw InputError.missing(file: source, field: "tensor \(ggufQuoted(name))") }
        return info
    }

    private func checkDequantizable(_ info: GGUFTensorInfo) throws {
        guard info.type.isDequantizable else {
            throw InputError.unsupported(file: source, field: "tensor \(ggufQuoted(info.name)) type",
                                          value: "\(info.type) (as floats; expected one of \(GGUFTensorType.dequantizableNames))")
        }
    }

    private func copyFloats(_ info: GGUFTensorInfo, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try checkDequantizable(info)
        let count = info.elementCount
        guard destination.count == count else {
            throw InputError.invalidValue(file: source, field: "tensor \(ggufQuoted(info.name)) shape \(info.shape)",
                                           expected: "a destination of \(count) floats", found: "\(destination.count)")
        }
        guard count > 0, let out = destination.baseAddress else { return }
        let start = dataOffset + info.offset
        data.withUnsafeBytes { raw in
            GGUFDequantizer.dequantize(info.type, UnsafeRawBufferPointer(rebasing: raw[start..<(start + info.byteCount)]), into: out, count: count)
        }
    }

    // MARK: - Metadata

    /// The value under `key`; `.missing` naming the key when absent.
    public func value(_ key: String) throws -> GGUFValue {
        guard let v = metadata[key] else { throw InputError.missing(file: source, field: "metadata \(ggufQuoted(key))") }
        return v
    }

    public func string(_ key: String, default fallback: String? = nil) throws -> String {
        try typed(key, fallback, "a STRING") { $0.stringValue }
    }

    /// Any integer type whose value fits in Int.
    public func int(_ key: String, default fallback: Int? = nil) throws -> Int {
        try typed(key, fallback, "an integer") { $0.intValue }
    }

    /// FLOAT32 or FLOAT64 (or an integer), as Float.
    public func float(_ key: String, default fallback: Float? = nil) throws -> Float {
        try typed(key, fallback, "a number") { v in v.doubleValue.map(Float.init) ?? v.intValue.map(Float.init) }
    }

    public func double(_ key: String, default fallback: Double? = nil) throws -> Double {
        try typed(key, fallback, "a number") { v in v.doubleValue ?? v.intValue.map(Double.init) }
    }

    public func bool(_ key: String, default fallback: Bool? = nil) throws -> Bool {
        try typed(key, fallback, "a BOOL") { $0.boolValue }
    }

    public func stringArray(_ key: String) throws -> [String] {
        try typedArray(key, "STRING") { $0.stringValue }
    }

    public func intArray(_ key: String) throws -> [Int] {
        try typedArray(key, "integers") { $0.intValue }
    }

    public func floatArray(_ key: String) throws -> [Float] {
        try typedArray(key, "numbers") { v in v.doubleValue.map(Float.init) ?? v.intValue.map(Float.init) }
    }

    private func typed<T>(_ key: String, _ fallback: T?, _ expected: String, _ convert: (GGUFValue) -> T?) throws -> T {
        guard let v = metadata[key] else {
            if let fallback { return fallback }
            throw InputError.missing(file: source, field: "metadata \(ggufQuoted(key))")
        }
        guard let t = convert(v) else {
            throw InputError.invalidValue(file: source, field: "metadata \(ggufQuoted(key))", expected: expected, found: "\(v.typeDescription) \(v)")
        }
        return t
    }

    private func typedArray<T>(_ key: String, _ expected: String, _ convert: (GGUFValue) -> T?) throws -> [T] {
        let v = try value(key)
        guard case .array(_, let items) = v else {
            throw InputError.invalidValue(file: source, field: "metadata \(ggufQuoted(key))", expected: "an ARRAY of \(expected)", found: "\(v.typeDescription) \(v)")
        }
        var out: [T] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard let t = convert(item) else {
                throw InputError.invalidValue(file: source, field: "metadata \(ggufQuoted(key))[\(i)]", expected: "an element of \(expected)", found: "\(item.typeDescription) \(item)")
            }
            out.append(t)
        }
        return out
    }
}
