import Foundation
import Myopia

/// `myopia demo`: the main job. A plan of stages, each writing into its own folder of `out`:
///
///     sine/sine-vanilla, sine-myopic  the synthetic pre-caching task (SineExperiment), each run with
///                                   horizon.json and sine_probe.json
///     shakespeare/                  a myopia gap over seeds (gap.json; FLOW-seedS/ runs with the
///                                   gradient split in metrics.jsonl); the first seed's run of each
///                                   flow also gets horizon.json, probe.json, lens.json, generation.json
///     games/                        the training games on the same text (GamesExperiment): one
///                                   small model per game and seed, each measured; games.json
///     smollm2/                      SmolLM2-135M: horizon, probe, lens and generation study
///     report.html, summary.json, plan.json
///
/// Without a package registry the text stages run on `SyntheticText` (folder `synthetic-text/`)
/// and SmolLM2 is skipped unless cached; the sine task needs no data. Everything but the decision
/// to run SmolLM2 (which depends on the time left) is deterministic given the seed.
public enum Demo {
    public struct Options: Sendable {
        public var out: URL
        /// Every stage with tiny settings (seconds): for tests and a first look. Never downloads SmolLM2.
        public var quick: Bool
        public var seed: UInt64
        /// Skip the registry: the text stages use offline synthetic text.
        public var offline: Bool
        public var skipSmolLM2: Bool
        /// Wall-time budget in seconds (default: the plan's); SmolLM2 runs only if it fits.
        public var budget: Double?
        public var store: AssetStore

        public init(out: URL = URL(fileURLWithPath: "runs/demo"), quick: Bool = false, seed: UInt64 = 1,
                    offline: Bool = false, skipSmolLM2: Bool = false, budget: Double? = nil, store: AssetStore = AssetStore()) {
            self.out = out
            self.quick = quick
            self.seed = seed
            self.offline = offline
            self.skipSmolLM2 = skipSmolLM2
            self.budget = budget
            self.store = store
        }
    }

    /// The stages, in order.
    public enum Stage: String, Codable, CaseIterable, Sendable {
        case data, sine, gap, analyses, games, smollm2, report

        public var title: String {
            switch self {
            case .data: return "data: tiny-shakespeare, or offline synthetic text"
            case .sine: return "sine task: vanilla and myopic training, horizon, regression probes"
            case .gap: return "text: the myopia gap over seeds, gradient split logged"
            case .analyses: return "text: horizon, probes, logit lens and generation study for each flow"
            case .games: return "text: the training games, one small model per game and seed, measured"
            case .smollm2: return "SmolLM2-135M: horizon, probes, logit lens and generation study"
            case .report: return "report.html and summary.json"
            }
        }
    }

    /// What `progress` reports: `done` of `total` within a part of a stage (one training run, one
    /// analysis). Each part starts with `done` 0; milestones (validation steps, finished parts) are
    /// what a log without a terminal should show.
    public struct Progress: Sendable {
        public var stage: Stage
        public var done: Int
        public var total: Int
        public var status: String
        public var milestone: Bool
    }

    /// What the analysis of one language model measures (docs/DESIGN.md §4–5).
    public struct AnalysisPlan: Codable, Equatable, Sendable {
        /// Window length T for every analysis.
        public var seqLen: Int
        public var horizonSequences: Int
        public var horizonMaxOffset: Int
        /// Residual streams to probe and lens (nil: all, 0…L).
        public var layers: [Int]?
        public var probeOffsets: [Int]
        public var probePositions: Int
        public var probeTop: Int
        public var probeBatch: Int
        public var lensOffsets: [Int]
        public var lensWindows: Int
        public var samples: Int
        public var maxTokens: Int
        public var temperature: Double
        public var topK: Int?

        enum CodingKeys: String, CodingKey {
            case layers, samples, temperature
            case seqLen = "seq_len", horizonSequences = "horizon_sequences", horizonMaxOffset = "horizon_max_offset"
            case probeOffsets = "probe_offsets", probePositions = "probe_positions", probeTop = "probe_top"
            case probeBatch = "probe_batch", lensOffsets = "lens_offsets", lensWindows = "lens_windows"
            case maxTokens = "max_tokens", topK = "top_k"
        }
    }

