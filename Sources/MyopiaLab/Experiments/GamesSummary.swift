import Foundation
import Myopia

// What `myopia games` writes (games.json): each game's measurements over seeds, and the
// consequence game against teacher forcing, paired by seed (docs/games.md, "The games experiment").

extension GamesExperiment {
    /// One value over seeds: its mean, sample standard deviation and 95% t-interval
    /// mean ± t_{0.975, n−1} · s / √n (nil for a single seed, or where no seed has the value).
    public struct Interval: Codable, Equatable, Sendable {
        public var mean: Double
        /// Sample standard deviation (n − 1); nil for one seed.
        public var std: Double?
        /// The 95% interval's ends; nil for one seed.
        public var low: Double?
        public var high: Double?
        public var perSeed: [Double]

        public init(_ values: [Double]) {
            perSeed = values
            let n = values.count
            mean = n == 0 ? .nan : values.reduce(0, +) / Double(n)
            guard n > 1 else { return }
            let m = mean
            let s = (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n - 1)).squareRoot()
            let half = GamesExperiment.tQuantile975(degreesOfFreedom: n - 1) * s / Double(n).squareRoot()
            std = s
            low = m - half
            high = m + half
        }

        /// Half the interval's width (0 for one seed).
        public var halfWidth: Double { (high ?? mean) - mean }

        enum CodingKeys: String, CodingKey {
            case mean, std, low, high
            case perSeed = "per_seed"
        }

