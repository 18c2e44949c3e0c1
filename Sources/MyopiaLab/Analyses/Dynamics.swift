import Foundation
import Myopia

/// `myopia dynamics RUN`: how pre-caching appears over training. Every kept checkpoint of a run
/// (`--checkpoint-at log:N` keeps a curve's worth) is measured on the run's validation split: the
/// gradient horizon's mean offset by layer, the gain of a k = 1 probe (the token after next) over
/// the current-token baseline by layer, and, where the run has a myopic twin (the run `gap` trained
/// with the same seed and schedule: a sibling folder `myopic-seedS` of `vanilla-seedS`), the
/// per-position loss difference myopic − vanilla at the same step. The gradient split
/// ‖g_future‖/‖g_vanilla‖ the run logged (`--log-gradient-split`) is read from metrics.jsonl.
public struct DynamicsTable: Codable, Sendable {
    public static let fileName = "dynamics.json"

    public struct Point: Codable, Equatable, Sendable {
        public var step: Int
        /// Validation loss of the checkpoint (mean over the scored windows).
        public var valLoss: Double
        /// The horizon's mean offset at each residual stream 0…L.
        public var horizonMeanOffset: [Double]
        /// Current-token baseline loss − probe loss at each residual stream 0…L, for the token at i+2.
        public var probeGain: [Double]
        /// Myopic twin − this run at each position (nil without a twin checkpoint at this step).
        public var gapPositionLoss: [Double]?
        /// Mean of `gapPositionLoss`.
        public var gap: Double?

        enum CodingKeys: String, CodingKey {
            case step, gap
            case valLoss = "val_loss", horizonMeanOffset = "horizon_mean_offset", probeGain = "probe_gain"
            case gapPositionLoss = "gap_position_loss"
        }
    }

    /// ‖g_future‖ / ‖g_vanilla‖ over every parameter group at a logged step.
    public struct SplitPoint: Codable, Equatable, Sendable {
        public var step: Int
        public var futureShare: Double

        enum CodingKeys: String, CodingKey {
            case step
            case futureShare = "future_over_vanilla"
        }
    }

    public var run: String
    public var twin: String?
    public var seqLen: Int
    public var settings: Dynamics.Options
    public var points: [Point]
    public var gradientSplit: [SplitPoint]

    enum CodingKeys: String, CodingKey {
        case run, twin, settings, points
        case seqLen = "seq_len", gradientSplit = "gradient_split"
    }
}

public enum Dynamics {
    public struct Options: Codable, Equatable, Sendable {
        /// Validation windows the loss and the gap are scored on.
        public var evalWindows = 32
        /// Windows the horizon averages over.
        public var horizonSequences = 8
        /// Validation positions the probes read (whole windows).
        public var probePositions = 2048
        /// Classes of the probe (the most frequent targets plus "other").
        public var probeTop = 64
        public var batch = 8

        public init() {}

        enum CodingKeys: String, CodingKey {
            case batch
            case evalWindows = "eval_windows", horizonSequences = "horizon_sequences"
            case probePositions = "probe_positions", probeTop = "probe_top"
        }
    }

    /// The myopic twin of a run folder `…/vanilla-seedS`: `…/myopic-seedS`, when it exists.
    public static func twin(of run: URL) -> URL? {
        let name = run.lastPathComponent
        guard name.hasPrefix("vanilla-seed") else { return nil }
        let twin = run.deletingLastPathComponent().appendingPathComponent("myopic-" + name.dropFirst("vanilla-".count))
        return FileManager.default.fileExists(atPath: twin.appendingPathComponent("run_config.json").path)
            || ((try? Checkpoint.latestCheckpoint(in: twin)) ?? nil) != nil ? twin : nil
    }

