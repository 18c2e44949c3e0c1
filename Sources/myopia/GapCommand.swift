import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct GapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gap",
        abstract: "The myopia gap: train vanilla and myopic models from the same seeds and compare their validation loss.",
        discussion: """
        For each seed S and flow F (vanilla, myopic, and with --bigram the transformer bigram, which attends only to itself), trains a model into OUT/F-seedS with the same settings, initial weights and batches — only the gradient differs — then scores it on the whole validation split (consecutive windows of T+1 tokens, as `myopia eval`). Writes OUT/gap.json: per flow the validation loss (mean ± sample std over seeds, and per seed) and the loss at every position of the context (mean over seeds, and per seed); the gap myopic − vanilla paired by seed; the settings. Prints a table, with the loss by position bucket (0, 1, 2–3, 4–7, …).

        Settings come from the defaults (those of `myopia train`), then --config FILE.json (keys as the flags), then the flags. --resume reuses runs already in OUT (finished ones are only re-scored).

        Examples:
          myopia gap --data tinyshakespeare --seeds 3 --layers 4 --d-model 128 \\
              --seq-len 128 --batch 16 --steps 1200 --lr 2e-3 --out runs/gap
          myopia gap --data corpus.txt --seeds 2 --bigram --steps 200 --json
        """)

    @Option(help: "Number of seeds; seed S, S+1, … with S = --seed.") var seeds = 3
    @Option(help: "The first seed.") var seed: UInt64 = 1
    @Flag(help: "Also train the transformer bigram (each position attends only to itself).") var bigram = false
    @Option(help: "The folder for the runs and gap.json.") var out = "runs/gap"
    @OptionGroup var settings: TrainingFlags
    @Flag(help: "Reuse the runs already in --out.") var resume = false
    @Flag(help: "Print only the table.") var quiet = false
    @Flag(help: "Print gap.json's contents as JSON.") var json = false

    func validate() throws {
        guard seeds > 0 else { throw ValidationError("--seeds must be positive") }
    }

    func resolvedConfig() throws -> TrainConfig { try settings.resolve() }

    func run() throws {
        Terminal.quiet = quiet || json
        Terminal.catchInterrupts(resume: "run the same command with --resume to continue (finished runs are reused)")
        try reportingErrors {
            let config = try resolvedConfig()
            try config.validate()
            try checkOutput(out)
            let tokenizer = try Tokenizers.load(config.tokenizer, log: Terminal.info)
            let dataset = try DataSource.load(config.data, tokenizer: tokenizer, validationFraction: config.validationFraction,
                                              log: Terminal.info)
            let seedList = (0..<seeds).map { seed &+ UInt64($0) }
            let flows: [GradientFlow] = bigram ? [.vanilla, .myopic, .bigram] : [.vanilla, .myopic]
            let options = Gap.Options(config: config, seeds: seedList, flows: flows, out: URL(fileURLWithPath: out), resume: resume)
            Terminal.info("\(flows.count * seeds) runs of \(config.steps) steps (\(config.family) \(config.layers) layers, d_model \(config.dModel), "
                          + "T \(config.seqLen), batch \(config.batch)) on \(dataset.train.count) training tokens")
            var started = Date()
            let summary = try Gap.run(options, dataset: dataset, tokenizer: tokenizer, log: Terminal.info, onStart: { flow, s in
                Terminal.info("training \(flow), seed \(s)")
                Terminal.runStarted("\(flow) seed \(s)")
                started = Date()
            }, onTrainLog: { m in
                Terminal.studyProgress(m, steps: config.steps, started: started)
            })
            if json {
                try printJSON(summary)
            } else {
                print(Self.table(summary))
                print("summary and per-position curves in \(URL(fileURLWithPath: out).appendingPathComponent(Gap.summaryFile).path)")
            }
        }
    }

    static func formatSpread(_ s: Gap.Spread, signed: Bool = false) -> String {
        let m = String(format: signed ? "%+.4f" : "%.4f", s.mean)
        return m + (s.std.map { String(format: " ± %.4f", $0) } ?? "")
    }

    static func table(_ s: Gap.Summary) -> String {
        let c = s.settings
        var lines = ["myopia gap on \(s.data): \(s.seeds.count) seed(s) \(s.seeds.map(String.init).joined(separator: ", ")); "
                     + "\(c.layers) layers, d_model \(c.dModel), \(c.heads) heads, T \(c.seqLen), batch \(c.batch), \(c.steps) steps; "
                     + "validation: \(s.validationTokens) predictions in \(s.validationWindows) windows",
                     "",
                     "flow      val loss (mean ± std)   per seed"]
        func pad(_ text: String, _ n: Int) -> String { text.padding(toLength: max(n, text.count), withPad: " ", startingAt: 0) }
        for f in s.flows {
            lines.append(pad(f.flow, 10) + pad(formatSpread(f.valLoss), 24)
                         + f.valLoss.perSeed.map { String(format: "%.4f", $0) }.joined(separator: "  "))
        }
        for d in s.differences {
            lines.append("gap \(d.flow) − \(d.baseline): " + formatSpread(d.valLoss, signed: true)
                         + " (per seed " + d.valLoss.perSeed.map { String(format: "%+.4f", $0) }.joined(separator: " ") + ")")
        }
        lines.append("")
        lines.append("loss by position (mean over seeds)")
        var header = pad("positions", 12)
        for f in s.flows { header += pad(f.flow, 10) }
        for d in s.differences { header += "\(d.flow)−\(d.baseline)  " }
        lines.append(header)
        for (k, b) in s.positionBuckets.enumerated() {
            var row = pad(b[0] == b[1] ? "\(b[0])" : "\(b[0])–\(b[1])", 12)
            for f in s.flows { row += pad(String(format: "%.4f", f.bucketLoss[k]), 10) }
            for d in s.differences { row += pad(String(format: "%+.4f", d.bucketLoss[k]), d.flow.count + d.baseline.count + 3) }
            lines.append(row)
        }
        let loops = SelfReinforcement.sideBySide(s.flows.map { ($0.flow, $0.loops) })
        if !loops.isEmpty { lines += [""] + loops }
        return lines.joined(separator: "\n")
    }
}
