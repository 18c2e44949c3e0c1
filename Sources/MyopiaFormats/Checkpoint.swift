import Foundation
import MyopiaSupport
import MyopiaModel

/// A checkpoint is a Hugging Face folder: `config.json` + `model.safetensors` (fp32; GPT-2 keys
/// unprefixed, Llama keys as `LlamaForCausalLM` names them), loadable by `GPT2LMHeadModel` /
/// `LlamaForCausalLM.from_pretrained(dir)`. A training checkpoint adds
/// `optimizer.safetensors` (AdamW moments under `exp_avg.KEY`, `exp_avg_sq.KEY`) and
/// `trainer_state.json`, which records the sha256 and size of the other three files under
/// `"files"`; loading verifies every file listed there (docs/DESIGN.md §8), so a damaged checkpoint is
/// refused with `InputError.checksumMismatch` naming the file rather than trained on.
///
/// Folders saved by transformers load too: one `model.safetensors`, or shards named by
/// `model.safetensors.index.json` (`CheckpointTensors`), in F32, F16, BF16 or F64, converted to fp32.
///
/// Nothing is allocated from config.json alone: every parameter the config implies must be in
/// the weights with its shape before the model is built, so the model is never larger than the
/// files.
public enum Checkpoint {
    public static let configFile = "config.json"
    public static let modelFile = "model.safetensors"
    /// A sharded folder's index (its shards are the files it names).
    public static let indexFile = SafeTensorsIndex.fileName
    public static let optimizerFile = "optimizer.safetensors"
    public static let stateFile = "trainer_state.json"

    /// Largest positions × head size of a rotary model (its cos and sin tables hold that many
    /// floats together: 256 MB). Llama-3 (131072 × 128) is an eighth of it.
    public static let maxRotaryValues = 1 << 26

    /// What a checkpoint records about each of its files.
    public struct FileChecksum: Codable, Equatable, Sendable {
        public var sha256: String
        public var bytes: Int
        public init(sha256: String, bytes: Int) {
            self.sha256 = sha256
            self.bytes = bytes
        }
    }

    /// Writes config.json and model.safetensors into `dir` (created if needed), each file
    /// atomically; returns their checksums (for trainer_state.json).
    @discardableResult
    public static func saveModel(_ model: Transformer, to dir: URL, metadata: [String: String] = [:]) throws -> [String: FileChecksum] {
        try createDirectory(dir)
        let config = try model.savedConfig.jsonData()
        let configURL = dir.appendingPathComponent(configFile)
        let configHash = try AtomicFile.write(config, to: configURL, hashing: true)
        let store = model.params
        let tensors = store.entries.map { e in
            (name: e.name, shape: e.shape, data: store.buffer(store.weights, e))
        }
        var meta = metadata
        meta["format"] = "pt"
        let modelURL = dir.appendingPathComponent(modelFile)
        let modelHash = try SafeTensorsWriter.write(tensors, metadata: meta, to: modelURL, hashing: true)
        return [configFile: FileChecksum(sha256: configHash ?? "", bytes: config.count),
                modelFile: FileChecksum(sha256: modelHash ?? "", bytes: try fileSize(modelURL))]
    }

    /// Reads a Hugging Face GPT-2 or Llama folder (Myopia's or one saved by `transformers`, sharded
    /// or not), verifying config.json and model.safetensors against trainer_state.json when it
    /// lists them.
    public static func loadModel(from dir: URL) throws -> Transformer {
        try verify([configFile, modelFile], in: dir)
        let configURL = dir.appendingPathComponent(configFile)
        let config = try ModelConfig.load(from: configURL)
        let weights = try CheckpointTensors(folder: dir)
        try checkFileHoldsModel(config, weights, config: configURL.path)
        let model = Transformer(config: config)
        model.checkpointKeys = try loadWeights(into: model.params, from: weights)
        return model
    }

