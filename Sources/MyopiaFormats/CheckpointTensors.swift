// The tensors of a Hugging Face checkpoint folder, looked up by name wherever they are: in one
// `model.safetensors`, or in the shards that `model.safetensors.index.json` names
// (docs/DESIGN.md §6). Every reader of a folder's weights goes through it, so every command that
// takes a checkpoint takes a sharded one.
//
// A sharded folder is checked whole before any tensor is converted: each shard's header is read
// (not its data), and index and shards must agree exactly — every shard named exists; each tensor
// the index names is in the shard it names; each tensor of a shard is named by the index, for that
// shard (so no tensor is in two shards); and `metadata.total_size`, when present, is the sum of the
// tensors' byte sizes, which is what transformers and huggingface_hub write. A disagreement is an
// InputError naming the index and the tensor (`weight_map["NAME"]`). Files the index does not name
// are not read. The data is then read one shard at a time (`forEachFile`), so loading a model holds
// one shard beside its parameters, never the whole set.

import Foundation
import MyopiaSupport

public struct CheckpointTensors: Sendable {
    /// A tensor and the file that holds it.
    public struct Tensor: Equatable, Sendable {
        /// Its header entry in that file (dtype, shape, byte range).
        public let entry: SafeTensorsFile.Entry
        /// Which of `files` holds it.
        public let file: Int

        public var name: String { entry.name }
        public var dtype: SafeTensorsDType { entry.dtype }
        public var shape: [Int] { entry.shape }
        public var elementCount: Int { entry.elementCount }
    }

    /// The file errors about the whole set name: `model.safetensors`, or the index.
    public let source: URL
    /// The index of a sharded folder; nil for one `model.safetensors`.
    public let index: SafeTensorsIndex?
    /// The safetensors files: the one file, or the shards in name order.
    public let files: [URL]
    /// Every tensor, file by file, each file's in data order.
    public let tensors: [Tensor]
    private let headers: [SafeTensorsFile.Header]
    private let lookup: [String: Int]
    /// The one file of an unsharded folder, already read (it must be read whole anyway).
    private let single: SafeTensorsFile?

    /// The weights of a checkpoint folder: `model.safetensors` when there is one (as transformers
    /// prefers it too), else `model.safetensors.index.json` and its shards.
    public init(folder: URL) throws {
        let fm = FileManager.default
        let file = folder.appendingPathComponent(Checkpoint.modelFile)
        let index = folder.appendingPathComponent(SafeTensorsIndex.fileName)
        if fm.fileExists(atPath: file.path) {
            try self.init(file: file)
        } else if fm.fileExists(atPath: index.path) {
            try self.init(index: index)
        } else {
            throw InputError.missing(file: folder.path, field: "\(Checkpoint.modelFile) or \(SafeTensorsIndex.fileName) (the weights)")
        }
    }

