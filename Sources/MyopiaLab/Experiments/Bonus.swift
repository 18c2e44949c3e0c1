import Foundation
import Myopia

/// `myopia bonus`: the local myopia bonus (Wu, Morris & Levine 2024). Does a normally trained model
/// give up next-token accuracy at a position to serve later ones? Start from a trained (vanilla)
/// reference and, for every seed, fine-tune two copies with the same settings, batches and schedule:
///
/// - **local-myopic**: every layer's query at t attends, for s < t, to the frozen reference's keys
///   and values and, on the diagonal, to its own (GradientFlow.localMyopic). Each position is trained
///   purely for its own next token, given the reference's pre-cached past. Scored the same way.
/// - **control**: vanilla training continued from the reference, scored as a normal model.
///
/// The bonus is control − local-myopic, paired by seed (positive: the local-myopic model predicts
/// better, so the vanilla model was sacrificing next-token loss for later tokens). Both are scored
/// on the whole validation split, as `myopia eval`, with per-position curves. Wu et al. report, for
/// GPT-2 124M, vanilla 3.28 vs local-myopic 3.26: a bonus of 0.02 nats.
///
/// The reference itself is scored twice, as a check: as a normal model and local-myopically
/// attending to itself (zero fine-tuning steps), which must agree exactly.
public enum Bonus {
    public struct Options: Sendable {
        /// The fine-tuning settings (steps, learning rate, schedule, batch, T, data); the shape is the
        /// reference's; `flow` and `seed` are set per run.
        public var config: TrainConfig
        public var seeds: [UInt64]
        public var out: URL
        /// Continue (or reuse) runs already in `out` instead of starting them again.
        public var resume: Bool

        public init(config: TrainConfig, seeds: [UInt64], out: URL, resume: Bool = false) {
            self.config = config
            self.seeds = seeds
            self.out = out
            self.resume = resume
        }
    }

    /// The reference before any fine-tuning.
    public struct ReferenceScore: Codable, Equatable, Sendable {
        /// Where it came from.
        public var source: String
        /// Validation loss as a normal model.
        public var valLoss: Double
        /// Validation loss local-myopically, attending to itself: equal to `valLoss` (same past, same present).
        public var localMyopicValLoss: Double
        public var positionLoss: [Double]
        public var bucketLoss: [Double]

        enum CodingKeys: String, CodingKey {
            case source
            case valLoss = "val_loss", localMyopicValLoss = "local_myopic_val_loss", positionLoss = "position_loss"
            case bucketLoss = "bucket_loss"
        }
    }

    public struct Summary: Codable, Equatable, Sendable {
        public var data: String
        /// The shared fine-tuning settings (flow and seed are per run).
        public var settings: TrainConfig
        public var seeds: [UInt64]
        public var validationTokens: Int
        public var validationWindows: Int
        /// Position ranges [first, last] that `bucket_loss` averages over: 0, 1, 2–3, 4–7, ...
        public var positionBuckets: [[Int]]
        public var reference: ReferenceScore
        /// `vanilla` (the control) and `local-myopic`, as in gap.json.
        public var flows: [Gap.FlowSummary]
        /// control − local-myopic (`flow` − `baseline`), paired by seed: the local myopia bonus.
        public var bonus: Gap.Difference
        public var seconds: Double

        enum CodingKeys: String, CodingKey {
            case data, settings, seeds, reference, flows, bonus, seconds
            case validationTokens = "validation_tokens", validationWindows = "validation_windows"
            case positionBuckets = "position_buckets"
        }

        public func flow(_ name: String) -> Gap.FlowSummary? { flows.first { $0.flow == name } }
    }

    public static let summaryFile = "bonus.json"
    /// The two arms, in training order: the control, then local-myopic.
    public static let flows: [GradientFlow] = [.vanilla, .localMyopic]

