import Foundation
import Myopia

extension Demo {
    /// A vanilla and a myopic value of the same measurement.
    public struct FlowPair<T: Codable & Sendable>: Codable, Sendable {
        public var vanilla: T
        public var myopic: T
        public init(vanilla: T, myopic: T) {
            self.vanilla = vanilla
            self.myopic = myopic
        }
    }

    /// One stage as it ran: its folder (relative to the demo's), seconds, and a note when skipped.
    public struct StageRecord: Codable, Equatable, Sendable {
        public var stage: Stage
        public var folder: String?
        public var seconds: Double
        public var skipped: Bool
        public var note: String?
    }

    /// The sine task (docs/DESIGN.md §5): both flows against the no-pre-caching floor.
    public struct SineSummary: Codable, Sendable {
        public var p: Double
        public var frequency: Double
        public var steps: Int
        public var floorLoss: Double
        public var predictZeroLoss: Double
        public var valLoss: FlowPair<Double>
        /// valLoss / floorLoss: 0 is a perfect model, 1 one that caches nothing.
        public var ratio: FlowPair<Double>
        /// Per residual stream 0…L: the horizon's mean offset.
        public var horizonMeanOffset: FlowPair<[Double]>
        /// Per residual stream 0…L: held-out R² of sin(f·x_n) from h_{l,n} (lag 0, the cached quantity).
        public var lag0R2: FlowPair<[Double]>

        enum CodingKeys: String, CodingKey {
            case p, frequency, steps, ratio
            case floorLoss = "floor_loss", predictZeroLoss = "predict_zero_loss", valLoss = "val_loss"
            case horizonMeanOffset = "horizon_mean_offset", lag0R2 = "lag0_r2"
        }
    }

    /// The probe figure the summary quotes: the best layer for the token after next (k = 1, or the
    /// only offset probed).
    public struct ProbeSummary: Codable, Sendable {
        public var offset: Int
        public var bestLayer: Int
        public var bestLoss: Double
        public var bestAccuracy: Double
        public var currentTokenLoss: Double
        public var unigramLoss: Double

        enum CodingKeys: String, CodingKey {
            case offset
            case bestLayer = "best_layer", bestLoss = "best_loss", bestAccuracy = "best_accuracy"
            case currentTokenLoss = "current_token_loss", unigramLoss = "unigram_loss"
        }
    }

    /// The logit lens at the deepest residual stream measured: k = 0 is the model's own loss.
    public struct LensSummary: Codable, Sendable {
        public var layer: Int
        public var loss: [Double]
        public var offsets: [Int]
    }

    public struct GenerationSummary: Codable, Sendable {
        public var samples: Int
        public var tokens: Int
        public var loopShare: Double
        /// Pooled distinct-2 over all samples.
        public var distinct2: Double?
        public var freeRunningLoss: Double?
        public var teacherForcedLoss: Double?

        enum CodingKeys: String, CodingKey {
            case samples, tokens
            case loopShare = "loop_share", distinct2 = "distinct_2", freeRunningLoss = "free_running_loss"
            case teacherForcedLoss = "teacher_forced_loss"
        }
    }

    /// What the analyses of one language model found (the files are in `folder`).
    public struct ModelAnalysis: Codable, Sendable {
        /// The model as a reader knows it (a GGUF's name and quantisation, "SmolLM2-135M-Instruct Q4_1").
        public var name: String?
        public var folder: String
        public var horizonMeanOffset: [Double]
        public var probe: ProbeSummary
        public var lens: LensSummary
        public var generation: GenerationSummary
        public var seconds: Double

        enum CodingKeys: String, CodingKey {
            case name, folder, probe, lens, generation, seconds
            case horizonMeanOffset = "horizon_mean_offset"
        }
    }

    /// The text stages: the gap over seeds and the analyses of each flow's first-seed model.
    public struct TextSummary: Codable, Sendable {
        public var data: String
        public var steps: Int
        public var seeds: [UInt64]
        public var valLoss: FlowPair<Gap.Spread>
        /// myopic − vanilla, paired by seed.
        public var gap: Gap.Spread
        public var unigramLoss: Double
        /// ‖g_future‖ / ‖g_vanilla‖ over the whole model, averaged over the logged steps of each
        /// flow's first-seed run: the part of the training signal that serves later tokens.
        public var futureGradientShare: FlowPair<Double>
        public var analysis: FlowPair<ModelAnalysis>

        enum CodingKeys: String, CodingKey {
            case data, steps, seeds, gap, analysis
            case valLoss = "val_loss", unigramLoss = "unigram_loss", futureGradientShare = "future_gradient_share"
        }
    }

    /// The games stage (GamesExperiment): each game's validation loss and continuation advantage
    /// over seeds, and the consequence game against teacher forcing (the rest is in games.json).
    public struct GamesDigest: Codable, Sendable {
        public var folder: String
        public var steps: Int
        public var seeds: [UInt64]
        public var games: [String]
        public var valLoss: [GamesExperiment.Interval]
        public var continuationAdvantage: [GamesExperiment.Interval]
        public var consequence: [GamesExperiment.ConsequenceComparison]