        /// Every key is written (absent ends as null), so each interval has the same fields.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(mean, forKey: .mean)
            try c.encode(std, forKey: .std)
            try c.encode(low, forKey: .low)
            try c.encode(high, forKey: .high)
            try c.encode(perSeed, forKey: .perSeed)
        }
    }

    /// The 0.975 quantile of Student's t with `df` degrees of freedom: a table to 30, then the
    /// Cornish–Fisher expansion around the normal's 1.96 (within 1e-3 of the exact value there).
    public static func tQuantile975(degreesOfFreedom df: Int) -> Double {
        let table = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                     2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                     2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
        precondition(df >= 1)
        if df <= table.count { return table[df - 1] }
        let z = 1.959964, n = Double(df)
        return z + (z * z * z + z) / (4 * n) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * n * n)
    }

    /// `a − b` paired by seed (the lists are in the same seed order).
    public static func paired(_ a: [Double], minus b: [Double]) -> Interval {
        Interval(zip(a, b).map { $0 - $1 })
    }

    /// The generation study of each seed's model (GenerationStudy), over seeds.
    public struct GenerationSummary: Codable, Equatable, Sendable {
        /// Share of samples that end in a loop.
        public var loopShare: Interval
        /// Pooled distinct-n for n = 1 … (as RepetitionMetrics), each over seeds.
        public var distinct: [Int: Interval]
        /// Mean loss of the model on its own samples (free-running) and on the held-out
        /// continuation of the same prompt (teacher-forced).
        public var freeRunningLoss: Interval
        public var teacherForcedLoss: Interval

        enum CodingKeys: String, CodingKey {
            case distinct
            case loopShare = "loop_share", freeRunningLoss = "free_running_loss", teacherForcedLoss = "teacher_forced_loss"
        }
    }

    /// One game over seeds.
    public struct GameSummary: Codable, Equatable, Sendable {
        /// The run folders' prefix (`scheduled-sampling-0.25`).
        public var label: String
        /// The game and every knob it trained with.
        public var game: TrainingGame
        /// Next-token validation loss (teacher-forced, the t+1 head) over the whole validation split.
        public var valLoss: Interval
        /// Mean loss at each position 0..<T, over seeds; and each seed's.
        public var positionLoss: [Double]
        public var positionLossPerSeed: [[Double]]
        public var bucketLoss: [Double]
        /// The horizon's mean offset of each residual stream 0…L, mean over seeds; and each seed's.
        public var horizonMeanOffset: [Double]
        public var horizonMeanOffsetPerSeed: [[Double]]
        /// The upstream table, each cell's numbers the mean over seeds (its intervals: the
        /// t-interval over seeds, or the table's own with one seed).
        public var upstream: UpstreamTable
        public var generation: GenerationSummary
        /// Mean R(x̂) − R(x_{t+1}) on validation windows (ContinuationAdvantage), over seeds.
        public var continuationAdvantage: Interval
        public var trainLoss: [Double]
        public var seconds: [Double]
        public var runs: [String]
        /// The self-reinforcement of loops on the validation split (`SelfReinforcement.measure`),
        /// over seeds; nil when no sentence of it fits the context.
        public var loops: SelfReinforcement.SeedSummary? = nil

        enum CodingKeys: String, CodingKey {
            case label, game, upstream, generation, seconds, runs, loops
            case valLoss = "val_loss", positionLoss = "position_loss", positionLossPerSeed = "position_loss_per_seed"
            case bucketLoss = "bucket_loss", horizonMeanOffset = "horizon_mean_offset"
            case horizonMeanOffsetPerSeed = "horizon_mean_offset_per_seed"
            case continuationAdvantage = "continuation_advantage", trainLoss = "train_loss"
        }
    }

    /// A consequence game against the teacher-forced model, paired by seed.
    public struct ConsequenceComparison: Codable, Equatable, Sendable {
        public var label: String
        public var baseline: String
        /// Next-token validation loss given up: loss(consequence) − loss(teacher-forced).
        public var valLossGivenUp: Interval
        /// How much easier the model's own samples make the continuation, beyond what the
        /// teacher-forced model's samples do: advantage(consequence) − advantage(teacher-forced).
        public var advantageGain: Interval

        enum CodingKeys: String, CodingKey {
            case label, baseline
            case valLossGivenUp = "val_loss_given_up", advantageGain = "advantage_gain"
        }
    }

    /// What games.json holds and `myopia games --json` prints.
    public struct Summary: Codable, Equatable, Sendable {
        public var data: String
        /// The shared settings (game and seed are per run).
        public var settings: TrainConfig
        public var seeds: [UInt64]
        public var validationTokens: Int
        public var validationWindows: Int
        public var positionBuckets: [[Int]]
        /// The measurements' own settings.
        public var measure: Measure
        public var games: [GameSummary]
        public var consequence: [ConsequenceComparison]
        public var seconds: Double

        enum CodingKeys: String, CodingKey {
            case data, settings, seeds, measure, games, consequence, seconds
            case validationTokens = "validation_tokens", validationWindows = "validation_windows"
            case positionBuckets = "position_buckets"
        }

        public func game(_ label: String) -> GameSummary? { games.first { $0.label == label } }
    }

    /// Each seed's measurements of one game's model, before they are summarised.
    public struct RunMeasurements: Sendable {
        public var evaluation: EvaluationResult
        public var horizon: HorizonTable
        public var upstream: UpstreamTable
        public var generation: GenerationStudy.Metrics
        public var advantage: ContinuationAdvantage.Result
        public var trainLoss: Double
        public var seconds: Double
        public var loops: SelfReinforcement.Report?

        public init(evaluation: EvaluationResult, horizon: HorizonTable, upstream: UpstreamTable, generation: GenerationStudy.Metrics,
                    advantage: ContinuationAdvantage.Result, trainLoss: Double, seconds: Double, loops: SelfReinforcement.Report? = nil) {
            self.loops = loops
            self.evaluation = evaluation
            self.horizon = horizon
            self.upstream = upstream
            self.generation = generation
            self.advantage = advantage
            self.trainLoss = trainLoss
            self.seconds = seconds
        }
    }

    /// The summary of each game's runs (`runs[g][s]`: game g, seed s in `seeds` order).
    public static func summarise(games: [TrainingGame], seeds: [UInt64], runs: [[RunMeasurements]], seqLen t: Int,
                                 out: URL) -> (games: [GameSummary], consequence: [ConsequenceComparison]) {
        let buckets = Gap.positionBuckets(seqLen: t)
        func meanRows(_ rows: [[Double]]) -> [Double] {
            guard let width = rows.first?.count else { return [] }
            return (0..<width).map { j in rows.map { $0[j] }.reduce(0, +) / Double(rows.count) }
        }
        let summaries = games.enumerated().map { g, game -> GameSummary in
            let r = runs[g]
            let positions = r.map(\.evaluation.positionLoss), offsets = r.map(\.horizon.meanOffset)
            let mean = meanRows(positions)
            let metrics = r.map(\.generation)
            let ns = Set(metrics.flatMap { $0.distinct.map(\.n) }).sorted()
            var distinct: [Int: Interval] = [:]
            for n in ns {
                distinct[n] = Interval(metrics.compactMap { m in m.distinct.first { $0.n == n }?.pooled })
            }
            let generation = GenerationSummary(
                loopShare: Interval(metrics.compactMap { $0.loop_share.value }), distinct: distinct,
                freeRunningLoss: Interval(metrics.compactMap { $0.free_running.loss }),
                teacherForcedLoss: Interval(metrics.compactMap { $0.teacher_forced.value?.loss }))
            return GameSummary(label: label(game), game: game, valLoss: Interval(r.map(\.evaluation.loss)), positionLoss: mean,
                               positionLossPerSeed: positions, bucketLoss: Gap.bucketMeans(mean, buckets),
                               horizonMeanOffset: meanRows(offsets), horizonMeanOffsetPerSeed: offsets,
                               upstream: meanTable(r.map(\.upstream)), generation: generation,
                               continuationAdvantage: Interval(r.map(\.advantage.mean)),
                               trainLoss: r.map(\.trainLoss), seconds: r.map(\.seconds),
                               runs: seeds.map { runFolder(out, game: game, seed: $0).lastPathComponent },
                               loops: SelfReinforcement.SeedSummary(r.compactMap(\.loops)))
        }
        var comparisons: [ConsequenceComparison] = []
        if let base = games.firstIndex(of: .teacherForced) {
            for (g, game) in games.enumerated() {
                guard case .consequence = game else { continue }
                comparisons.append(ConsequenceComparison(
                    label: label(game), baseline: label(.teacherForced),
                    valLossGivenUp: paired(summaries[g].valLoss.perSeed, minus: summaries[base].valLoss.perSeed),
                    advantageGain: paired(summaries[g].continuationAdvantage.perSeed, minus: summaries[base].continuationAdvantage.perSeed)))
            }
        }
        return (summaries, comparisons)
    }

    /// The cell-wise mean of the seeds' tables: each number the mean over seeds, its interval the
    /// t-interval over seeds (the one table's own interval when there is one seed).
    public static func meanTable(_ tables: [UpstreamTable]) -> UpstreamTable {
        guard var first = tables.first else {
            return UpstreamTable(game: "", gameSettings: .teacherForced, flow: "", cells: [], windows: 0, seqLen: 0, layers: 0,
                                 maxOffset: 0, draws: 0)
        }
        guard tables.count > 1 else { return first }
        first.cells = first.cells.map { cell in
            let same = tables.compactMap { $0.cell(cell.variable, layer: cell.layer, offset: cell.offset) }
            let up = Interval(same.map(\.upstream)), opt = Interval(same.map(\.optimised))
            return UpstreamCell(variable: cell.variable, layer: cell.layer, offset: cell.offset, upstream: up.mean,
                                optimised: opt.mean, upstreamCI: [up.low ?? up.mean, up.high ?? up.mean],
                                optimisedCI: [opt.low ?? opt.mean, opt.high ?? opt.mean])
        }
        first.windows = tables.map(\.windows).reduce(0, +)
        return first
    }
}