    /// Refuses a config whose model the weights cannot hold: every parameter must be in the
    /// weights with its shape (so the model is no larger than the files), and a rotary model's
    /// tables are bounded. Called before anything is allocated from the config.
    static func checkFileHoldsModel(_ config: ModelConfig, _ weights: CheckpointTensors, config configPath: String) throws {
        let count = weights.tensors.count
        // Every layer has tensors, so a layer count beyond the tensor count is refused before the
        // layout (a list as long as the layer count) is built.
        guard config.nLayers <= count else {
            throw InputError.invalidValue(file: configPath, field: config.family == .gpt2 ? "n_layer" : "num_hidden_layers",
                                           expected: "at most \(count) (the tensors in \(weights.summary))", found: "\(config.nLayers)")
        }
        // Each extra prediction head is a block of tensors too (`mtp.{j}.*`).
        guard config.predictionHeads - 1 <= count else {
            throw InputError.invalidValue(file: configPath, field: "myopia_prediction_heads",
                                           expected: "at most \(count + 1) (the tensors in \(weights.summary), plus one)", found: "\(config.predictionHeads)")
        }
        try checkRotaryTables(config, file: configPath)
        var tensors: [String: CheckpointTensors.Tensor] = [:]
        var prefixed = false
        for t in weights.tensors {
            let unprefixed = t.name.hasPrefix("transformer.")
            prefixed = prefixed || unprefixed
            tensors[unprefixed ? String(t.name.dropFirst("transformer.".count)) : t.name] = t
        }
        for (name, shape) in Transformer.layout(config) {
            guard let tensor = tensors[name] else {
                // Named as the file would name it.
                let key = prefixed && config.family == .gpt2 ? "transformer." + name : name
                throw InputError.missing(file: weights.source.path, field: weights.field(key))
            }
            guard tensor.shape == shape else {
                throw InputError.invalidValue(file: weights.path(of: tensor), field: tensor.name, expected: "shape \(shape) (from \(configPath))", found: "\(tensor.shape)")
            }
        }
    }

    /// A rotary model's cos/sin tables hold positions × head size floats; refuse absurd ones.
    public static func checkRotaryTables(_ config: ModelConfig, file: String, field: String = "max_position_embeddings") throws {
        guard config.isRotary else { return }
        let (values, overflow) = config.maxPositions.multipliedReportingOverflow(by: config.headSize)
        guard !overflow, values <= maxRotaryValues else {
            throw InputError.invalidValue(file: file, field: field,
                                           expected: "at most \(maxRotaryValues / max(1, config.headSize)) positions for head size \(config.headSize) (rotary tables of at most \(maxRotaryValues) values)",
                                           found: "\(config.maxPositions)")
        }
    }

    /// Reads the weights at `url` into `store`: a checkpoint folder, a `model.safetensors.index.json`
    /// with its shards, or one safetensors file (see `loadWeights(into:from:)`).
    @discardableResult
    public static func loadWeights(into store: ParameterStore, from url: URL) throws -> [String: String] {
        try loadWeights(into: store, from: CheckpointTensors(contentsOf: url))
    }

    /// Maps checkpoint keys onto the registry: accepts a `transformer.` prefix and, for a tied model,
    /// a redundant head (`lm_head.weight`, GPT-NeoX `embed_out.weight`; it must equal the
    /// embedding), skips the `attn.bias` /
    /// `attn.masked_bias` buffers old checkpoints carry, and rejects anything else it does not know.
    /// Converts one file at a time straight into the store. Returns the file's own key for each
    /// parameter.
    @discardableResult
    public static func loadWeights(into store: ParameterStore, from weights: CheckpointTensors) throws -> [String: String] {
        var seen: [String: String] = [:]
        var head: (values: [Float], file: String)?
        try weights.forEachFile { file, tensors in
            for tensor in tensors {
                let entry = tensor.entry
                var key = entry.name
                if key.hasPrefix("transformer.") { key.removeFirst("transformer.".count) }
                if key.hasSuffix(".attn.bias") || key.hasSuffix(".attn.masked_bias") { continue }
                if Self.headKeys.contains(key) && store.entry(key) == nil {
                    head = (try file.floats(entry.name), file.source)
                    continue
                }
                guard let target = store.entry(key) else {
                    throw InputError.unsupported(file: file.source, field: entry.name, value: "a tensor this model does not have")
                }
                guard entry.shape == target.shape else {
                    throw InputError.invalidValue(file: file.source, field: entry.name, expected: "shape \(target.shape) (from config.json)", found: "\(entry.shape)")
                }
                let dst = UnsafeMutableBufferPointer(start: store.weights + target.offset, count: target.count)
                try file.copyFloats(entry.name, into: dst)
                seen[key] = entry.name
            }
        }
        for e in store.entries where seen[e.name] == nil {
            throw InputError.missing(file: weights.source.path, field: weights.field(e.name))
        }
        if let head, let embedding = Self.embeddingKeys.lazy.compactMap({ store.entry($0) }).first {
            let tied = head.values.count == embedding.count && head.values.elementsEqual(store.buffer(store.weights, embedding))
            guard tied else {
                throw InputError.unsupported(file: head.file, field: "lm_head.weight", value: "a head that differs from \(embedding.name) in a model whose config ties them (tie_word_embeddings)")
            }
        }
        return seen
    }