    /// The horizon's mean offset and the k = 1 probe gain of one model: what `myopia horizon` and
    /// `myopia probe --offsets 1` give on the same windows with the same settings.
    public static func measure(_ model: Transformer, validation: [Int32], seqLen t: Int,
                               options: Options) -> (horizon: [Double], probeGain: [Double]) {
        let horizon = Horizon.compute(model, tokens: validation, seqLen: t, sequences: options.horizonSequences,
                                      batch: options.batch)
        let layers = Array(0...model.config.nLayers)
        let data = TokenProbes.extract(model, tokens: validation, seqLen: t, layers: layers, offsets: [1],
                                       positions: options.probePositions, batch: options.batch)
        let probe = TokenProbes.run(data, layers: layers, offsets: [1], top: options.probeTop)
        return (horizon.meanOffset, probe.loss.map { probe.currentTokenLoss[0] - $0[0] })
    }

    /// Measures every checkpoint of `run` (a training run folder).
    public static func run(_ run: URL, options: Options = Options(), log: (String) -> Void = { _ in }) throws -> DynamicsTable {
        guard let config = Trainer.recordedConfig(in: run) else {
            throw InputError.missing(file: run.appendingPathComponent("checkpoint-*/\(Checkpoint.stateFile)").path,
                                     field: "a training run's checkpoint")
        }
        let steps = try Checkpoint.checkpointSteps(in: run)
        let tokenizer = try Tokenizers.load(config.tokenizer, log: log)
        let dataset = try DataSource.load(config.data, tokenizer: tokenizer, validationFraction: config.validationFraction,
                                          log: log)
        let t = config.seqLen
        let twin = twin(of: run)
        let twinSteps = Set(twin.flatMap { try? Checkpoint.checkpointSteps(in: $0) } ?? [])
        var points: [DynamicsTable.Point] = []
        for (i, step) in steps.enumerated() {
            let folder = run.appendingPathComponent("checkpoint-\(step)")
            let model = try Checkpoint.loadModel(from: folder)
            let eval = Evaluation.run(model, tokens: dataset.validation, seqLen: t, batch: options.batch,
                                      maxWindows: options.evalWindows)
            let (horizon, gain) = measure(model, validation: dataset.validation, seqLen: t, options: options)
            var point = DynamicsTable.Point(step: step, valLoss: eval.loss, horizonMeanOffset: horizon, probeGain: gain)
            if let twin, twinSteps.contains(step) {
                let other = try Checkpoint.loadModel(from: twin.appendingPathComponent("checkpoint-\(step)"))
                let mine = Evaluation.run(other, tokens: dataset.validation, seqLen: t, batch: options.batch,
                                          maxWindows: options.evalWindows)
                let difference = zip(mine.positionLoss, eval.positionLoss).map { $0 - $1 }
                point.gapPositionLoss = difference
                point.gap = mine.loss - eval.loss
            }
            points.append(point)
            log(String(format: "step %d (%d of %d): loss %.4f, mean offset %@", step, i + 1, steps.count, eval.loss,
                       horizon.map { String(format: "%.2f", $0) }.joined(separator: " ")))
        }
        return DynamicsTable(run: run.path, twin: twin?.path, seqLen: t, settings: options, points: points,
                             gradientSplit: try gradientSplit(in: run))
    }

    /// ‖g_future‖/‖g_vanilla‖ at every step metrics.jsonl logged a gradient split.
    static func gradientSplit(in run: URL) throws -> [DynamicsTable.SplitPoint] {
        let url = run.appendingPathComponent("metrics.jsonl")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        var out: [DynamicsTable.SplitPoint] = []
        for (n, line) in text.split(separator: "\n").enumerated() {
            let metrics: TrainMetrics
            do { metrics = try JSONDecoder().decode(TrainMetrics.self, from: Data(line.utf8)) } catch {
                throw InputError.invalidValue(file: url.path, field: "line \(n + 1)", expected: "a metrics record", found: "\(error)")
            }
            guard let split = metrics.gradientSplit, !split.isEmpty else { continue }
            // Summed in the groups' name order: a dictionary's own order changes from process to
            // process, and with it the last bit of the sum.
            let groups = split.keys.sorted().map { split[$0]! }
            let future = groups.reduce(0) { $0 + $1.futureNorm * $1.futureNorm }
            let vanilla = groups.reduce(0) { $0 + $1.vanillaNorm * $1.vanillaNorm }
            out.append(DynamicsTable.SplitPoint(step: metrics.step, futureShare: vanilla > 0 ? (future / vanilla).squareRoot() : 0))
        }
        return out
    }
}
