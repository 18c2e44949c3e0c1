// model.safetensors.index.json: which shard of a sharded Hugging Face checkpoint holds each tensor
// (docs/DESIGN.md §6, §8). transformers writes it beside the shards when a model is saved with
// `max_shard_size`, which is how the Hub holds most models:
//
//   {"metadata": {"total_parameters": 21664, "total_size": 43328},
//    "weight_map": {"lm_head.weight": "model-00001-of-00003.safetensors", ...}}
//
// The file is untrusted like the shards. It is parsed strictly (a tensor named twice is refused,
// not silently kept once), and every shard it names must be a plain `.safetensors` file name
// inside the checkpoint folder — no folder part, no `..`, not absolute — so an index cannot make
// the loader read outside the folder. Other keys (`metadata.total_parameters`, a writer's own)
// are ignored. What the shards hold is checked against the index by `CheckpointTensors`.

import Foundation
import MyopiaSupport

public struct SafeTensorsIndex: Equatable, Sendable {
    public static let fileName = "model.safetensors.index.json"
    /// Largest index accepted; a 400-layer model's is about 1 MB.
    public static let maxBytes = 64 << 20

    /// One `weight_map` member: a tensor and the shard file name that holds it.
    public struct Mapping: Equatable, Sendable {
        public let tensor: String
        public let file: String
    }

    /// The index's path (or a caller-given name), for error messages.
    public let source: String
    /// `weight_map` in the file's order.
    public let weightMap: [Mapping]
    /// `metadata.total_size` (bytes of all tensors), when the index records it.
    public let totalSize: Int?
    /// The shard file names `weight_map` uses, each once, sorted.
    public let files: [String]
    private let fileOf: [String: String]

    /// The shard that holds `tensor`, by the index.
    public func file(of tensor: String) -> String? { fileOf[tensor] }

    /// The field that names `tensor` in errors: `weight_map["NAME"]`.
    public static func field(_ tensor: String) -> String { "weight_map[\(quoted(tensor))]" }

    public init(contentsOf url: URL) throws {
        let size: Int
        do {
            size = (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
        } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        guard size <= Self.maxBytes else {
            throw InputError.invalidValue(file: url.path, field: "(file size)", expected: "at most \(Self.maxBytes) bytes", found: "\(size) bytes")
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        try self.init(data: data, source: url.path)
    }

    public init(data: Data, source: String) throws {
        self.source = source
        guard data.count <= Self.maxBytes else {
            throw InputError.invalidValue(file: source, field: "(file size)", expected: "at most \(Self.maxBytes) bytes", found: "\(data.count) bytes")
        }
        let root: StrictJSON.Value = try data.withUnsafeBytes { bytes in
            guard String(bytes: bytes, encoding: .utf8) != nil else {
                throw InputError.invalidHeader(file: source, field: "(top level)", reason: "not valid UTF-8")
            }
            var parser = StrictJSON.Parser(bytes: bytes)
            do { return try parser.parseDocument() } catch let e as StrictJSON.ParseError {
                throw InputError.invalidHeader(file: source, field: "(top level)", reason: "invalid JSON at byte \(e.offset): \(e.message)")
            }
        }
        guard case .object(let members) = root else {
            throw InputError.invalidValue(file: source, field: "(top level)", expected: "an object with weight_map", found: root.kind)
        }
        let top = try Self.uniqueMembers(members, source: source, prefix: "")
        totalSize = try Self.totalSize(top["metadata"], source: source)

        guard let mapValue = top["weight_map"] else { throw InputError.missing(file: source, field: "weight_map") }
        guard case .object(let pairs) = mapValue else {
            throw InputError.invalidValue(file: source, field: "weight_map", expected: "an object of tensor name -> shard file name", found: mapValue.kind)
        }
        guard !pairs.isEmpty else {
            throw InputError.invalidValue(file: source, field: "weight_map", expected: "at least one tensor", found: "an empty object")
        }
        var mappings: [Mapping] = []
        var fileOf: [String: String] = [:]
        for (tensor, value) in pairs {
            let field = Self.field(tensor)
            guard fileOf[tensor] == nil else {
                throw InputError.invalidHeader(file: source, field: field, reason: "appears more than once (a tensor is in one shard)")
            }
            guard case .string(let file) = value else {
                throw InputError.invalidValue(file: source, field: field, expected: "a shard file name (a string)", found: value.kind)
            }
            try Self.checkFileName(file, field: field, source: source)
            fileOf[tensor] = file
            mappings.append(Mapping(tensor: tensor, file: file))
        }
        weightMap = mappings
        self.fileOf = fileOf
        files = Set(fileOf.values).sorted()
    }

    /// An object's members by name; a name given twice is refused.
    private static func uniqueMembers(_ members: [(String, StrictJSON.Value)], source: String, prefix: String) throws -> [String: StrictJSON.Value] {
        var out: [String: StrictJSON.Value] = [:]
        for (key, value) in members {
            guard out.updateValue(value, forKey: key) == nil else {
                throw InputError.invalidHeader(file: source, field: prefix + key, reason: "appears more than once")
            }
        }
        return out
    }

    /// `metadata.total_size`: absent, null or a non-negative integer (integral floats such as
    /// 43328.0, which some writers produce, are accepted).
    private static func totalSize(_ metadata: StrictJSON.Value?, source: String) throws -> Int? {
        guard let metadata else { return nil }
        if case .null = metadata { return nil }
        guard case .object(let members) = metadata else {
            throw InputError.invalidValue(file: source, field: "metadata", expected: "an object", found: metadata.kind)
        }
        guard let value = try uniqueMembers(members, source: source, prefix: "metadata.")["total_size"] else { return nil }
        let expected = "a non-negative integer (the bytes of all tensors)"
        switch value {
        case .null:
            return nil
        case .number(let text):
            if let n = Int(text), n >= 0 { return n }
            if !text.hasPrefix("-"), let d = Double(text), d.isFinite, d == d.rounded(), d < 0x1p63, let n = Int(exactly: d) { return n }
            throw InputError.invalidValue(file: source, field: "metadata.total_size", expected: expected, found: text)
        default:
            throw InputError.invalidValue(file: source, field: "metadata.total_size", expected: expected, found: value.summary)
        }
    }

    /// A shard must be a plain file name in the checkpoint's folder.
    private static func checkFileName(_ name: String, field: String, source: String) throws {
        let problem: String?
        if name.isEmpty {
            problem = "an empty name"
        } else if name.hasPrefix("/") || name.hasPrefix("\\") {
            problem = "an absolute path"
        } else if name.contains("/") || name.contains("\\") {
            problem = name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).contains("..") ? "a path out of the folder" : "a path into a subfolder"
        } else if name == "." || name == ".." {
            problem = "a folder, not a file"
        } else if name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            problem = "a control character in the name"
        } else if !name.hasSuffix(".safetensors") {
            problem = "not a .safetensors file"
        } else {
            problem = nil
        }
        if let problem {
            throw InputError.invalidValue(file: source, field: field,
                                           expected: "a .safetensors file name inside the checkpoint folder (no folder part, no .., not an absolute path)",
                                           found: "\(quoted(name)): \(problem)")
        }
    }
}