    /// The families' untied heads and token embeddings (Architecture.Keys), which a tied model's
    /// file may carry as a redundant copy and must then equal.
    static let headKeys: Set<String> = Set(ModelConfig.Family.allCases.map { Architecture.base($0).keys.head })
    static let embeddingKeys: [String] = ModelConfig.Family.allCases.map { Architecture.base($0).keys.embedding }

    /// AdamW moments beside the model; returns the file's checksum.
    @discardableResult
    public static func saveOptimizer(_ store: ParameterStore, to dir: URL) throws -> [String: FileChecksum] {
        store.ensureMoments()
        guard let m = store.moment1, let v = store.moment2 else { return [:] }
        let tensors = store.entries.flatMap { e in [
            (name: "exp_avg." + e.name, shape: e.shape, data: store.buffer(m, e)),
            (name: "exp_avg_sq." + e.name, shape: e.shape, data: store.buffer(v, e)),
        ] }
        let url = dir.appendingPathComponent(optimizerFile)
        let hash = try SafeTensorsWriter.write(tensors, metadata: ["format": "myopia-adamw"], to: url, hashing: true)
        return [optimizerFile: FileChecksum(sha256: hash ?? "", bytes: try fileSize(url))]
    }

    /// AdamW moments from `dir`, verified against trainer_state.json when it lists them.
    public static func loadOptimizer(into store: ParameterStore, from dir: URL) throws {
        try verify([optimizerFile], in: dir)
        let url = dir.appendingPathComponent(optimizerFile)
        let file = try SafeTensorsFile(contentsOf: url)
        store.ensureMoments()
        guard let m = store.moment1, let v = store.moment2 else { return }
        for e in store.entries {
            for (prefix, buffer) in [("exp_avg.", m), ("exp_avg_sq.", v)] {
                let name = prefix + e.name
                guard let entry = file[name] else { throw InputError.missing(file: url.path, field: name) }
                guard entry.shape == e.shape else {
                    throw InputError.invalidValue(file: url.path, field: name, expected: "shape \(e.shape)", found: "\(entry.shape)")
                }
                try file.copyFloats(name, into: UnsafeMutableBufferPointer(start: buffer + e.offset, count: e.count))
            }
        }
    }

    /// Resolves a path that is either a checkpoint folder or a run folder holding `checkpoint-STEP`
    /// folders (the newest one wins).
    public static func resolve(_ url: URL) throws -> URL {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        // A checkpoint's own config.json stands for its folder.
        if fm.fileExists(atPath: url.path, isDirectory: &isFolder), !isFolder.boolValue, url.lastPathComponent == configFile {
            return try resolve(url.deletingLastPathComponent())
        }
        if fm.fileExists(atPath: url.appendingPathComponent(configFile).path) { return url }
        if let latest = try? latestCheckpoint(in: url) { return latest }
        let runs = runFolders(in: url)
        if !runs.isEmpty {
            let shown = runs.prefix(12).joined(separator: ", ") + (runs.count > 12 ? ", … (\(runs.count) in all)" : "")
            throw InputError.io(file: url.path, reason: "a folder of runs, not a model: name one of them (e.g. \(url.appendingPathComponent(runs[0]).path)); inside: \(shown)")
        }
        throw InputError.missing(file: url.path, field: "config.json (not a checkpoint folder, and no checkpoint-STEP folder inside)")
    }