    /// Every setting of a demo: the full demo or `--quick`.
    public struct Plan: Codable, Equatable, Sendable {
        public var quick: Bool
        public var seed: UInt64
        /// Flow and seed are set per run.
        public var sine: SineExperiment.Options
        public var sineHorizonSequences: Int
        public var sineProbeSequences: Int
        public var sineProbeLags: [Int]
        /// Data, flow and seed are set per run.
        public var text: TrainConfig
        public var textSeeds: [UInt64]
        /// Bytes of offline text when no registry is reachable.
        public var syntheticBytes: Int
        public var textAnalysis: AnalysisPlan
        /// The games experiment on the text: its own small model (data, game and seed set per
        /// run), the games, seeds and measurements.
        public var games: TrainConfig
        public var gamesList: String
        public var gamesSeeds: [UInt64]
        public var gamesMeasure: GamesExperiment.Measure
        public var smollm2: AnalysisPlan
        public var budgetSeconds: Double
        /// Expected seconds of each stage (`myopia demo` on a shared 2-core machine at load average
        /// 4–6, the mean of two runs); the SmolLM2 decision scales them by how fast the earlier stages ran.
        public var expectedSeconds: [String: Double]
        /// Expected seconds to download and verify SmolLM2 (about 270 MB) when it is not cached.
        public var smollm2FetchSeconds: Double

        enum CodingKeys: String, CodingKey {
            case quick, seed, sine, text, smollm2, games
            case gamesList = "games_list", gamesSeeds = "games_seeds", gamesMeasure = "games_measure"
            case sineHorizonSequences = "sine_horizon_sequences", sineProbeSequences = "sine_probe_sequences"
            case sineProbeLags = "sine_probe_lags", textSeeds = "text_seeds", syntheticBytes = "synthetic_bytes"
            case textAnalysis = "text_analysis", budgetSeconds = "budget_seconds", expectedSeconds = "expected_seconds"
            case smollm2FetchSeconds = "smollm2_fetch_seconds"
        }

