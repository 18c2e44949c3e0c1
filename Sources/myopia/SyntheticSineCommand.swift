import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct SyntheticSineCommand: ConfigFileCommand {
    static let configExample = #"{"frequency": 10}"#
    static let configuration = CommandConfiguration(
        commandName: "sine",
        abstract: "The synthetic pre-caching task: does a model compute at n what only later positions need?",
        discussion: """
        Inputs (x_n, z_n) with x_n ~ N(0,1), z_n ~ Bernoulli(p); target y_n = z_n · Σ_{i=1..W} sin(f·x_{n−i}) + (1 − z_n) · x_n (Wu, Morris & Levine 2024). Trains their model (2 layers, d_model 128, 2 heads) with a continuous input and output head and Huber loss on fresh sequences each step, then reports the validation Huber loss beside two baselines on the same sequences: predict-zero, and the no-pre-caching floor (x_n where z_n = 0, 0 where z_n = 1), the best a model can do without caching sin(f·x) at earlier positions. Vanilla training can pre-cache and go below the floor; myopic training cannot pre-cache.

        The published runs use f = 10 and ~30M sequences; at CPU scale f = 3 and p = 1 separate the flows in minutes. With p < 1 and a low f a myopic model also gets below the floor: what it computes at z_n = 0 positions to output x_n approximates sin(f·x_n) (breadcrumbs, not pre-caching); a high f rules that out. Writes --out: run_config.json, metrics.jsonl, checkpoint-STEP/ (config.json + model.safetensors of a continuous-head model: Myopia loads it, transformers does not) and results.json.

        Examples:
          myopia synthetic sine --p 1 --frequency 3 --flow vanilla
          myopia synthetic sine --p 1 --frequency 3 --flow myopic --json
          myopia synthetic sine --p 0.3 --frequency 10 --flow vanilla --steps 3000 \\
              --time-limit 900
        """)

    @Option(help: "Probability that a position asks for the window sum (z_n = 1).") var p = 1.0
    @Option(help: "f in sin(f·x) (published: 10).") var frequency = 3.0
    @Option(help: "W: earlier positions each sum covers (published: 10).") var window = SineTask.publishedWindow
    @Option(help: "Gradient flow: vanilla, myopic, beta=β (β in [0,1]) or bigram.") var flow = "vanilla"
    @Option(help: "Training game: only teacher-forced (the model's outputs are numbers, not tokens it could read back).") var game = "teacher-forced"
    @Option(help: "The run folder (default: runs/sine-FLOW-pP-fF).") var out: String?
    @Option(help: "Optimiser steps.") var steps = SineExperiment.Options().steps
    @Option(help: "Sequences per step.") var batch = SineExperiment.Options().batch
    @Option(help: "Compute each batch in this many shards, added in a fixed order: the same result on one process or under mpirun -np N, N ≤ shards.")
    var shards = SineExperiment.Options().shards
    @Option(name: .customLong("seq-len"), help: "Positions per sequence T.") var seqLen = SineExperiment.Options().seqLen
    @Option(help: "Transformer blocks.") var layers = SineExperiment.Options().layers
    @Option(help: "Attention heads per block.") var heads = SineExperiment.Options().heads
    @Option(name: .customLong("d-model"), help: "Residual stream width.") var dModel = SineExperiment.Options().dModel
    @Option(help: "Peak learning rate.") var lr = SineExperiment.Options().lr
    @Option(name: .customLong("min-lr"), help: "Learning rate at the end of the cosine decay (default: lr/10).") var minLR: Double?
    @Option(help: "Linear warmup steps.") var warmup = SineExperiment.Options().warmup
    @Option(name: .customLong("weight-decay"), help: "AdamW decoupled weight decay (matrices only).") var weightDecay = SineExperiment.Options().weightDecay
    @Option(help: "Clip the global gradient norm to this value.") var clip = SineExperiment.Options().clip
    @Option(help: "Huber or mse.") var loss = "huber"
    @Option(help: "Seed for initialisation and training data.") var seed: UInt64 = 1
    @Option(name: .customLong("val-sequences"), help: "Validation sequences (fixed data, the same for every seed).") var validationSequences = SineExperiment.Options().validationSequences
    @Option(name: .customLong("eval-every"), help: "Validate every N steps.") var evalEvery = SineExperiment.Options().evalEvery
    @Option(name: .customLong("log-every"), help: "Log metrics every N steps.") var logEvery = SineExperiment.Options().logEvery
    @Option(name: .customLong("time-limit"), help: "Stop after this many seconds of training (the steps done are reported).") var timeLimit: Double?
    @Flag(help: "Print only the final table.") var quiet = false
    @Flag(help: "Print results.json's content as one line of JSON.") var json = false
    @OptionGroup var configFile: ConfigFileOption<SyntheticSineCommand>

    func options() throws -> SineExperiment.Options {
        var o = SineExperiment.Options()
        o.task = SineTask(p: p, frequency: frequency, window: window)
        o.flow = try GradientFlow(parsing: flow, allowsLocalMyopic: false)
        guard game == TrainingGame.teacherForced.name else {
            throw InputError.unsupported(file: "flags", field: "game",
                                          value: "\(game) for a continuous-head (sine) model: its outputs are numbers, never read back as input, so only teacher-forced applies")
        }
        o.steps = steps
        o.batch = batch
        o.shards = shards
        o.seqLen = seqLen
        o.layers = layers
        o.heads = heads
        o.dModel = dModel
        o.lr = lr
        o.minLR = minLR ?? lr / 10
        o.warmup = warmup
        o.weightDecay = weightDecay
        o.clip = clip
        guard let kind = RegressionLoss(rawValue: loss) else {
            throw InputError.invalidValue(file: "flags", field: "loss", expected: "huber or mse", found: loss)
        }
        o.loss = kind
        o.seed = seed
        o.validationSequences = validationSequences
        o.evalEvery = evalEvery
        o.logEvery = logEvery
        o.timeLimit = timeLimit
        try o.validate()
        return o
    }

    func run() throws {
        Terminal.quiet = quiet || json
        Terminal.catchInterrupts(resume: nil)
        try reportingErrors {
            let options = try options()
            let folder = out ?? options.defaultOut
            try checkOutput(folder)
            Terminal.info("synthetic sine: p \(options.task.p), frequency \(options.task.frequency), window \(options.task.window), flow \(options.flow); \(options.steps) steps of \(options.batch)×\(options.seqLen)")
            let started = Date()
            let result = try SineExperiment.run(options, out: URL(fileURLWithPath: folder), log: Terminal.info) { m in
                let val = m.valLoss.map { String(format: " val %.4f", $0) } ?? ""
                let status = String(format: "loss %.4f%@  lr %.2e  |g| %.2f  %.1f ms/step", m.trainLoss, val, m.lr, m.gradNorm, m.msPerStep)
                Terminal.progress(m.step, of: options.steps, started: started, status: status)
                if Terminal.isTTY, m.valLoss != nil { Terminal.info("step \(m.step): \(status)") }
            }
            if json { try printJSON(result); return }
            print(Self.table(result, folder: folder))
        }
    }

    static func table(_ r: SineExperiment.Result, folder: String) -> String {
        func row(_ name: String, _ loss: Double) -> String {
            name.padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: "%10.4f %9.3f", loss, loss / r.floorLoss)
        }
        let stopped = r.stoppedByTimeLimit ? " (time limit; \(r.stepsPlanned) planned)" : ""
        return """

        synthetic sine: p \(r.p), frequency \(r.frequency), window \(r.window); \(r.steps) steps\(stopped) of \(r.batch)×\(r.seqLen) in \(Terminal.duration(r.seconds)) (\(String(format: "%.1f", r.msPerStep)) ms/step)
        \("predictor".padding(toLength: 26, withPad: " ", startingAt: 0))  val \(r.loss)   / floor
        \(row("\(r.flow) (trained)", r.valLoss))
        \(row("predict zero", r.predictZeroLoss))
        \(row("no-pre-caching floor", r.floorLoss))
        validation: \(r.validationSequences) sequences; run: \(folder)
        """
    }
}