        enum CodingKeys: String, CodingKey {
            case folder, steps, seeds, games, consequence
            case valLoss = "val_loss", continuationAdvantage = "continuation_advantage"
        }

        public init(_ s: GamesExperiment.Summary, folder: String) {
            self.folder = folder
            steps = s.settings.steps
            seeds = s.seeds
            games = s.games.map(\.label)
            valLoss = s.games.map(\.valLoss)
            continuationAdvantage = s.games.map(\.continuationAdvantage)
            consequence = s.consequence
        }
    }

    /// What `summary.json` holds and `myopia demo --json` prints.
    public struct Summary: Codable, Sendable {
        public var seed: UInt64
        public var quick: Bool
        /// True when the text stages ran on offline synthetic text.
        public var offline: Bool
        public var offlineReason: String?
        /// The text the text stages trained on (tinyshakespeare or synthetic-text).
        public var data: String
        /// Training steps of each text run.
        public var steps: Int
        /// Mean validation loss of the vanilla text runs (what `myopia runs` lists).
        public var valLoss: Double
        public var seconds: Double
        public var budgetSeconds: Double
        public var cores: Int
        /// 1, 5 and 15 minute load averages when the demo started and when it ended (the machine may be shared).
        public var loadAverageStart: [Double]
        public var loadAverageEnd: [Double]
        public var stages: [StageRecord]
        public var sine: SineSummary
        public var text: TextSummary
        public var games: GamesDigest
        public var smollm2: ModelAnalysis?
        /// Why SmolLM2 was skipped; nil when it ran.
        public var smollm2Skipped: String?
        public var report: String

        enum CodingKeys: String, CodingKey {
            case seed, quick, offline, data, steps, seconds, cores, stages, sine, text, games, smollm2, report
            case offlineReason = "offline_reason", valLoss = "val_loss", budgetSeconds = "budget_seconds"
            case loadAverageStart = "load_average_start", loadAverageEnd = "load_average_end"
            case smollm2Skipped = "smollm2_skipped"
        }