    /// The folders under `folder` (one or two levels down, as a demo's stages hold theirs) that a
    /// model can be read from: checkpoint or run folders, as paths relative to `folder`, sorted.
    public static func runFolders(in folder: URL) -> [String] {
        let fm = FileManager.default
        func children(_ url: URL) -> [String] {
            ((try? fm.contentsOfDirectory(atPath: url.path)) ?? []).filter { name in
                var isFolder: ObjCBool = false
                return !name.hasPrefix(".") && fm.fileExists(atPath: url.appendingPathComponent(name).path, isDirectory: &isFolder) && isFolder.boolValue
            }.sorted()
        }
        func isModel(_ url: URL) -> Bool {
            fm.fileExists(atPath: url.appendingPathComponent(configFile).path) || !((try? checkpointSteps(in: url)) ?? []).isEmpty
        }
        var out: [String] = []
        for child in children(folder) {
            let url = folder.appendingPathComponent(child)
            if isModel(url) { out.append(child); continue }
            out += children(url).filter { isModel(url.appendingPathComponent($0)) }.map { child + "/" + $0 }
        }
        return out
    }

    /// The `checkpoint-STEP` folder with the highest STEP in a run folder. Only complete
    /// checkpoints have that name: a save in progress is a hidden `.checkpoint-STEP.partial`.
    public static func latestCheckpoint(in run: URL) throws -> URL? {
        try checkpointSteps(in: run).last.map { run.appendingPathComponent("checkpoint-\($0)") }
    }

    /// The STEPs of the `checkpoint-STEP` folders in a run folder, ascending.
    public static func checkpointSteps(in run: URL) throws -> [Int] {
        let names = try FileManager.default.contentsOfDirectory(atPath: run.path)
        return names.compactMap { name -> Int? in
            guard name.hasPrefix("checkpoint-") else { return nil }
            let digits = name.dropFirst("checkpoint-".count)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
            return Int(digits)
        }.sorted()
    }

    // MARK: - Checksums

    /// The `files` table of a checkpoint's trainer_state.json (nil when the folder has no
    /// trainer_state.json, as a folder saved by `transformers`, or an older Myopia one, has none).
    public static func recordedChecksums(in dir: URL) throws -> [String: FileChecksum]? {
        let url = dir.appendingPathComponent(stateFile)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        struct Manifest: Decodable { var files: [String: FileChecksum]? }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        do { return try JSONDecoder().decode(Manifest.self, from: data).files } catch let error as DecodingError {
            throw InputError.decoding(error, data: data, file: url.path)
        } catch {
            throw InputError.invalidHeader(file: url.path, field: "(json)", reason: "\(error)")
        }
    }

    /// Checks each of `names` in `dir` against the size and sha256 trainer_state.json records for
    /// it; names it does not list (or a folder without one) pass unchecked.
    public static func verify(_ names: [String], in dir: URL) throws {
        guard let files = try recordedChecksums(in: dir) else { return }
        for name in names {
            guard let want = files[name] else { continue }
            let url = dir.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else { throw InputError.missing(file: url.path, field: "file") }
            let size = try fileSize(url)
            guard size == want.bytes else {
                throw InputError.checksumMismatch(file: url.path, expected: "\(want.bytes) bytes (\(stateFile))", found: "\(size) bytes")
            }
            let found = try SHA256.hash(fileAt: url)
            guard found == want.sha256 else {
                throw InputError.checksumMismatch(file: url.path, expected: want.sha256, found: found)
            }
        }
    }

    static func fileSize(_ url: URL) throws -> Int {
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
            return (attributes[.size] as? NSNumber)?.intValue ?? 0
        } catch {
            throw InputError.io(file: url.path, reason: "cannot read its size: \(error.localizedDescription)")
        }
    }

    static func createDirectory(_ dir: URL) throws {
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw InputError.io(file: dir.path, reason: "cannot create the folder: \(error.localizedDescription)")
        }
    }
}