extension GamesExperiment {
    /// "1.2345 ± 0.0100" (mean ± half the 95% interval), or the mean alone for one seed.
    public static func formatInterval(_ x: Interval, signed: Bool = false, digits: Int = 4) -> String {
        let m = String(format: signed ? "%+.\(digits)f" : "%.\(digits)f", x.mean)
        return x.low == nil ? m : m + String(format: " ± %.\(digits)f", x.halfWidth)
    }

    /// The table `myopia games` prints.
    public static func format(_ s: Summary) -> String {
        let c = s.settings
        var lines = ["myopia games on \(s.data): \(s.seeds.count) seed(s) \(s.seeds.map(String.init).joined(separator: ", ")); "
                     + "\(c.layers) layers, d_model \(c.dModel), \(c.heads) heads, T \(c.seqLen), batch \(c.batch), \(c.steps) steps, "
                     + "\(c.flow) flow; validation: \(s.validationTokens) predictions in \(s.validationWindows) windows",
                     s.seeds.count > 1 ? "(mean ± half the 95% t-interval over seeds)" : "(one seed: no intervals)", ""]
        var rows = [["game", "val loss", "loop share", "distinct-2", "free / TF loss", "advantage", "horizon mean offset"]]
        func f(_ v: Double, _ d: Int = 3) -> String { v.isFinite ? String(format: "%.\(d)f", v) : "–" }
        for g in s.games {
            let gen = g.generation
            rows.append([g.label, formatInterval(g.valLoss), f(gen.loopShare.mean, 2), gen.distinct[2].map { f($0.mean) } ?? "–",
                         "\(f(gen.freeRunningLoss.mean)) / \(f(gen.teacherForcedLoss.mean))",
                         formatInterval(g.continuationAdvantage, signed: true), g.horizonMeanOffset.map { f($0, 2) }.joined(separator: " ")])
        }
        let widths = (0..<rows[0].count).map { j in rows.map { $0[j].count }.max() ?? 0 }
        for r in rows {
            let line = r.enumerated().map { $0.element.padding(toLength: widths[$0.offset] + 2, withPad: " ", startingAt: 0) }.joined()
            lines.append(line.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression))
        }
        for d in s.consequence {
            lines.append("")
            lines.append("\(d.label) against \(d.baseline), paired by seed:")
            lines.append("  next-token validation loss given up  " + formatInterval(d.valLossGivenUp, signed: true))
            lines.append("  continuation advantage gained        " + formatInterval(d.advantageGain, signed: true))
        }
        let loops = SelfReinforcement.sideBySide(s.games.map { ($0.label, $0.loops) })
        if !loops.isEmpty { lines += [""] + loops }
        lines.append("")
        lines.append("loss by position (mean over seeds)")
        var header = "positions".padding(toLength: 12, withPad: " ", startingAt: 0)
        let width = max(10, (s.games.map(\.label.count).max() ?? 0) + 2)
        for g in s.games { header += g.label.padding(toLength: width, withPad: " ", startingAt: 0) }
        lines.append(header.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression))
        for (k, b) in s.positionBuckets.enumerated() {
            var row = (b[0] == b[1] ? "\(b[0])" : "\(b[0])–\(b[1])").padding(toLength: 12, withPad: " ", startingAt: 0)
            for g in s.games { row += f(g.bucketLoss[k], 4).padding(toLength: width, withPad: " ", startingAt: 0) }
            lines.append(row.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression))
        }
        return lines.joined(separator: "\n")
    }
}
