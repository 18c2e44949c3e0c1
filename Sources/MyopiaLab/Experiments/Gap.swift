import Foundation
import Myopia

/// `myopia gap` (docs/DESIGN.md §5): the myopia gap. For every seed, trains a vanilla, a myopic and
/// optionally a transformer-bigram model with the same settings, then scores each on the whole
/// validation split (consecutive windows of T+1 tokens, as `myopia eval`). Reports each flow's
/// validation loss (mean ± sample std over seeds, and per seed), the gap myopic − vanilla paired by
/// seed, and the loss as a function of the position in the context.
///
/// Same seed ⇒ same run for every flow except the gradient: the Trainer draws the initial weights
/// and the batches from generators seeded by `config.seed` alone, and the flow does not touch them.
public enum Gap {
    public struct Options: Sendable {
        /// The shared settings; `flow` and `seed` are set per run.
        public var config: TrainConfig
        public var seeds: [UInt64]
        /// The flows to train, in order; the gap needs vanilla and myopic.
        public var flows: [GradientFlow]
        public var out: URL
        /// Continue (or reuse) runs already in `out` instead of starting them again.
        public var resume: Bool

        public init(config: TrainConfig, seeds: [UInt64], flows: [GradientFlow] = [.vanilla, .myopic],
                    out: URL, resume: Bool = false) {
            self.config = config
            self.seeds = seeds
            self.flows = flows
            self.out = out
            self.resume = resume
        }
    }

    /// Statistics of one value over seeds.
    public struct Spread: Codable, Equatable, Sendable {
        public var mean: Double
        /// Sample standard deviation (n − 1); nil for a single seed.
        public var std: Double?
        public var perSeed: [Double]

        public init(_ values: [Double]) {
            perSeed = values
            mean = values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
            if values.count > 1 {
                let m = mean
                std = (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count - 1)).squareRoot()
            }
        }