        public static func make(quick: Bool, seed: UInt64) -> Plan {
            var sine = SineExperiment.Options()
            sine.task = SineTask(p: 1, frequency: 3, window: SineTask.publishedWindow)
            sine.seed = seed
            var text = TrainConfig()
            text.seed = seed
            text.data = "tinyshakespeare"
            let seeds = [seed, seed &+ 1]
            if quick {
                sine.layers = 2; sine.heads = 2; sine.dModel = 32; sine.seqLen = 16; sine.batch = 16
                sine.steps = 60; sine.warmup = 5; sine.evalEvery = 30; sine.logEvery = 10; sine.validationSequences = 64
                text.layers = 2; text.heads = 2; text.dModel = 32; text.seqLen = 32; text.batch = 8
                text.steps = 40; text.warmup = 5; text.lr = 3e-3; text.minLR = 3e-4
                text.evalEvery = 20; text.evalWindows = 8; text.logEvery = 5; text.checkpointEvery = 40; text.logGradientSplit = 10
                let textAnalysis = AnalysisPlan(seqLen: 32, horizonSequences: 4, horizonMaxOffset: 8, layers: nil,
                                                probeOffsets: [0, 1, 2], probePositions: 2048, probeTop: 256, probeBatch: 256,
                                                lensOffsets: [0, 1, 2], lensWindows: 8, samples: 4, maxTokens: 40,
                                                temperature: 0.8, topK: 40)
                let smollm2 = AnalysisPlan(seqLen: 32, horizonSequences: 1, horizonMaxOffset: 4, layers: [0, 15, 30],
                                           probeOffsets: [0, 1], probePositions: 512, probeTop: 32, probeBatch: 128,
                                           lensOffsets: [0, 1], lensWindows: 2, samples: 2, maxTokens: 12,
                                           temperature: 0.8, topK: 40)
                var games = text
                games.layers = 1; games.dModel = 16; games.seqLen = 16; games.batch = 4
                games.steps = 12; games.warmup = 2; games.evalEvery = 12; games.evalWindows = 4; games.logEvery = 4
                games.checkpointEvery = 12; games.logGradientSplit = 0
                var measure = GamesExperiment.Measure()
                measure.scoreWindows = 64
                measure.horizonWindows = 2; measure.upstreamWindows = 2; measure.upstreamDraws = 1; measure.maxOffset = 4
                measure.samples = 2; measure.maxTokens = 16; measure.promptTokens = 8
                measure.advantageWindows = 4; measure.advantagePositions = 4
                return Plan(quick: true, seed: seed, sine: sine, sineHorizonSequences: 4, sineProbeSequences: 128,
                            sineProbeLags: Array(0...4), text: text, textSeeds: seeds, syntheticBytes: 100_000,
                            textAnalysis: textAnalysis, games: games, gamesList: GamesExperiment.defaultSpec, gamesSeeds: seeds,
                            gamesMeasure: measure, smollm2: smollm2, budgetSeconds: 180,
                            expectedSeconds: ["sine": 1, "gap": 5, "analyses": 2, "games": 2, "smollm2": 18], smollm2FetchSeconds: 0)
            }
            // Wu et al.'s task at CPU scale: f = 3, p = 1 separates the flows in 800 steps of a
            // d_model 64 model (vanilla ≈ 0.15 × the floor, myopic 1.00 ×).
            sine.layers = 2; sine.heads = 2; sine.dModel = 64; sine.seqLen = 32; sine.batch = 64
            sine.steps = 800; sine.warmup = 50; sine.lr = 3e-3; sine.minLR = 3e-4
            sine.evalEvery = 100; sine.logEvery = 20; sine.validationSequences = 512
            text.layers = 4; text.heads = 4; text.dModel = 128; text.seqLen = 64; text.batch = 16
            text.steps = 600; text.warmup = 60; text.lr = 2e-3; text.minLR = 2e-4
            text.evalEvery = 100; text.evalWindows = 32; text.logEvery = 10; text.checkpointEvery = 600; text.logGradientSplit = 50
            let textAnalysis = AnalysisPlan(seqLen: 64, horizonSequences: 32, horizonMaxOffset: 16, layers: nil,
                                            probeOffsets: [0, 1, 2, 3], probePositions: 65_536, probeTop: 256, probeBatch: 1024,
                                            lensOffsets: [0, 1, 2, 3], lensWindows: 256, samples: 16, maxTokens: 200,
                                            temperature: 0.8, topK: 40)
            let smollm2 = AnalysisPlan(seqLen: 64, horizonSequences: 4, horizonMaxOffset: 16, layers: [0, 10, 20, 30],
                                       probeOffsets: [0, 1, 2], probePositions: 8192, probeTop: 256, probeBatch: 256,
                                       lensOffsets: [0, 1, 2], lensWindows: 32, samples: 4, maxTokens: 64,
                                       temperature: 0.8, topK: 40)
            // The games: a model a fraction of the gap's size (2 layers, d_model 64, T 32), every
            // game over both seeds, so that the stage adds under a minute.
            var games = text
            games.layers = 2; games.heads = 2; games.dModel = 64; games.seqLen = 32; games.batch = 8
            games.steps = 120; games.warmup = 12; games.lr = 3e-3; games.minLR = 3e-4
            games.evalEvery = 120; games.evalWindows = 8; games.logEvery = 10; games.checkpointEvery = 120; games.logGradientSplit = 0
            var measure = GamesExperiment.Measure()
            measure.scoreWindows = 256
            measure.horizonWindows = 4; measure.upstreamWindows = 4; measure.upstreamDraws = 2; measure.maxOffset = 8
            measure.samples = 4; measure.maxTokens = 64; measure.promptTokens = 16
            measure.advantageWindows = 16; measure.advantagePositions = 8
            return Plan(quick: false, seed: seed, sine: sine, sineHorizonSequences: 16, sineProbeSequences: 1024,
                        sineProbeLags: Array(0...10), text: text, textSeeds: seeds, syntheticBytes: 1_000_000,
                        textAnalysis: textAnalysis, games: games, gamesList: GamesExperiment.defaultSpec, gamesSeeds: seeds,
                        gamesMeasure: measure, smollm2: smollm2, budgetSeconds: 900,
                        expectedSeconds: ["sine": 70, "gap": 370, "analyses": 60, "games": 50, "smollm2": 100], smollm2FetchSeconds: 120)
        }

