import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

/// Training options shared by the token tasks.
struct TokenTaskTrainingOptions: ParsableArguments {
    @Option(help: "One gradient flow: vanilla, myopic, beta=β or bigram.") var flow: String?
    @Option(help: "Comma-separated flows trained side by side from the same seed (default vanilla,myopic).") var flows: String?
    @Option(help: "Transformer blocks.") var layers: Int?
    @Option(help: "Attention heads per block.") var heads: Int?
    @Option(name: .customLong("d-model"), help: "Residual stream width.") var dModel: Int?
    @Option(help: "Episodes per step.") var batch: Int?
    @Option(help: "Compute each batch in this many shards, added in a fixed order: the same result on one process or under mpirun -np N, N ≤ shards (default 1).")
    var shards: Int?
    @Option(help: "Optimiser steps (fresh episodes every step).") var steps: Int?
    @Option(help: "Peak learning rate.") var lr: Double?
    @Option(name: .customLong("min-lr"), help: "Learning rate at the end of the cosine decay.") var minLR: Double?
    @Option(help: "Linear warmup steps.") var warmup: Int?
    @Option(name: .customLong("weight-decay"), help: "AdamW decoupled weight decay (matrices only).") var weightDecay: Double?
    @Option(help: "Seed for initialisation, training episodes and the held-out set.") var seed: UInt64?
    @Option(name: .customLong("eval-episodes"), help: "Held-out episodes scored at every evaluation.") var evalEpisodes: Int?
    @Option(name: .customLong("eval-every"), help: "Score the held-out set every N steps.") var evalEvery: Int?
    @Option(help: "The run folder: one model folder per flow and results.json.") var out: String?
    @Flag(help: "Print only the table.") var quiet = false
    @Flag(help: "Print the results as JSON.") var json = false
    @OptionGroup var game: GameFlags
    @OptionGroup var configFile: ConfigFileOption<SyntheticRecallCommand>

    func settings() throws -> TokenTaskExperiment.Settings {
        var s = TokenTaskExperiment.Settings()
        var config = TrainConfig()
        try game.apply(to: &config)
        s.game = config.game
        if let layers { s.layers = layers }
        if let heads { s.heads = heads }
        if let dModel { s.dModel = dModel }
        if let batch { s.batch = batch }
        if let shards { s.shards = shards }
        if let steps { s.steps = steps }
        if let lr { s.lr = lr }
        if let minLR { s.minLR = minLR }
        if let warmup { s.warmup = warmup }
        if let weightDecay { s.weightDecay = weightDecay }
        if let seed { s.seed = seed }
        if let evalEpisodes { s.evalEpisodes = evalEpisodes }
        if let evalEvery { s.evalEvery = evalEvery }
        if minLR == nil, lr != nil, s.minLR > s.lr { s.minLR = s.lr / 10 }
        if warmup == nil, s.warmup > s.steps / 2 { s.warmup = s.steps / 10 }
        return s
    }

    func gradientFlows() throws -> [GradientFlow] {
        if flow != nil, flows != nil { throw ValidationError("give --flow or --flows, not both") }
        if let flow { return [try GradientFlow(parsing: flow, allowsLocalMyopic: false)] }
        let names = (flows ?? "vanilla,myopic").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !names.isEmpty else { throw ValidationError("--flows lists no flow") }
        return try names.map { try GradientFlow(parsing: $0, allowsLocalMyopic: false) }
    }

    /// Trains every flow on `task`, writes the run folder and prints the table (or JSON).
    func run(_ task: TokenTask, defaultOut: String) throws {
        Terminal.quiet = quiet || json
        Terminal.catchInterrupts(resume: nil)
        try reportingErrors {
            let flows = try gradientFlows()
            let settings = try settings()
            try settings.validate(for: task, flows: flows)
            let outURL = URL(fileURLWithPath: out ?? defaultOut)
            try checkOutput(outURL.path)
            var rng = SeededGenerator(seed: settings.seed)
            Terminal.info("\(task.name): T \(task.seqLen), vocabulary \(task.vocabSize), \(task.answersPerEpisode) answers per episode; e.g.")
            Terminal.info("  " + task.render(task.episode(&rng)))
            var started = Date()
            let results = try TokenTaskExperiment.run(task, flows: flows, settings: settings, out: outURL, onStart: { flow in
                Terminal.runStarted(flow.description)
                Terminal.info("training \(flow) (\(settings.layers) layers, d_model \(settings.dModel), \(settings.steps) steps)")
                started = Date()
            }, onLog: { _, p in
                let status = String(format: "train loss %.4f  held-out accuracy %.3f  loss %.4f", p.trainLoss, p.accuracy, p.loss)
                Terminal.progress(p.step, of: settings.steps, started: started, status: status)
            })
            if json {
                try printJSON(results)
                return
            }
            print(Self.table(results))
            print("results in \(outURL.appendingPathComponent(TokenTaskExperiment.resultsFile).path)")
        }
    }

