import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct GradientsCommand: ConfigFileCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradients",
        abstract: "Save the gradient of the eval loss with respect to every parameter, under a gradient flow.",
        usage: "myopia gradients [<options>] --model <model> --data <data>\n--seq-len <seq-len> --out <out>",
        discussion: """
        The loss is exactly `myopia eval`'s: the mean next-token cross-entropy over consecutive, non-overlapping windows of T+1 tokens. Gradients are saved as F32 safetensors under the checkpoint's own Hugging Face key names. Compare flows to see what myopic training removes. Each batch of --batch windows is differentiated on its own and the batches are added in order, so under mpirun (a build with --traits MPI) the ranks split the batches and write one process's file.

        Example:
          myopia gradients --checkpoint runs/shakespeare --data tinyshakespeare \\
              --seq-len 128 --flow myopic --max-windows 64 \\
              --out grads-myopic.safetensors
        """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var input: DataWindowOptions
    @Option(help: "Gradient flow: vanilla, myopic, beta=β or bigram.") var flow = "vanilla"
    @Option(help: "The safetensors file to write.") var out: String
    @Flag(help: "Print a JSON summary.") var json = false
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false
    @OptionGroup var configFile: ConfigFileOption<GradientsCommand>

    struct Output: Encodable {
        let loss: Double
        let tokens: Int
        let windows: Int
        let flow: String
        let grad_norm: Double
        let out: String
    }

    func run() throws {
        Terminal.quiet = quiet || json
        try reportingErrors {
            let seqLen = try input.seqLen(for: model.nameOrPath)
            let gradientFlow = try GradientFlow(parsing: flow, allowsLocalMyopic: false)
            try checkOutput(out, isFile: true)
            let (dir, model, tokenizer) = try ModelInputs.load(self.model.nameOrPath, seqLen: seqLen, need: .gradient, log: Terminal.info)
            let (url, tokens) = try DataSource.tokens(input.data, seqLen: seqLen, tokenizer: tokenizer, log: Terminal.info)
            // Under mpirun each rank computes its batches; every rank ends with the sum, rank 0 writes it.
            let group = Distributed.group
            let result = Gradients.compute(model, tokens: tokens, seqLen: seqLen, flow: gradientFlow, batch: input.batch,
                                           maxWindows: input.maxWindows, group: group)
            if group.rank == 0 {
                try Gradients.save(model, to: URL(fileURLWithPath: out), metadata: [
                    "flow": gradientFlow.description, "loss": "\(result.loss)", "seq_len": "\(seqLen)",
                    "windows": "\(result.windows)", "checkpoint": dir.path, "data": url.path])
            }
            let norm = GradientClipping.globalNorm(model.params)
            if json {
                try printJSON(Output(loss: result.loss, tokens: result.tokens, windows: result.windows,
                                     flow: gradientFlow.description, grad_norm: norm, out: out))
            } else {
                print(String(format: "%@ gradients of loss %.4f over %d predictions (norm %.4g) written to %@",
                             gradientFlow.description, result.loss, result.tokens, norm, out))
            }
        }
    }
}
