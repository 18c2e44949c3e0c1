import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct EvalCommand: ConfigFileCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Mean next-token loss of a model on a text file.",
        discussion: """
        The file is cut into consecutive, non-overlapping windows of T+1 tokens (T predictions each; a
        shorter tail is dropped); `loss` is the mean cross-entropy over all predictions, `tokens` their count.

        Example:
          myopia eval --model runs/shakespeare --data tinyshakespeare --seq-len 128 --json
          myopia eval --model smollm2-135m --data tinyshakespeare --seq-len 256 --max-windows 8
          myopia eval --model runs/local --flow local-myopic --reference runs/shakespeare --data tinyshakespeare --seq-len 128
          myopia eval --model runs/shakespeare --data tinyshakespeare --seq-len 128 --out runs/shakespeare   # eval.json: `myopia runs` shows it

        With --flow local-myopic every layer's query at t attends, for s < t, to the keys and values that
        the --reference model computed from its own hidden states, and to its own on the diagonal (the
        local myopia bonus; see `myopia bonus`). With bigram each position attends only to itself.
        """)

    @Option(name: [.customLong("model"), .customLong("checkpoint")], help: modelOptionHelp) var checkpoint: String
    @Option(help: "A text file, or a known dataset name.") var data: String
    @Option(name: .customLong("seq-len"), help: "Window length T.") var seqLen: Int
    @Option(help: "Windows per forward pass.") var batch = 8
    @Option(name: .customLong("max-windows"), help: "Evaluate at most this many windows.") var maxWindows: Int?
    @Option(help: "Tokenizer: byte, gpt2 or a path (default: the one the checkpoint names).") var tokenizer: String?
    @Option(help: "How the model attends: as trained (default), bigram (each position only itself), or local-myopic (with --reference, or the reference the run recorded).")
    var flow: String?
    @Option(help: "Under --flow local-myopic: the frozen reference model whose keys and values earlier positions use (default: the one the run was trained with).")
    var reference: String?
    @Option(help: "A run folder to write eval.json into (and commands.json: how it was made), for `myopia report` and `myopia runs`.")
    var out: String?
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false
    @OptionGroup var configFile: ConfigFileOption

    func validate() throws {
        guard seqLen > 0 else { throw ValidationError("--seq-len must be positive") }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        if let maxWindows, maxWindows <= 0 { throw ValidationError("--max-windows must be positive") }
        if reference != nil && flow != GradientFlow.localMyopic.description {
            throw ValidationError("--reference is for --flow local-myopic")
        }
    }

    struct Output: Encodable {
        let loss: Double
        let tokens: Int
        let windows: Int
        let seq_len: Int
        let checkpoint: String
        let data: String
        let position_loss: [Double]
        /// How the model attended (as trained unless --flow), and under local-myopic its reference.
        let flow: String
        let reference: String?
    }

    func run() throws {
        Terminal.quiet = quiet || json
        try reportingErrors {
            let (dir, model, tok) = try loadModel(checkpoint, seqLen: seqLen, tokenizer: tokenizer)
            var referencePath: String?
            let trained = Trainer.recordedConfig(in: dir)
            if flow == nil, let trained, trained.flow == .localMyopic {
                let ref = trained.reference ?? "DIR"
                Terminal.warning("\(dir.path) was trained local-myopically (attending to \(ref)'s keys and values); this evaluates "
                                 + "it as an ordinary model: add --flow local-myopic --reference \(ref) to evaluate it as trained")
            }
            if let flow {
                model.flow = try GradientFlow(parsing: flow)
                if model.flow == .localMyopic {
                    // --reference, else the one the run recorded.
                    guard let reference = reference ?? trained?.reference else {
                        throw ValidationError("--flow local-myopic needs --reference DIR")
                    }
                    let (source, frozen, _) = try loadModel(reference, seqLen: seqLen, tokenizer: tokenizer)
                    try model.checkReference(frozen, seqLen: seqLen, file: source.path)
                    model.reference = frozen
                    referencePath = source.path
                }
            }
            let (url, tokens) = try DataSource.tokens(data, seqLen: seqLen, tokenizer: tok, log: Terminal.info)
            let started = Date()
            let result = Evaluation.run(model, tokens: tokens, seqLen: seqLen, batch: batch, maxWindows: maxWindows)
            if let out {
                var settings = ["seq_len": "\(seqLen)", "batch": "\(batch)", "flow": model.flow.description, "tokenizer": tok.name]
                settings["max_windows"] = maxWindows.map(String.init)
                settings["reference"] = referencePath
                let file = try RunFolder.write(result, as: EvaluationResult.fileName, record: AnalysisRecord(
                    command: "eval", model: dir.path, data: url.path, settings: settings, seconds: Date().timeIntervalSince(started)),
                    to: URL(fileURLWithPath: out))
                Terminal.info("wrote \(file.path)")
            }
            if json {
                try printJSON(Output(loss: result.loss, tokens: result.tokens, windows: result.windows, seq_len: seqLen,
                                     checkpoint: dir.path, data: url.path, position_loss: result.positionLoss,
                                     flow: model.flow.description, reference: referencePath))
            } else {
                print(String(format: "loss %.4f nats/token (%.4f bits/token) over %d predictions in %d windows",
                             result.loss, result.loss / Foundation.log(2), result.tokens, result.windows))
            }
        }
    }
}

/// Loads a model (`--model` / `--checkpoint`: a checkpoint or run folder, a .gguf file or a known
/// model name) for an analysis over windows of `seqLen` (nil: any), with its tokenizer (or
/// `override`), checked against its vocabulary.
func loadModel(_ nameOrPath: String, seqLen: Int? = nil, tokenizer override: String? = nil) throws
    -> (source: URL, model: Transformer, tokenizer: any Tokenizer) {
    let location = try ModelSource.locate(nameOrPath, log: Terminal.info)
    let config = try ModelSource.config(at: location)
    // Checked on the config, before the weights are read (seconds for a large model).
    if let seqLen, seqLen > config.maxPositions {
        throw ValidationError("--seq-len \(seqLen) is longer than the model's \(config.maxPositions) positions")
    }
    let tokenizer = try modelTokenizer(config, source: location.url, override: override)
    return (location.url, try ModelSource.load(location), tokenizer)
}

/// The tokenizer a model was trained with (or `override`), checked against its vocabulary size.
/// `source` names the checkpoint folder or model file in errors.
func modelTokenizer(_ config: ModelConfig, source: URL, override: String? = nil) throws -> any Tokenizer {
    let file = source.hasDirectoryPath || source.pathExtension.isEmpty
        ? source.appendingPathComponent(Checkpoint.configFile).path : source.path
    guard !config.isContinuous else {
        throw InputError.unsupported(file: file, field: "myopia_input_features",
                                      value: "a model with continuous heads (sine task), which reads features, not text: use `myopia horizon` or `myopia synthetic sine` with it")
    }
    let name = override ?? config.tokenizer ?? ByteTokenizer.name
    let tokenizer = try Tokenizers.load(name, log: Terminal.info)
    guard tokenizer.vocabSize <= config.vocabSize else {
        throw InputError.invalidValue(file: file, field: "vocab_size",
                                       expected: "at least \(tokenizer.vocabSize) (the vocabulary of tokenizer \(name))",
                                       found: "\(config.vocabSize)")
    }
    return tokenizer
}

/// The help of the `--model` option every analysis command shares.
let modelOptionHelp = ArgumentHelp("A checkpoint or run folder (its newest checkpoint), a .gguf file, or a model name (smollm2-135m).")