    /// Fine-tunes and scores every (seed, arm) in `out` (run folders `vanilla-seedS` and
    /// `local-myopic-seedS`, each with its checkpoints, metrics.jsonl and eval.json), writes
    /// `out/bonus.json` and returns it. `reference` is never changed. In a `group` of several ranks
    /// (under mpirun) every rank trains each arm with its shards (`shards` ≥ ranks) and scores its
    /// windows, and rank 0 writes: the same files as one process with the same shards.
    public static func run(_ options: Options, reference: Transformer, referenceSource: String, dataset: TokenDataset,
                           group: any ProcessGroup = Distributed.group, log: (String) -> Void = { _ in },
                           onStart: (GradientFlow, UInt64) -> Void = { _, _ in },
                           onTrainLog: (TrainMetrics) -> Void = { _ in }) throws -> Summary {
        var settings = options.config
        settings.adoptShape(of: reference.config)
        try settings.validate()
        try settings.checkShards(ranks: group.size)   // before the reference is scored
        guard !options.seeds.isEmpty else {
            throw InputError.invalidValue(file: "flags", field: "seeds", expected: "at least one seed", found: "none")
        }
        let t = settings.seqLen, b = settings.batch
        // A causal language model with at least T positions (its own shape trivially matches).
        try reference.checkReference(reference, seqLen: t, file: referenceSource)
        let started = Date()
        let writes = group.rank == 0
        if writes { try LabFiles.createDirectory(options.out) }
        let buckets = Gap.positionBuckets(seqLen: t)

        // The reference, as itself and local-myopically attending to itself.
        let plain = Evaluation.run(reference, tokens: dataset.validation, seqLen: t, batch: b, group: group)
        let itself = reference.copy()
        itself.flow = .localMyopic
        itself.reference = reference
        let zeroStep = Evaluation.run(itself, tokens: dataset.validation, seqLen: t, batch: b, group: group)
        log(String(format: "reference: validation loss %.4f (local-myopic, zero steps: %.4f)", plain.loss, zeroStep.loss))
        let referenceScore = ReferenceScore(source: referenceSource, valLoss: plain.loss, localMyopicValLoss: zeroStep.loss,
                                            positionLoss: plain.positionLoss, bucketLoss: Gap.bucketMeans(plain.positionLoss, buckets))

        // results[arm][seed index]
        var valLoss = [[Double]](repeating: [], count: flows.count)
        var positions = [[[Double]]](repeating: [], count: flows.count)
        var trainLoss = valLoss, seconds = valLoss
        for seed in options.seeds {
            for (f, flow) in flows.enumerated() {
                var config = settings
                config.flow = flow
                config.seed = seed
                config.reference = referenceSource
                let folder = Gap.runFolder(options.out, flow: flow, seed: seed)
                if !options.resume && writes { try? FileManager.default.removeItem(at: folder) }
                onStart(flow, seed)
                let runStart = Date()
                let trainer = try Trainer(config: config, dataset: dataset, out: folder, vocabSize: reference.config.vocabSize,
                                          tokenizer: config.tokenizer, resume: options.resume, reference: reference, group: group)
                let last = try trainer.run(onLog: onTrainLog)
                seconds[f].append(Date().timeIntervalSince(runStart))
                let result = Evaluation.run(trainer.model, tokens: dataset.validation, seqLen: t, batch: b, group: group)
                if writes { try LabFiles.writeJSON(result, to: folder.appendingPathComponent("eval.json")) }
                log(String(format: "%@ seed %llu: validation loss %.4f", flow.description, seed, result.loss))
                valLoss[f].append(result.loss)
                positions[f].append(result.positionLoss)
                trainLoss[f].append(last?.trainLoss ?? Gap.lastLoggedTrainLoss(folder) ?? .nan)
            }
        }
        let summaries = flows.enumerated().map { f, flow in
            let mean = (0..<t).map { j in positions[f].map { $0[j] }.reduce(0, +) / Double(options.seeds.count) }
            return Gap.FlowSummary(flow: flow.description, valLoss: Gap.Spread(valLoss[f]), positionLoss: mean,
                                   positionLossPerSeed: positions[f], bucketLoss: Gap.bucketMeans(mean, buckets),
                                   trainLoss: trainLoss[f], seconds: seconds[f],
                                   runs: options.seeds.map { Gap.runFolder(options.out, flow: flow, seed: $0).lastPathComponent })
        }
        let control = summaries[0], local = summaries[1]
        let position = zip(control.positionLoss, local.positionLoss).map { $0 - $1 }
        let bonus = Gap.Difference(flow: control.flow, baseline: local.flow,
                                   valLoss: Gap.Spread(zip(valLoss[0], valLoss[1]).map { $0 - $1 }),
                                   positionLoss: position, bucketLoss: Gap.bucketMeans(position, buckets))
        var shared = settings
        shared.flow = .vanilla
        shared.seed = options.seeds[0]
        let summary = Summary(data: dataset.source, settings: shared, seeds: options.seeds, validationTokens: plain.tokens,
                              validationWindows: plain.windows, positionBuckets: buckets, reference: referenceScore,
                              flows: summaries, bonus: bonus, seconds: Date().timeIntervalSince(started))
        if writes { try LabFiles.writeJSON(summary, to: options.out.appendingPathComponent(summaryFile)) }
        return summary
    }
}