        /// Every key is written, absent values as null, so each summary has the same fields.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(seed, forKey: .seed)
            try c.encode(quick, forKey: .quick)
            try c.encode(offline, forKey: .offline)
            try c.encode(offlineReason, forKey: .offlineReason)
            try c.encode(data, forKey: .data)
            try c.encode(steps, forKey: .steps)
            try c.encode(valLoss, forKey: .valLoss)
            try c.encode(seconds, forKey: .seconds)
            try c.encode(budgetSeconds, forKey: .budgetSeconds)
            try c.encode(cores, forKey: .cores)
            try c.encode(loadAverageStart, forKey: .loadAverageStart)
            try c.encode(loadAverageEnd, forKey: .loadAverageEnd)
            try c.encode(stages, forKey: .stages)
            try c.encode(sine, forKey: .sine)
            try c.encode(text, forKey: .text)
            try c.encode(games, forKey: .games)
            try c.encode(smollm2, forKey: .smollm2)
            try c.encode(smollm2Skipped, forKey: .smollm2Skipped)
            try c.encode(report, forKey: .report)
        }
    }

    /// The short table `myopia demo` prints.
    public static func format(_ s: Summary) -> String {
        func f(_ v: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", v) }
        func opt(_ v: Double?, _ digits: Int = 3) -> String { v.map { f($0, digits) } ?? "–" }
        func spread(_ x: Gap.Spread, signed: Bool = false) -> String {
            String(format: signed ? "%+.3f" : "%.3f", x.mean) + (x.std.map { String(format: " ± %.3f", $0) } ?? "")
        }
        func offsets(_ xs: [Double]) -> String { xs.map { f($0, 2) }.joined(separator: " ") }
        func probe(_ p: ProbeSummary) -> String { "layer \(p.bestLayer): \(f(p.bestLoss))" }
        func loops(_ g: GenerationSummary) -> String {
            "\(Int((g.loopShare * Double(g.samples)).rounded()))/\(g.samples) (\(f(100 * g.loopShare, 0))%)"
        }
        // Rows are [label, vanilla, myopic, note] or a heading (one cell); columns fit their widest cell.
        var rows: [[String]] = []
        func row(_ label: String, _ vanilla: String, _ myopic: String, _ note: String = "") { rows.append([label, vanilla, myopic, note]) }
        func heading(_ text: String) { rows.append([text]) }

        row("", "vanilla", "myopic")
        let sine = s.sine
        heading("sine task (p \(sine.p.formatted0), f \(sine.frequency.formatted0)), \(sine.steps) steps")
        row("val Huber loss (/ floor)", "\(f(sine.valLoss.vanilla)) (\(f(sine.ratio.vanilla, 2)))",
            "\(f(sine.valLoss.myopic)) (\(f(sine.ratio.myopic, 2)))", "floor \(f(sine.floorLoss))")
        if sine.lag0R2.vanilla.count > 1 {
            let l = sine.lag0R2.vanilla.indices.dropFirst().max { sine.lag0R2.vanilla[$0] < sine.lag0R2.vanilla[$1] } ?? 1
            row("R² of sin(f·x_n) at layer \(l)", f(sine.lag0R2.vanilla[l]), f(sine.lag0R2.myopic[l]), "cached for later positions")
        }
        row("horizon mean offset by layer*", offsets(sine.horizonMeanOffset.vanilla), offsets(sine.horizonMeanOffset.myopic))
        let t = s.text
        heading("\(t.data), \(t.seeds.count) seeds × \(t.steps) steps")
        row("val loss (mean ± std)", spread(t.valLoss.vanilla), spread(t.valLoss.myopic),
            "gap \(spread(t.gap, signed: true)); unigram \(f(t.unigramLoss))")
        row("horizon mean offset by layer*", offsets(t.analysis.vanilla.horizonMeanOffset), offsets(t.analysis.myopic.horizonMeanOffset))
        row("‖g_future‖ / ‖g_vanilla‖", f(t.futureGradientShare.vanilla), f(t.futureGradientShare.myopic))
        let pv = t.analysis.vanilla.probe, pm = t.analysis.myopic.probe
        row("probe k=\(pv.offset): best layer, loss", probe(pv), probe(pm), "current token \(f(pv.currentTokenLoss))")
        row("generation: samples in a loop", loops(t.analysis.vanilla.generation), loops(t.analysis.myopic.generation))
        row("free-running / teacher-forced loss",
            "\(opt(t.analysis.vanilla.generation.freeRunningLoss)) / \(opt(t.analysis.vanilla.generation.teacherForcedLoss))",
            "\(opt(t.analysis.myopic.generation.freeRunningLoss)) / \(opt(t.analysis.myopic.generation.teacherForcedLoss))")
        let g = s.games
        heading("training games (vanilla flow, a smaller model), \(g.seeds.count) seeds × \(g.steps) steps")
        for (i, name) in g.games.enumerated() {
            row("val loss: \(name)", GamesExperiment.formatInterval(g.valLoss[i], digits: 3), "",
                "continuation advantage \(GamesExperiment.formatInterval(g.continuationAdvantage[i], signed: true, digits: 3))")
        }
        for d in g.consequence {
            row("\(d.label) − \(d.baseline)", GamesExperiment.formatInterval(d.valLossGivenUp, signed: true, digits: 3), "",
                "loss given up; advantage gained \(GamesExperiment.formatInterval(d.advantageGain, signed: true, digits: 3))")
        }
        if let m = s.smollm2 {
            // A deep model's horizon: about five layers, the last one included.
            let n = m.horizonMeanOffset.count, step = max(1, (n - 1 + 3) / 4)
            let shown = Array(Swift.stride(from: 0, to: n - 1, by: step)) + [n - 1]
            heading("\(m.name ?? "SmolLM2-135M") (pretrained: smollm2-135m)")
            row("horizon mean offset by layer*", shown.map { f(m.horizonMeanOffset[$0], 2) }.joined(separator: " "), "",
                "(layers " + shown.map(String.init).joined(separator: ", ") + ")")
            row("probe k=\(m.probe.offset): best layer, loss", probe(m.probe), "", "current token \(f(m.probe.currentTokenLoss))")
            row("generation: samples in a loop", loops(m.generation), "")
        } else {
            heading("smollm2-135m: skipped (\(s.smollm2Skipped ?? "not run"))")
        }

        let widths = (0..<3).map { c in rows.filter { $0.count == 4 }.map { $0[c].count }.max() ?? 0 }
        func pad(_ text: String, _ n: Int) -> String { text.padding(toLength: max(n, text.count), withPad: " ", startingAt: 0) }
        let load = { (l: [Double]) in l.map { f($0, 1) }.joined(separator: " ") }
        var lines = ["Myopia demo\(s.quick ? " (--quick)" : "") — \(Self.duration(s.seconds)) on \(s.cores) cores, load average \(load(s.loadAverageStart)) → \(load(s.loadAverageEnd)); seed \(s.seed)"]
        if s.offline { lines.append("offline: the text stages ran on synthetic text (\(s.offlineReason ?? "no registry"))") }
        lines.append("")
        for r in rows {
            guard r.count == 4 else { lines.append(r[0]); continue }
            let cells = "  " + pad(r[0], widths[0] + 2) + pad(r[1], widths[1] + 3) + pad(r[2], widths[2] + 3) + r[3]
            lines.append(cells.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression))
        }
        lines.append("")
        lines.append(horizonNote)
        lines.append("report: \(s.report)")
        return lines.joined(separator: "\n")
    }

    /// What the table's horizon rows measure. A myopic model's horizon is not zero: the derivative
    /// measured is the true one of the trained weights, whatever flow trained them.
    public static let horizonNote = "* horizon: the true (vanilla) gradient of each trained model, whatever flow trained it "
        + "(`myopia horizon --flow own`: under its own flow)"

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }
}

private extension Double {
    /// 1 → "1", 0.3 → "0.3".
    var formatted0: String { self == rounded() ? String(Int(self)) : String(self) }
}