    static func table(_ r: TokenTaskExperiment.Results) -> String {
        var lines = ["\(r.task.name): \(r.task.definition)",
                     String(format: "majority-answer accuracy %.3f; %d held-out episodes, %d steps, seed %llu",
                            r.task.majorityAccuracy, r.settings.evalEpisodes, r.settings.steps, r.settings.seed),
                     "flow          accuracy   loss (nats)   time"]
        for f in r.flows {
            lines.append(f.flow.padding(toLength: 12, withPad: " ", startingAt: 0)
                         + String(format: "  %8.3f   %11.4f   %@", f.accuracy, f.loss, Terminal.duration(f.seconds)))
        }
        return lines.joined(separator: "\n")
    }
}

struct SyntheticRecallCommand: ConfigFileCommand {
    static let configExample = #"{"steps": 2000}"#
    static let configuration = CommandConfiguration(
        commandName: "recall",
        abstract: "Delayed recall: a name seen early must be repeated after each later cue (breadcrumbs suffice).",
        discussion: """
        An episode of T tokens is random fillers f0..f{F-1}, except: a marker M at a random position in the first quarter followed by a random name n0..n{N-1}, and --cues cues C in the second half, each followed by the name. The loss and the score are only at the cues (targets −1 elsewhere): the answer is the name. The cue can attend to the name directly, so nothing has to be computed earlier for it: a myopic model should do as well as a vanilla one.

        Each flow trains on fresh episodes every step from the same seed (same initial weights and episodes); accuracy and loss are over a fixed held-out set. Writes OUT/FLOW/ (the model) and OUT/results.json, and prints a table of accuracy and loss per flow.

        Examples:
          myopia synthetic recall --seq-len 64 --names 32 --fillers 32 --cues 4 \\
              --flows vanilla,myopic --steps 1000 --out runs/recall
          myopia synthetic recall --flow myopic --json
        """)

    @Option(name: .customLong("seq-len"), help: "Tokens per episode (T).") var seqLen = 32
    @Option(help: "Distinct names (N).") var names = 16
    @Option(help: "Distinct filler tokens (F).") var fillers = 16
    @Option(help: "Cues (answers) per episode, in the second half.") var cues = 3
    @OptionGroup var training: TokenTaskTrainingOptions

    func run() throws {
        let task: DelayedRecallTask
        do { task = try DelayedRecallTask(seqLen: seqLen, names: names, fillers: fillers, cues: cues) } catch {
            throw ValidationError("\(error)")
        }
        try training.run(task, defaultOut: "runs/recall")
    }
}

struct SyntheticTableSumCommand: ConfigFileCommand {
    static let configExample = #"{"steps": 2000}"#
    static let configuration = CommandConfiguration(
        commandName: "table-sum",
        abstract: "Table sum: each answer sums a random table of adjacent digit pairs (needs pre-caching).",
        discussion: """
        An episode is --segments segments of W+1 random digits d_1..d_{W+1} (digits 0..m-1), then '=', then the answer s_k with k = Σ_{i=1..W} g(d_i, d_{i+1}), where g is a fixed random binary m×m table (--table-seed). The loss and the score are only at the '=' positions (targets −1 elsewhere). The table is recorded in results.json, with the accuracy of always giving the most likely answer.

        g(d_i, d_{i+1}) is best computed at position i+1, where both digits are visible, and is useful only to the later answer: it has to be pre-cached, which only vanilla training asks of earlier positions. A myopic model must gather the digits at '=' and evaluate W nonlinear lookups there in one step; without pre-caching it can only learn the part of g that is a sum of one-digit terms. (A function of one digit alone would not separate the flows: it is linear in the one-hot embedding, which the value weights learn from past gradients even under myopic training.) With --balanced even that part is gone, but vanilla then needs far longer to leave the plateau.

        Each flow trains on fresh episodes every step from the same seed; accuracy and loss are over a fixed held-out set. Writes OUT/FLOW/ (the model) and OUT/results.json, and prints a table.

        Examples:
          myopia synthetic table-sum --flows vanilla,myopic --steps 5000 \\
              --eval-every 500 --out runs/table-sum
          myopia synthetic table-sum --flow myopic --pairs 12 --json
        """)

    @Option(help: "Digit symbols (m, even).") var digits = 8
    @Option(help: "Pairs per segment (W): each segment has W+1 digits.") var pairs = 8
    @Option(help: "Segments (answers) per episode.") var segments = 4
    @Option(name: .customLong("table-seed"), help: "Seed of the random pair table g.") var tableSeed: UInt64 = 1
    @Flag(help: "Use a table with m/2 ones in every row and column (no single digit informs the sum; much harder to learn).") var balanced = false
    @OptionGroup var training: TokenTaskTrainingOptions

    func run() throws {
        let task: TableSumTask
        do { task = try TableSumTask(digits: digits, pairs: pairs, segments: segments, tableSeed: tableSeed, balanced: balanced) } catch {
            throw ValidationError("\(error)")
        }
        try training.run(task, defaultOut: "runs/table-sum")
    }
}
