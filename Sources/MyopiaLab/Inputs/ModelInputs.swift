import Foundation
import Myopia

/// Turns what a user typed after `--model` (or `--checkpoint`) into a model: a checkpoint or run
/// folder (its newest checkpoint), a .gguf file or a known model name, with the tokenizer it was
/// trained with.
public enum ModelInputs {
    /// A loaded model: where it came from, the model and its tokenizer.
    public typealias Loaded = (source: URL, model: Transformer, tokenizer: any Tokenizer)

    /// Loads a model for an analysis over windows of `seqLen` (nil: any), with its tokenizer (or
    /// `override`), checked against its vocabulary.
    public static func load(_ nameOrPath: String, seqLen: Int? = nil, tokenizer override: String? = nil,
                            need: MemoryBudget.Need = .forward, activations: Int = 0,
                            log: (String) -> Void = { _ in }) throws -> Loaded {
        // A known model (smollm2-135m) is also its own tokenizer: its asset is looked up twice, and
        // its "cached at" line is said once.
        try withoutActuallyEscaping(log) { log in
            var said = Set<String>()
            let once = { (line: String) in if said.insert(line).inserted { log(line) } }
            return try load(ModelSource.locate(nameOrPath, log: once), seqLen: seqLen, tokenizer: override, need: need,
                            activations: activations, log: once)
        }
    }

    /// `load` for a model already located (a command that first looks at its config).
    /// `need` is what the command keeps per parameter (MemoryBudget): a model that will not fit is
    /// refused, with the figures, before its weights are read.
    public static func load(_ location: ModelSource.Location, seqLen: Int? = nil, tokenizer override: String? = nil,
                            need: MemoryBudget.Need = .forward, activations: Int = 0,
                            log: (String) -> Void = { _ in }) throws -> Loaded {
        let config = try ModelSource.config(at: location)
        try check(seqLen, fits: config)
        try checkMemory(config, need: need, activations: activations, file: location.url.path)
        let tokenizer = try tokenizer(for: config, source: location.url, override: override, log: log)
        return (location.url, try ModelSource.load(location), tokenizer)
    }

    /// Loads a model with continuous heads (the sine task), which reads features rather than
    /// text, for windows of `seqLen` positions.
    public static func loadContinuous(_ location: ModelSource.Location, seqLen: Int) throws -> Transformer {
        try check(seqLen, fits: ModelSource.config(at: location))
        return try ModelSource.load(location)
    }

    /// Refuses a model whose `need` exceeds the memory available (MemoryBudget.swift).
    public static func checkMemory(_ config: ModelConfig, need: MemoryBudget.Need, activations: Int = 0, file: String,
                                   available: MemoryBudget.Available = MemoryBudget.available()) throws {
        let parameters = Transformer.layout(config).reduce(0) { $0 + $1.1.reduce(1, *) }
        let command = need == .forward ? "a forward-only analysis" : need == .gradient ? "a gradient analysis" : "training"
        try MemoryBudget.check(parameters: parameters, need: need, activations: activations, command: command,
                               file: file, available: available)
    }

    /// The activations a backward pass keeps, roughly: per position and layer the block's inputs,
    /// q/k/v, attention weights (NH·T), the MLP's hidden values, and the logits, in fp32.
    public static func activationBytes(_ config: ModelConfig, batch: Int, seqLen: Int) -> Int {
        let perPosition = config.nLayers * (10 * config.dModel + 3 * config.dMLP + config.nHeads * seqLen) + 2 * config.vocabSize
        let (a, o1) = perPosition.multipliedReportingOverflow(by: max(batch, 1) * max(seqLen, 1))
        let (b, o2) = a.multipliedReportingOverflow(by: 4)
        return o1 || o2 ? .max / 2 : b
    }

    /// The run's recorded setting `key` ("seq_len", "flow", "data") of a checkpoint: its
    /// trainer_state.json (a `myopia train` run), else a run_config.json in it or in the run folder
    /// above it (a sine-task run); nil for a model from elsewhere (a .gguf, a Hugging Face folder).
    static func recorded(_ key: String, of location: ModelSource.Location) -> Any? {
        guard case .checkpoint(let dir) = location else { return nil }
        if let config = Trainer.recordedConfig(in: dir) {
            switch key {
            case "seq_len": return config.seqLen
            case "flow": return config.flow.description
            case "data": return config.data
            case "validation_fraction": return config.validationFraction
            default: return nil
            }
        }
        for folder in [dir, dir.deletingLastPathComponent()] {
            if let data = try? Data(contentsOf: folder.appendingPathComponent(Trainer.runConfigFile)),
               let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let value = object[key] {
                return value
            }
        }
        return nil
    }

    /// The context length the model was trained with (its run's seq_len), if it records one.
    public static func trainedSeqLen(_ location: ModelSource.Location) -> Int? {
        (recorded("seq_len", of: location) as? Int).flatMap { $0 > 0 ? $0 : nil }
    }

    /// The gradient flow the model was trained with, if its run records one.
    public static func trainedFlow(_ location: ModelSource.Location) -> GradientFlow? {
        (recorded("flow", of: location) as? String).flatMap { try? GradientFlow(parsing: $0) }
    }

    /// Refuses windows longer than the model's positions; checked on the config, before the
    /// weights are read (seconds for a large model).
    static func check(_ seqLen: Int?, fits config: ModelConfig) throws {
        if let seqLen, seqLen > config.maxPositions {
            throw FlagError("--seq-len \(seqLen) is longer than the model's \(config.maxPositions) positions")
        }
    }

    /// The tokenizer a model was trained with (or `override`), checked against its vocabulary size:
    /// a model folder's own tokenizer.json (a Hugging Face folder's), else the one its config.json
    /// names (`myopia_tokenizer`), else bytes. A GGUF names its embedded tokenizer. `source` names the
    /// checkpoint folder or model file in errors.
    public static func tokenizer(for config: ModelConfig, source: URL, override: String? = nil,
                                 log: (String) -> Void = { _ in }) throws -> any Tokenizer {
        let file = source.hasDirectoryPath || source.pathExtension.isEmpty
            ? source.appendingPathComponent(Checkpoint.configFile).path : source.path
        guard !config.isContinuous else {
            throw InputError.unsupported(file: file, field: "myopia_input_features",
                                          value: "a model with continuous heads (sine task), which reads features, not text: use `myopia horizon` or `myopia synthetic sine` with it")
        }
        let ownFile = override == nil ? folderTokenizer(source) : nil
        if let ownFile { log("tokenizer: \(ownFile.path) (the model folder's tokenizer.json)") }
        let name = override ?? ownFile?.path ?? config.tokenizer ?? ByteTokenizer.name
        let tokenizer = try Tokenizers.load(name, log: log)
        guard tokenizer.vocabSize <= config.vocabSize else {
            throw InputError.invalidValue(file: file, field: "vocab_size",
                                           expected: "at least \(tokenizer.vocabSize) (the vocabulary of tokenizer \(name))",
                                           found: "\(config.vocabSize)")
        }
        return tokenizer
    }

    /// The tokenizer.json in a model folder (Hugging Face's tokenizer file), if there is one.
    public static func folderTokenizer(_ source: URL) -> URL? {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source.path, isDirectory: &isFolder), isFolder.boolValue else { return nil }
        let file = source.appendingPathComponent("tokenizer.json")
        return FileManager.default.fileExists(atPath: file.path) ? file : nil
    }
}