        enum CodingKeys: String, CodingKey {
            case mean, std
            case perSeed = "per_seed"
        }
    }

    public struct FlowSummary: Codable, Equatable, Sendable {
        public var flow: String
        /// Validation loss (nats per token) over seeds.
        public var valLoss: Spread
        /// Mean loss at each position 0..<T, averaged over seeds.
        public var positionLoss: [Double]
        /// `positionLoss` of each seed, in seed order.
        public var positionLossPerSeed: [[Double]]
        /// Mean of `positionLoss` over each of `Summary.positionBuckets`.
        public var bucketLoss: [Double]
        /// Last logged training loss of each seed.
        public var trainLoss: [Double]
        /// Training seconds of each seed.
        public var seconds: [Double]
        public var runs: [String]
        /// The self-reinforcement of loops (`SelfReinforcement.measure` on the validation split),
        /// over seeds; nil when no sentence of it fits the context.
        public var loops: SelfReinforcement.SeedSummary? = nil

        enum CodingKeys: String, CodingKey {
            case flow, seconds, runs, loops
            case valLoss = "val_loss", positionLoss = "position_loss", positionLossPerSeed = "position_loss_per_seed"
            case bucketLoss = "bucket_loss", trainLoss = "train_loss"
        }
    }

    /// `flow` − `baseline`, paired by seed.
    public struct Difference: Codable, Equatable, Sendable {
        public var flow: String
        public var baseline: String
        public var valLoss: Spread
        /// Per-position difference of the seed means.
        public var positionLoss: [Double]
        public var bucketLoss: [Double]

        enum CodingKeys: String, CodingKey {
            case flow, baseline
            case valLoss = "val_loss", positionLoss = "position_loss", bucketLoss = "bucket_loss"
        }
    }

    public struct Summary: Codable, Equatable, Sendable {
        public var data: String
        /// The shared settings (flow and seed are per run).
        public var settings: TrainConfig
        public var seeds: [UInt64]
        public var validationTokens: Int
        public var validationWindows: Int
        /// Position ranges [first, last] that `bucket_loss` averages over: 0, 1, 2–3, 4–7, ...
        public var positionBuckets: [[Int]]
        public var flows: [FlowSummary]
        /// myopic − vanilla; nil unless both were trained.
        public var gap: Difference?
        /// Every other flow − vanilla.
        public var differences: [Difference]
        public var seconds: Double

        enum CodingKeys: String, CodingKey {
            case data, settings, seeds, flows, gap, differences, seconds
            case validationTokens = "validation_tokens", validationWindows = "validation_windows"
            case positionBuckets = "position_buckets"
        }

        public func flow(_ name: String) -> FlowSummary? { flows.first { $0.flow == name } }
    }

    public static let summaryFile = "gap.json"

    /// The run folder of one flow and seed: `out/FLOW-seedS`.
    public static func runFolder(_ out: URL, flow: GradientFlow, seed: UInt64) -> URL {
        out.appendingPathComponent("\(flow)-seed\(seed)")
    }

    /// Position ranges 0, 1, 2–3, 4–7, … (powers of two), the last ending at T − 1.
    public static func positionBuckets(seqLen t: Int) -> [[Int]] {
        var buckets: [[Int]] = [], lo = 0
        while lo < t {
            let hi = min(t - 1, max(lo, 2 * lo - 1))
            buckets.append([lo, hi])
            lo = hi + 1
        }
        return buckets
    }

    static func bucketMeans(_ values: [Double], _ buckets: [[Int]]) -> [Double] {
        buckets.map { b in values[b[0]...b[1]].reduce(0, +) / Double(b[1] - b[0] + 1) }
    }

    /// Trains and evaluates every (seed, flow) in `out`, writes `out/gap.json` and returns it.
    /// `onStart` is called before each run, `onTrainLog` at each of its logged steps. With a
    /// `reference` (a trained model), every run fine-tunes a copy of it instead of starting afresh:
    /// the gap of a pretrained model (`config` then has its shape, as `ReferenceModel.load` sets).
    public static func run(_ options: Options, dataset: TokenDataset, tokenizer: any Tokenizer = ByteTokenizer(),
                           reference: Transformer? = nil, log: (String) -> Void = { _ in },
                           onStart: (GradientFlow, UInt64) -> Void = { _, _ in },
                           onTrainLog: (TrainMetrics) -> Void = { _ in }) throws -> Summary {
        try options.config.validate()
        guard !options.seeds.isEmpty else {
            throw InputError.invalidValue(file: "flags", field: "seeds", expected: "at least one seed", found: "none")
        }
        guard !options.flows.isEmpty else {
            throw InputError.invalidValue(file: "flags", field: "flows", expected: "at least one flow", found: "none")
        }
        let t = options.config.seqLen
        let started = Date()
        // Under mpirun every rank trains and scores each run with its shards and windows; rank 0 writes.
        let group = Distributed.group, writes = group.rank == 0
        try LabFiles.createDirectory(options.out)
        // results[flow][seed index]
        var valLoss = [[Double]](repeating: [], count: options.flows.count)
        var positions = [[[Double]]](repeating: [], count: options.flows.count)
        var trainLoss = valLoss, seconds = valLoss
        var loops = [[SelfReinforcement.Report]](repeating: [], count: options.flows.count)
        var windows = 0, tokens = 0
        for seed in options.seeds {
            for (f, flow) in options.flows.enumerated() {
                var config = options.config
                config.flow = flow
                config.seed = seed
                let folder = runFolder(options.out, flow: flow, seed: seed)
                if !options.resume && writes { try? FileManager.default.removeItem(at: folder) }
                onStart(flow, seed)
                let runStart = Date()
                let trainer = try Trainer(config: config, dataset: dataset, out: folder,
                                          vocabSize: reference?.config.vocabSize ?? tokenizer.vocabSize,
                                          tokenizer: tokenizer.name, resume: options.resume, reference: reference)
                let last = try trainer.run(onLog: onTrainLog)
                seconds[f].append(Date().timeIntervalSince(runStart))
                let result = Evaluation.run(trainer.model, tokens: dataset.validation, seqLen: t, batch: config.batch, group: group)
                if writes { try LabFiles.writeJSON(result, to: folder.appendingPathComponent("eval.json")) }
                log(String(format: "%@ seed %llu: validation loss %.4f", flow.description, seed, result.loss))
                let since = Date()
                if let curve = SelfReinforcement.measure(trainer.model, tokens: dataset.validation, tokenizer: tokenizer) {
                    if writes { try RunFolder.write(curve, as: SelfReinforcement.fileName, record: AnalysisRecord(
                        command: "gap", model: folder.lastPathComponent, data: "\(dataset.source) (validation)",
                        settings: ["sentences": "\(SelfReinforcement.runSentences)", "max_repeats": "\(curve.maxRepeats)"],
                        seconds: Date().timeIntervalSince(since)), to: folder) }
                    loops[f].append(curve)
                }
                valLoss[f].append(result.loss)
                positions[f].append(result.positionLoss)
                trainLoss[f].append(last?.trainLoss ?? lastLoggedTrainLoss(folder) ?? .nan)
                windows = result.windows
                tokens = result.tokens
            }
        }
        let buckets = positionBuckets(seqLen: t)
        let flows = options.flows.enumerated().map { f, flow in
            let mean = (0..<t).map { j in positions[f].map { $0[j] }.reduce(0, +) / Double(options.seeds.count) }
            return FlowSummary(flow: flow.description, valLoss: Spread(valLoss[f]), positionLoss: mean,
                               positionLossPerSeed: positions[f], bucketLoss: bucketMeans(mean, buckets),
                               trainLoss: trainLoss[f], seconds: seconds[f],
                               runs: options.seeds.map { runFolder(options.out, flow: flow, seed: $0).lastPathComponent },
                               loops: SelfReinforcement.SeedSummary(loops[f]))
        }
        var differences: [Difference] = []
        if let base = options.flows.firstIndex(of: .vanilla) {
            for (f, flow) in options.flows.enumerated() where f != base {
                let perSeed = zip(valLoss[f], valLoss[base]).map { $0 - $1 }
                let position = zip(flows[f].positionLoss, flows[base].positionLoss).map { $0 - $1 }
                differences.append(Difference(flow: flow.description, baseline: GradientFlow.vanilla.description,
                                              valLoss: Spread(perSeed), positionLoss: position,
                                              bucketLoss: bucketMeans(position, buckets)))
            }
        }
        var shared = options.config
        shared.flow = .vanilla
        shared.seed = options.seeds[0]
        let summary = Summary(data: dataset.source, settings: shared, seeds: options.seeds, validationTokens: tokens,
                              validationWindows: windows, positionBuckets: buckets, flows: flows,
                              gap: differences.first { $0.flow == GradientFlow.myopic.description },
                              differences: differences, seconds: Date().timeIntervalSince(started))
        if writes { try LabFiles.writeJSON(summary, to: options.out.appendingPathComponent(summaryFile)) }
        return summary
    }

    /// The training loss of the last line of a run's metrics.jsonl (for a resumed run with nothing left to do).
    static func lastLoggedTrainLoss(_ folder: URL) -> Double? {
        guard let text = try? String(contentsOf: folder.appendingPathComponent(Trainer.metricsFile), encoding: .utf8),
              let line = text.split(separator: "\n").last,
              let m = try? JSONDecoder().decode(TrainMetrics.self, from: Data(line.utf8)) else { return nil }
        return m.trainLoss
    }
}
