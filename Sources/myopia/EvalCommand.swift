import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Mean next-token loss of a checkpoint on a text file.",
        discussion: """
        The file is cut into consecutive, non-overlapping windows of T+1 tokens (T predictions each; a
        shorter tail is dropped); `loss` is the mean cross-entropy over all predictions, `tokens` their count.

        Example:
          myopia eval --checkpoint runs/shakespeare --data tinyshakespeare --seq-len 128 --json
        """)

    @Option(help: "A checkpoint folder, or a run folder (its newest checkpoint).") var checkpoint: String
    @Option(help: "A text file, or a known dataset name.") var data: String
    @Option(name: .customLong("seq-len"), help: "Window length T.") var seqLen: Int
    @Option(help: "Windows per forward pass.") var batch = 8
    @Option(name: .customLong("max-windows"), help: "Evaluate at most this many windows.") var maxWindows: Int?
    @Option(help: "Tokenizer: byte, gpt2 or a path (default: the one the checkpoint names).") var tokenizer: String?
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard seqLen > 0 else { throw ValidationError("--seq-len must be positive") }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        if let maxWindows, maxWindows <= 0 { throw ValidationError("--max-windows must be positive") }
    }

    struct Output: Encodable {
        let loss: Double
        let tokens: Int
        let windows: Int
        let seq_len: Int
        let checkpoint: String
        let data: String
        let position_loss: [Double]
    }

    func run() throws {
        try reportingErrors {
            let (dir, model, tok) = try loadCheckpoint(checkpoint, seqLen: seqLen, tokenizer: tokenizer)
            let (url, tokens) = try DataSource.tokens(data, seqLen: seqLen, tokenizer: tok, log: Terminal.info)
            let result = Evaluation.run(model, tokens: tokens, seqLen: seqLen, batch: batch, maxWindows: maxWindows)
            if json {
                try printJSON(Output(loss: result.loss, tokens: result.tokens, windows: result.windows, seq_len: seqLen,
                                     checkpoint: dir.path, data: url.path, position_loss: result.positionLoss))
            } else {
                print(String(format: "loss %.4f nats/token (%.4f bits/token) over %d predictions in %d windows",
                             result.loss, result.loss / Foundation.log(2), result.tokens, result.windows))
            }
        }
    }
}

/// Loads the checkpoint (or a run folder's newest one) for an analysis over windows of `seqLen`,
/// with its tokenizer: `override` (a --tokenizer flag), else the one its config names, else bytes.
func loadCheckpoint(_ path: String, seqLen: Int, tokenizer override: String? = nil) throws
    -> (dir: URL, model: Transformer, tokenizer: any Tokenizer) {
    let dir = try Checkpoint.resolve(URL(fileURLWithPath: path))
    let config = try ModelConfig.load(from: dir.appendingPathComponent(Checkpoint.configFile))
    let tokenizer = try checkpointTokenizer(config, dir: dir, override: override)
    let model = try Checkpoint.loadModel(from: dir)
    guard seqLen <= model.config.maxPositions else {
        throw ValidationError("--seq-len \(seqLen) is longer than the model's \(model.config.maxPositions) positions")
    }
    return (dir, model, tokenizer)
}

/// The tokenizer a checkpoint was trained with, checked against its vocabulary size.
func checkpointTokenizer(_ config: ModelConfig, dir: URL, override: String? = nil) throws -> any Tokenizer {
    guard !config.isContinuous else {
        throw FormatError.unsupported(file: dir.appendingPathComponent("config.json").path, field: "myopia_input_features",
                                      value: "a model with continuous heads (sine task), which reads features, not text: use `myopia horizon` or `myopia synthetic sine` with it")
    }
    let name = override ?? config.tokenizer ?? ByteTokenizer.name
    let tokenizer = try Tokenizers.load(name, log: Terminal.info)
    guard tokenizer.vocabSize <= config.vocabSize else {
        throw FormatError.invalidValue(file: dir.appendingPathComponent("config.json").path, field: "vocab_size",
                                       expected: "at least \(tokenizer.vocabSize) (the vocabulary of tokenizer \(name))",
                                       found: "\(config.vocabSize)")
    }
    return tokenizer
}