        /// Rejects a plan that could not run, before any work starts.
        public func validate() throws {
            try sine.validate(file: "demo plan (sine)")
            try text.validate(file: "demo plan (text)")
            try gamesOptions(out: URL(fileURLWithPath: "games")).validate(vocabSize: ByteTokenizer().vocabSize)
            let check = SettingsCheck(file: "demo plan").check
            try check(!textSeeds.isEmpty, "text_seeds", "at least one seed", textSeeds.count)
            try check(sineHorizonSequences > 0, "sine_horizon_sequences", "a positive integer", sineHorizonSequences)
            try check(sineProbeSequences > 1, "sine_probe_sequences", "at least 2 (train and held out)", sineProbeSequences)
            try check(sineProbeLags.allSatisfy { (0..<sine.seqLen).contains($0) }, "sine_probe_lags",
                      "lags in 0..<\(sine.seqLen)", sineProbeLags)
            try check(textAnalysis.seqLen <= text.seqLen, "text_analysis.seq_len",
                      "at most the trained models' \(text.seqLen) positions", textAnalysis.seqLen)
            for (name, a) in [("text_analysis", textAnalysis), ("smollm2", smollm2)] {
                try check(a.seqLen > 0 && a.horizonSequences > 0 && a.horizonMaxOffset >= 0, "\(name).seq_len, horizon",
                          "positive window, sequences and a non-negative offset", "\(a.seqLen), \(a.horizonSequences), \(a.horizonMaxOffset)")
                try check(!a.probeOffsets.isEmpty && a.probeOffsets.allSatisfy { $0 >= 0 }, "\(name).probe_offsets",
                          "offsets ≥ 0", a.probeOffsets)
                try check(!a.lensOffsets.isEmpty && a.lensOffsets.allSatisfy { $0 >= 0 }, "\(name).lens_offsets",
                          "offsets ≥ 0", a.lensOffsets)
                try check(a.probePositions > 0 && a.probeTop > 0 && a.probeBatch > 0, "\(name).probe_positions, top, batch",
                          "positive integers", "\(a.probePositions), \(a.probeTop), \(a.probeBatch)")
                try check(a.lensWindows > 0 && a.samples > 0 && a.maxTokens > 0, "\(name).lens_windows, samples, max_tokens",
                          "positive integers", "\(a.lensWindows), \(a.samples), \(a.maxTokens)")
            }
        }
    }

    /// Whether the SmolLM2 stage runs, and why not.
    public enum SmolLM2Decision: Equatable, Sendable {
        case run(fetch: Bool)
        case skip(reason: String)
    }

    /// The SmolLM2 decision. `quick` never downloads; without a registry there is nothing to fetch;
    /// otherwise the stage runs when its estimate (and the download's, when not cached) fits in the
    /// seconds left. `slowdown` scales the plan's estimates by how the earlier stages actually ran.
    public static func smolLM2Decision(plan: Plan, skip: Bool, offline: Bool, cached: Bool,
                                       secondsLeft: Double, slowdown: Double) -> SmolLM2Decision {
        if skip { return .skip(reason: "--skip-smollm2") }
        if !cached && plan.quick {
            return .skip(reason: "not in the local cache, and --quick never downloads it (`myopia fetch smollm2-135m` once, ~270 MB)")
        }
        if !cached && offline { return .skip(reason: "not in the local cache, and no package registry is reachable") }
        let analysis = (plan.expectedSeconds[Stage.smollm2.rawValue] ?? 0) * slowdown
        let need = analysis + (cached ? 0 : plan.smollm2FetchSeconds)
        if !plan.quick && need > secondsLeft {
            return .skip(reason: String(format: "needs about %.0f s%@, %.0f s of the %.0f s budget left (--budget SECONDS to allow more)",
                                        need, cached ? "" : " with the ~270 MB download", max(0, secondsLeft), plan.budgetSeconds))
        }
        return .run(fetch: !cached)
    }

    /// How much slower than the plan's estimates the finished stages ran (clamped to 0.5…4).
    public static func slowdown(plan: Plan, finished: [(stage: Stage, seconds: Double)]) -> Double {
        var expected = 0.0, actual = 0.0
        for f in finished {
            guard let e = plan.expectedSeconds[f.stage.rawValue] else { continue }
            expected += e
            actual += f.seconds
        }
        guard expected > 0 else { return 1 }
        return min(4, max(0.5, actual / expected))
    }

    /// The folders this demo writes into `out` (removed before a new run; nothing else is touched).
    public static let stageFolders = ["sine", "shakespeare", SyntheticText.sourceName, gamesFolder, "smollm2"]
    /// The games stage's folder.
    public static let gamesFolder = "games"
    public static let summaryFile = "summary.json"
    public static let planFile = "plan.json"

    /// The text-stage folder: named after the data it trains on.
    public static func textFolder(offline: Bool) -> String { offline ? SyntheticText.sourceName : "shakespeare" }
}

extension Demo.Plan {
    /// The games stage's experiment, into `out`.
    public func gamesOptions(out: URL) throws -> GamesExperiment.Options {
        GamesExperiment.Options(config: games, games: try GamesExperiment.parseGames(gamesList, base: games), seeds: gamesSeeds,
                                out: out, measure: gamesMeasure)
    }
}
