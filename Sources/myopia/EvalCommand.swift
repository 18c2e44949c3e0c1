import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct EvalCommand: ConfigFileCommand, RunFolderOutput {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Mean next-token loss of a model on a text file.",
        usage: "myopia eval [<options>] --model <model> --data <data>",
        discussion: """
        The text (by default the validation split for a named dataset or the text the model's run trained on, else all of it; --split) is cut into consecutive, non-overlapping windows of T+1 tokens (T predictions each; a shorter tail is dropped); `loss` is the mean cross-entropy over all predictions, `tokens` their count. T is --seq-len, by default the run's own.

        Examples:
          myopia eval --model runs/shakespeare --data tinyshakespeare --seq-len 128
          myopia eval --model smollm2-135m --data tinyshakespeare --seq-len 256 \\
              --max-windows 8 --json
          myopia eval --model runs/local --flow local-myopic \\
              --reference runs/shakespeare --data tinyshakespeare --seq-len 128
          # eval.json in runs/shakespeare, which `myopia runs` shows:
          myopia eval --model runs/shakespeare --data tinyshakespeare --seq-len 128 \\
              --out runs/shakespeare

        With --flow local-myopic every layer's query at t attends, for s < t, to the keys and values that the --reference model computed from its own hidden states, and to its own on the diagonal (the local myopia bonus; see `myopia bonus`). With bigram each position attends only to itself.
        """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var input: DataWindowOptions
    @OptionGroup var tokenizer: TokenizerOption
    @Option(help: "How the model attends: as trained (default), bigram (each position only itself), or local-myopic (with --reference, or the reference the run recorded).")
    var flow: String?
    @Option(help: "Under --flow local-myopic: the frozen reference model whose keys and values earlier positions use (default: the one the run was trained with).")
    var reference: String?
    @Option(help: "The part of the text scored: validation (its last tenth, or the run's validation_fraction), train or all (default: validation for a named dataset or the run's own text, else all).")
    var split: String?
    @OptionGroup var output: OutputOptions<EvalCommand>
    @OptionGroup var configFile: ConfigFileOption<EvalCommand>

    static let outputFiles = EvaluationResult.fileName

    func validate() throws {
        if reference != nil && flow != GradientFlow.localMyopic.description {
            throw ValidationError("--reference is for --flow local-myopic")
        }
        if let split, ModelEvaluation.Split(rawValue: split) == nil {
            throw ValidationError("--split must be validation, train or all")
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
        /// The part of the text scored: validation, train or all.
        let split: String
    }

    func run() throws {
        Terminal.quiet = output.quiet || output.json
        try reportingErrors {
            let seqLen = try input.seqLen(for: model.nameOrPath)
            let e = try ModelEvaluation.run(ModelEvaluation.Request(
                model: model.nameOrPath, data: input.data, seqLen: seqLen, batch: input.batch, maxWindows: input.maxWindows,
                tokenizer: tokenizer.tokenizer, flow: flow, reference: reference, out: output.folder,
                split: split.flatMap(ModelEvaluation.Split.init(rawValue:))),
                log: Terminal.info, warn: Terminal.warning)
            let result = e.result
            if output.json {
                try printJSON(Output(loss: result.loss, tokens: result.tokens, windows: result.windows, seq_len: seqLen,
                                     checkpoint: e.source.path, data: e.data.path, position_loss: result.positionLoss,
                                     flow: e.flow.description, reference: e.reference, split: e.split.rawValue))
            } else {
                print(String(format: "loss %.4f nats/token (%.4f bits/token) over %d predictions in %d windows of %d (%@)",
                             result.loss, result.loss / Foundation.log(2), result.tokens, result.windows, seqLen, e.splitNote))
            }
        }
    }
}