    /// A checkpoint folder, an index (a name ending in `.index.json`) or one safetensors file.
    public init(contentsOf url: URL) throws {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), isFolder.boolValue {
            try self.init(folder: url)
        } else if url.lastPathComponent.hasSuffix(".index.json") {
            try self.init(index: url)
        } else {
            try self.init(file: url)
        }
    }

    /// One safetensors file.
    public init(file url: URL) throws {
        let file = try SafeTensorsFile(contentsOf: url)
        self.init(source: url, index: nil, files: [url], headers: [file.header], single: file)
    }

    /// An index and the shards it names, in the index's folder, checked against each other.
    public init(index url: URL) throws {
        let index = try SafeTensorsIndex(contentsOf: url)
        let folder = url.deletingLastPathComponent()
        let files = index.files.map { folder.appendingPathComponent($0) }
        var headers: [SafeTensorsFile.Header] = []
        for (name, file) in zip(index.files, files) {
            var isFolder: ObjCBool = false
            let first = index.weightMap.first { $0.file == name }?.tensor ?? ""
            guard FileManager.default.fileExists(atPath: file.path, isDirectory: &isFolder) else {
                throw InputError.missing(file: url.path, field: "\(SafeTensorsIndex.field(first)): shard \(quoted(name))")
            }
            guard !isFolder.boolValue else {
                throw InputError.invalidValue(file: url.path, field: SafeTensorsIndex.field(first), expected: "a safetensors file", found: "\(quoted(name)), a folder")
            }
            headers.append(try SafeTensorsFile.readHeader(of: file))
        }
        try Self.check(index, against: headers, files: index.files)
        self.init(source: url, index: index, files: files, headers: headers, single: nil)
    }

    private init(source: URL, index: SafeTensorsIndex?, files: [URL], headers: [SafeTensorsFile.Header], single: SafeTensorsFile?) {
        self.source = source
        self.index = index
        self.files = files
        self.headers = headers
        self.single = single
        var tensors: [Tensor] = []
        for (i, header) in headers.enumerated() {
            tensors += header.entries.map { Tensor(entry: $0, file: i) }
        }
        self.tensors = tensors
        var lookup: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { lookup[t.name] = i }
        self.lookup = lookup
    }

    public subscript(name: String) -> Tensor? { lookup[name].map { tensors[$0] } }

    /// The path of the file that holds `tensor`.
    public func path(of tensor: Tensor) -> String { files[tensor.file].path }

    /// The field that names a tensor in errors about the whole set: its name in one file,
    /// `weight_map["NAME"]` in an index.
    public func field(_ name: String) -> String { index == nil ? name : SafeTensorsIndex.field(name) }

    /// For messages: the file, or the index and how many shards it names.
    public var summary: String {
        index == nil ? source.path : "\(source.path) and its \(files.count) shard\(files.count == 1 ? "" : "s")"
    }

    /// Calls `body` once per file, in order, with the file read and the tensors it holds; each
    /// shard is released before the next is read. A shard whose header is no longer the one
    /// checked (it changed on disk meanwhile) is refused.
    public func forEachFile(_ body: (SafeTensorsFile, ArraySlice<Tensor>) throws -> Void) throws {
        var start = 0
        for i in files.indices {
            let end = start + headers[i].entries.count
            try body(try open(i), tensors[start..<end])
            start = end
        }
    }

    /// One tensor as fp32 (reads the file that holds it).
    public func floats(_ name: String) throws -> [Float] {
        guard let tensor = self[name] else { throw InputError.missing(file: source.path, field: field(name)) }
        return try open(tensor.file).floats(name)
    }

    /// File `i`, read, with the header that was checked.
    private func open(_ i: Int) throws -> SafeTensorsFile {
        let file = try single ?? SafeTensorsFile(contentsOf: files[i])
        guard file.header == headers[i] else {
            throw InputError.invalidValue(file: files[i].path, field: "header", expected: "the header read when the folder was checked",
                                           found: "a different one (the file changed while it was being loaded)")
        }
        return file
    }

    /// The agreement of an index and its shards' headers (see the top of this file).
    static func check(_ index: SafeTensorsIndex, against headers: [SafeTensorsFile.Header], files: [String]) throws {
        let source = index.source
        var holder: [String: Int] = [:]
        for (i, header) in headers.enumerated() {
            for e in header.entries {
                if let j = holder[e.name] {
                    throw InputError.invalidValue(file: source, field: SafeTensorsIndex.field(e.name), expected: "the tensor in one shard",
                                                   found: "it in both \(quoted(files[j])) and \(quoted(files[i]))")
                }
                holder[e.name] = i
            }
        }
        for m in index.weightMap {
            guard let i = holder[m.tensor] else {
                throw InputError.invalidValue(file: source, field: SafeTensorsIndex.field(m.tensor), expected: "a shard that holds the tensor",
                                               found: "\(quoted(m.file)), which does not")
            }
            guard files[i] == m.file else {
                throw InputError.invalidValue(file: source, field: SafeTensorsIndex.field(m.tensor), expected: "the shard that holds the tensor, \(quoted(files[i]))",
                                               found: quoted(m.file))
            }
        }
        var total = 0, count = 0
        for (i, header) in headers.enumerated() {
            for e in header.entries {
                guard index.file(of: e.name) != nil else {
                    throw InputError.missing(file: source, field: "\(SafeTensorsIndex.field(e.name)) (a tensor of \(quoted(files[i])))")
                }
                let (sum, overflow) = total.addingReportingOverflow(e.byteRange.count)
                guard !overflow else {
                    throw InputError.invalidValue(file: source, field: "metadata.total_size", expected: "tensors whose sizes add up in 64 bits", found: "overflow")
                }
                total = sum
                count += 1
            }
        }
        if let recorded = index.totalSize, recorded != total {
            throw InputError.invalidValue(file: source, field: "metadata.total_size",
                                           expected: "\(total) (the bytes of the \(count) tensors in the shards)", found: "\(recorded)")
        }
    }
}
