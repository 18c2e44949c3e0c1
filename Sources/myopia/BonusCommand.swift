import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct BonusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bonus",
        abstract: "The local myopia bonus: does a trained model give up next-token loss to serve later tokens?",
        discussion: """
        Starts from a trained reference model (kept frozen) and, for each seed S, fine-tunes two copies of it with the same settings, batches and schedule:
          local-myopic   every layer's query at t attends, for s < t, to the keys
                         and values the frozen reference computed from its own
                         hidden states, and to its own on the diagonal; each
                         position is trained purely for its own next token;
          vanilla        the control: ordinary training continued from the
                         reference.

        Both are scored on the whole validation split (consecutive windows of T+1 tokens, as `myopia eval`), the local-myopic model local-myopically. The bonus is control − local-myopic, paired by seed (positive: the vanilla model sacrifices next-token loss for later tokens). Wu, Morris & Levine (2024) report 3.28 vs 3.26 (a bonus of 0.02 nats) for GPT-2 124M.

        Writes OUT/vanilla-seedS and OUT/local-myopic-seedS (checkpoints, metrics.jsonl, eval.json) and OUT/bonus.json: the reference's own loss and its zero-step local-myopic loss (equal by construction), each arm's validation loss (mean ± sample std over seeds, per seed) and per-position curve, the bonus overall, by position and by position bucket. Prints a table.

        The model's shape and tokenizer are the reference's; the fine-tuning settings (steps, learning rate, warmup, batch, --seq-len: default the reference's context, at most 256) come from the defaults of `myopia train`, then --config FILE.json, then the flags. The data's validation split must be held out from the reference's training: use the same file and validation fraction as its run (the default 0.1 for both).

        Under mpirun (a build with --traits MPI) both arms train with --shards S, S at least the ranks, and every score is sharded: the same files as one process with the same S (docs/distributed.md).

        Examples:
          myopia train --data tinyshakespeare --out runs/ref --steps 1000
          myopia bonus --reference runs/ref --data tinyshakespeare --steps 300 \\
              --lr 3e-4 --warmup 30 --seeds 3 --out runs/bonus
        """)

    @Option(help: "The trained reference: a checkpoint or run folder (its newest checkpoint), a .gguf file or a model name.")
    var reference: String
    @Option(help: "Number of seeds; seed S, S+1, … with S = --seed.") var seeds = 3
    @Option(help: "The first seed.") var seed: UInt64 = 1
    @Option(help: "The folder for the runs and bonus.json.") var out = "runs/bonus"
    @OptionGroup var settings: TrainingFlags
    @Flag(help: "Reuse the runs already in --out.") var resume = false
    @Flag(help: "Print only the table.") var quiet = false
    @Flag(help: "Print bonus.json's contents as JSON.") var json = false

    func validate() throws {
        guard seeds > 0 else { throw ValidationError("--seeds must be positive") }
    }

    func run() throws {
        Terminal.quiet = quiet || json
        Terminal.catchInterrupts(resume: "run the same command with --resume to continue (finished runs are reused)")
        try reportingErrors {
            try checkOutput(out)
            var config = try settings.resolve()
            try config.checkShards(ranks: Distributed.group.size)   // under mpirun, before anything loads
            if settings.seqLen == nil && settings.config == nil { config.seqLen = 0 }   // the reference's, below
            let (source, model, tokenizer) = try ReferenceModel.load(reference, given: settings.given, config: &config, log: Terminal.info)
            try config.validate()
            let dataset = try DataSource.load(config.data, tokenizer: tokenizer, validationFraction: config.validationFraction,
                                              log: Terminal.info)
            let seedList = (0..<seeds).map { seed &+ UInt64($0) }
            Terminal.info("\(2 * seeds) fine-tuning runs of \(config.steps) steps from \(source.path) (\(config.family) "
                          + "\(config.layers) layers, d_model \(config.dModel), T \(config.seqLen), batch \(config.batch)) "
                          + "on \(dataset.train.count) training tokens")
            var started = Date()
            let summary = try Bonus.run(Bonus.Options(config: config, seeds: seedList, out: URL(fileURLWithPath: out), resume: resume),
                                        reference: model, referenceSource: source.path, dataset: dataset, log: Terminal.info,
                                        onStart: { flow, s in
                Terminal.info("fine-tuning \(flow == .vanilla ? "vanilla (control)" : flow.description), seed \(s)")
                Terminal.runStarted("\(flow) seed \(s)")
                started = Date()
            }, onTrainLog: { m in
                Terminal.studyProgress(m, steps: config.steps, started: started)
            })
            if json {
                try printJSON(summary)
            } else {
                print(Self.table(summary))
                print("summary and per-position curves in \(URL(fileURLWithPath: out).appendingPathComponent(Bonus.summaryFile).path)")
            }
        }
    }

    static func table(_ s: Bonus.Summary) -> String {
        let c = s.settings
        func pad(_ text: String, _ n: Int) -> String { text.padding(toLength: max(n, text.count), withPad: " ", startingAt: 0) }
        var lines = ["myopia bonus on \(s.data): \(s.seeds.count) seed(s) \(s.seeds.map(String.init).joined(separator: ", ")); "
                     + "\(c.family) \(c.layers) layers, d_model \(c.dModel), T \(c.seqLen), batch \(c.batch), \(c.steps) fine-tuning steps, "
                     + "lr \(c.lr); validation: \(s.validationTokens) predictions in \(s.validationWindows) windows",
                     "",
                     String(format: "reference (no fine-tuning)   %.4f   local-myopic at zero steps %.4f (difference %.1e)",
                            s.reference.valLoss, s.reference.localMyopicValLoss, s.reference.localMyopicValLoss - s.reference.valLoss),
                     "arm            val loss (mean ± std)   per seed"]
        for f in s.flows {
            lines.append(pad(f.flow == "vanilla" ? "vanilla (ctl)" : f.flow, 15) + pad(GapCommand.formatSpread(f.valLoss), 24)
                         + f.valLoss.perSeed.map { String(format: "%.4f", $0) }.joined(separator: "  "))
        }
        lines.append("bonus (vanilla − local-myopic): " + GapCommand.formatSpread(s.bonus.valLoss, signed: true)
                     + " nats (per seed " + s.bonus.valLoss.perSeed.map { String(format: "%+.4f", $0) }.joined(separator: " ") + ")")
        lines.append("")
        lines.append("loss by position (mean over seeds)")
        lines.append(pad("positions", 12) + pad("reference", 11) + pad("vanilla", 10) + pad("local-myopic", 14) + "bonus")
        for (k, b) in s.positionBuckets.enumerated() {
            lines.append(pad(b[0] == b[1] ? "\(b[0])" : "\(b[0])–\(b[1])", 12)
                         + pad(String(format: "%.4f", s.reference.bucketLoss[k]), 11)
                         + pad(String(format: "%.4f", s.flows[0].bucketLoss[k]), 10)
                         + pad(String(format: "%.4f", s.flows[1].bucketLoss[k]), 14)
                         + String(format: "%+.4f", s.bonus.bucketLoss[k]))
        }
        return lines.joined(separator: "\n")
    }
}
