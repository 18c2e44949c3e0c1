import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a model of any family on a text file, under a gradient flow and a training game.",
        discussion: """
        Writes checkpoint-STEP folders (Hugging Face config.json + model.safetensors, plus optimizer and trainer state), metrics.jsonl and run_config.json into --out. Settings come from the defaults, then --config FILE.json (keys as the flags, e.g. "d_model"), then the flags.

        The gradient flow (--flow) decides what backward sends through attention; the training game (--game, docs/games.md) decides what is upstream of the loss: teacher-forced (default); scheduled-sampling (each input after the first is, with probability --sample-rate, the model's own sample); consequence (a policy-gradient term rewards a sampled token by how well the true continuation is then predicted); multi-token (--prediction-heads N: extra heads predict t+2 … t+N). Games and flows combine freely, except consequence and multi-token under local-myopic. The validation loss is always the teacher-forced next-token loss.

        Examples:
          myopia train --data tinyshakespeare --out runs/shakespeare --steps 2000 \\
              --layers 4 --d-model 128
          myopia train --data tinyshakespeare --out runs/shakespeare-myopic \\
              --flow myopic --steps 2000
          myopia train --data tinyshakespeare --out runs/llama --family llama \\
              --heads 4 --kv-heads 2 --steps 2000
          myopia train --data tinyshakespeare --out runs/split --steps 1000 \\
              --log-gradient-split 100
          myopia train --data tinyshakespeare --out runs/shakespeare --steps 4000 \\
              --resume
          myopia train --data tinyshakespeare --out runs/local --flow local-myopic \\
              --reference runs/shakespeare --steps 300
          myopia train --data tinyshakespeare --out runs/ss --steps 2000 \\
              --game scheduled-sampling --sample-rate 0.25
          myopia train --data tinyshakespeare --out runs/consequence --steps 2000 \\
              --game consequence --consequence-weight 0.5 --consequence-horizon 4
          myopia train --data tinyshakespeare --out runs/mtp --steps 2000 \\
              --game multi-token --prediction-heads 2 --flow myopic
        """)

    @Option(help: "The run folder to write.") var out: String
    @OptionGroup var settings: TrainingFlags
    @Option(help: "Gradient flow: vanilla (default), myopic, beta=β (β in [0,1]), bigram, or local-myopic (needs --reference).") var flow: String?
    @Option(help: "Fine-tune this trained model (a checkpoint or run folder, .gguf file or model name) instead of a fresh one; under --flow local-myopic it also stays, frozen, as the source of earlier positions' keys and values. The shape and tokenizer are its own. The run records it: --resume finds it again.")
    var reference: String?
    @Option(help: "Seed for initialisation and batches (default \(trainDefaults.seed)).") var seed: UInt64?
    @Flag(help: "Continue from the newest checkpoint in --out.") var resume = false
    @Flag(help: "Print only the final result.") var quiet = false
    @Flag(help: "Print the final metrics as JSON.") var json = false

    func resolvedConfig() throws -> TrainConfig {
        var c = try settings.resolve()
        if let flow { c.flow = try GradientFlow(parsing: flow) }
        if let seed { c.seed = seed }
        return c
    }

    func run() throws {
        Terminal.quiet = quiet || json
        Terminal.catchInterrupts(resume: "run the same command with --resume to continue from it")
        try reportingErrors {
            let run = try TrainingRun(TrainingRun.Options(
                config: try resolvedConfig(), out: URL(fileURLWithPath: out), resume: resume, reference: reference,
                given: settings.given, seqLenGiven: settings.seqLen != nil || settings.config != nil), log: Terminal.info, warn: Terminal.warning)
            let steps = run.config.steps, firstStep = run.firstStep, started = Date()
            let last = try run.run { m in
                let val = m.valLoss.map { String(format: " val %.4f", $0) } ?? ""
                let status = String(format: "loss %.4f%@  lr %.2e  |g| %.2f  %.0f tok/s", m.trainLoss, val, m.lr, m.gradNorm, m.tokensPerSecond)
                if Terminal.isTTY {
                    Terminal.progress(m.step - firstStep, of: steps - firstStep, started: started, status: status)
                    if m.valLoss != nil { Terminal.info("step \(m.step): \(status)") }
                } else {
                    Terminal.progress(m.step, of: steps, started: started, status: status)
                }
            }
            if json {
                if let last { try printJSON(last) }
            } else if let last {
                print(String(format: "step %d: train loss %.4f, val loss %.4f; checkpoints in %@", last.step, last.trainLoss,
                             last.valLoss ?? .nan, out))
            } else {
                print("nothing to do: the run in \(out) is already at step \(run.trainer.step)")
            }
        }
    }
}
