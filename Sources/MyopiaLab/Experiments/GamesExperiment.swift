import Foundation
import Myopia

/// `myopia games` (docs/games.md, "The games experiment"): trains one model per training game from
/// the same seeds, data and schedule, then measures each on the validation split — next-token loss
/// overall and by position, the horizon, the upstream table, a generation study and the
/// continuation advantage — and, for the consequence game, what it gives up against the
/// teacher-forced model and what it gains, paired by seed.
///
/// Same seed ⇒ same initial weights and batches for every game (the Trainer draws them from
/// `config.seed` alone); only the game differs.
public enum GamesExperiment {
    /// The games `myopia games` trains when none are named.
    public static let defaultSpec = "teacher-forced,scheduled-sampling=0.25,consequence=0.5,multi-token=2"
    public static let summaryFile = "games.json"
    /// The continuation advantage each run writes.
    public static let advantageFile = "continuation_advantage.json"

    /// Parses `--games`: a comma list of `name` or `name=value`, the value the game's main knob
    /// (scheduled-sampling=ρ, consequence=λ, multi-token=N). A knob not given is `base`'s (the game
    /// flags, a --config file, or the defaults). Each game may appear once.
    public static func parseGames(_ spec: String, base: TrainConfig = TrainConfig()) throws -> [TrainingGame] {
        func refuse(_ expected: String, _ found: String) -> InputError {
            InputError.invalidValue(file: "flags", field: "games", expected: expected, found: found)
        }
        var games: [TrainingGame] = []
        for part in spec.split(separator: ",", omittingEmptySubsequences: false) {
            let item = part.trimmingCharacters(in: .whitespaces)
            let pieces = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let name = pieces[0], value = pieces.count > 1 ? pieces[1] : nil
            var config = base
            config.gameName = name
            switch name {
            case "teacher-forced":
                if let value { throw refuse("teacher-forced without a value", "teacher-forced=\(value)") }
                config.game = .teacherForced
            case "scheduled-sampling":
                var rate = base.sampleRate ?? TrainConfig.defaultSampleRate
                if let value {
                    guard let r = Double(value), r.isFinite, (0...1).contains(r) else {
                        throw refuse("scheduled-sampling=ρ with ρ in 0…1", item)
                    }
                    rate = r
                }
                config.game = .scheduledSampling(rate: rate)
            case "consequence":
                var settings = TrainConfig.defaultConsequence
                settings.weight = base.consequenceWeight ?? settings.weight
                settings.horizon = base.consequenceHorizon ?? settings.horizon
                settings.positions = base.consequencePositions ?? settings.positions
                settings.estimator = base.consequenceEstimator ?? settings.estimator
                if let value {
                    guard let weight = Double(value), weight.isFinite else { throw refuse("consequence=λ with a finite λ", item) }
                    settings.weight = weight
                }
                config.game = .consequence(settings)
            case "multi-token":
                var heads = base.predictionHeads ?? TrainConfig.defaultPredictionHeads
                if let value {
                    guard let n = Int(value), n >= 1 else { throw refuse("multi-token=N with N ≥ 1", item) }
                    heads = n
                }
                config.game = .multiToken(heads: heads)
            default:
                throw refuse("a comma list of \(TrainingGame.names.joined(separator: ", ")) (each optionally =value)", item.isEmpty ? "(empty)" : item)
            }
            if games.contains(where: { $0.name == name }) { throw refuse("each game once", item) }
            games.append(config.game)
        }
        return games
    }

    /// A game's folder label: its name and main knob (`teacher-forced`, `scheduled-sampling-0.25`,
    /// `consequence-0.5`, `multi-token-2`).
    public static func label(_ game: TrainingGame) -> String {
        switch game {
        case .teacherForced: return game.name
        case .scheduledSampling(let rate): return "\(game.name)-\(knob(rate))"
        case .consequence(let s): return "\(game.name)-\(knob(s.weight))"
        case .multiToken(let heads): return "\(game.name)-\(heads)"
        }
    }

    static func knob(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e9 ? String(Int(x)) : String(x) }

    /// The run folder of one game and seed: `out/LABEL-seedS`.
    public static func runFolder(_ out: URL, game: TrainingGame, seed: UInt64) -> URL {
        out.appendingPathComponent("\(label(game))-seed\(seed)")
    }

    /// How each model is measured after training.
    public struct Measure: Codable, Equatable, Sendable {
        /// Validation windows the next-token loss is scored on (nil: the whole split, as `myopia gap`).
        public var scoreWindows: Int? = nil
        /// Validation windows for the horizon and the upstream table.
        public var horizonWindows = 8
        /// The largest offset of the horizon and the upstream table (nil: T − 1).
        public var maxOffset: Int? = 8
        public var upstreamWindows = 8
        public var upstreamDraws = 4
        /// The generation study: samples of `maxTokens` after a prompt of `promptTokens`
        /// validation tokens, scored against the validation tokens that follow it.
        public var samples = 8
        public var maxTokens = 64
        public var promptTokens = 16
        public var temperature = 0.8
        public var topK: Int? = 40
        /// The continuation advantage: windows, positions per window and K (nil: the consequence
        /// game's horizon, or its default).
        public var advantageWindows = 16
        public var advantagePositions = 8
        public var advantageHorizon: Int? = nil

        public init() {}

        enum CodingKeys: String, CodingKey {
            case samples, temperature
            case scoreWindows = "score_windows"
            case horizonWindows = "horizon_windows", maxOffset = "max_offset", upstreamWindows = "upstream_windows"
            case upstreamDraws = "upstream_draws", maxTokens = "max_tokens", promptTokens = "prompt_tokens", topK = "top_k"
            case advantageWindows = "advantage_windows", advantagePositions = "advantage_positions"
            case advantageHorizon = "advantage_horizon"
        }
    }

    public struct Options: Sendable {
        /// The shared settings; `game` and `seed` are set per run.
        public var config: TrainConfig
        public var games: [TrainingGame]
        public var seeds: [UInt64]
        public var out: URL
        /// Reuse runs already in `out` (finished ones are only measured again).
        public var resume: Bool
        public var measure: Measure

        public init(config: TrainConfig, games: [TrainingGame], seeds: [UInt64], out: URL, resume: Bool = false,
                    measure: Measure = Measure()) {
            self.config = config
            self.games = games
            self.seeds = seeds
            self.out = out
            self.resume = resume
            self.measure = measure
        }

        /// K of the continuation advantage: the setting, else the first consequence game's horizon.
        public var advantageHorizon: Int {
            if let k = measure.advantageHorizon { return k }
            for case .consequence(let s) in games { return s.horizon }
            return TrainConfig.defaultConsequence.horizon
        }

        /// Refuses settings that could not run, naming them, before any training.
        public func validate(vocabSize: Int) throws {
            let check = SettingsCheck(file: "flags").check
            try check(!seeds.isEmpty, "seeds", "at least one seed", "none")
            try check(Set(seeds).count == seeds.count, "seeds", "distinct seeds", seeds.map(String.init).joined(separator: ","))
            try check(!games.isEmpty, "games", "at least one game", "none")
            try check(config.flow != .localMyopic, "flow", "vanilla, myopic, beta=β or bigram (the consequence game and the horizon refuse local-myopic)", config.flow.description)
            for game in games {
                var c = config
                c.game = game
                try c.validate(file: "flags")
                try c.checkGame(vocabSize: vocabSize, file: "flags")
            }
            let t = config.seqLen, m = measure
            try check(m.scoreWindows.map { $0 > 0 } ?? true, "score_windows", "a positive integer", m.scoreWindows ?? 0)
            try check(m.horizonWindows > 0 && m.upstreamWindows > 0 && m.advantageWindows > 0, "horizon_windows, upstream_windows, advantage_windows",
                      "positive integers", "\(m.horizonWindows), \(m.upstreamWindows), \(m.advantageWindows)")
            try check(m.maxOffset.map { (0..<t).contains($0) } ?? true, "max_offset", "0…\(t - 1)", m.maxOffset ?? 0)
            try check(m.upstreamDraws > 0 && m.samples > 0 && m.maxTokens > 0 && m.advantagePositions > 0,
                      "upstream_draws, samples, max_tokens, advantage_positions", "positive integers",
                      "\(m.upstreamDraws), \(m.samples), \(m.maxTokens), \(m.advantagePositions)")
            try check((1..<t).contains(m.promptTokens), "prompt_tokens", "1…\(t - 1)", m.promptTokens)
            try check((1..<t).contains(advantageHorizon), "advantage_horizon", "1…\(t - 1)", advantageHorizon)
        }
    }

    /// Trains and measures every (seed, game) in `out`, writes `out/games.json` and returns it.
    /// `onStart` is called before each run, `onTrainLog` at each of its logged steps. In an MPI job
    /// (`group`) every run trains data-parallel (Trainer), the evaluation and the horizon are
    /// sharded, the other measurements are made whole on every rank (the same figures), and rank 0
    /// alone writes.
    public static func run(_ options: Options, dataset: TokenDataset, tokenizer: any Tokenizer = ByteTokenizer(),
                           group: any ProcessGroup = Distributed.group, log: (String) -> Void = { _ in },
                           onStart: (TrainingGame, UInt64) -> Void = { _, _ in },
                           onTrainLog: (TrainMetrics) -> Void = { _ in }) throws -> Summary {
        try options.validate(vocabSize: tokenizer.vocabSize)
        let t = options.config.seqLen, m = options.measure
        let needed = m.promptTokens + 1
        guard TokenDataset.windows(dataset.validation, seqLen: t) >= 1, dataset.validation.count > needed else {
            throw InputError.invalidValue(file: dataset.source, field: "(validation split)", expected: "at least one window of \(t + 1) tokens",
                                           found: "\(dataset.validation.count) tokens")
        }
        let started = Date()
        let writes = group.rank == 0
        if writes { try LabFiles.createDirectory(options.out) }
        var runs = [[RunMeasurements]](repeating: [], count: options.games.count)
        var windows = 0, tokens = 0
        for seed in options.seeds {
            for (g, game) in options.games.enumerated() {
                var config = options.config
                config.game = game
                config.seed = seed
                let folder = runFolder(options.out, game: game, seed: seed)
                if !options.resume && writes { try? FileManager.default.removeItem(at: folder) }
                onStart(game, seed)
                let runStart = Date()
                let trainer = try Trainer(config: config, dataset: dataset, out: folder, vocabSize: tokenizer.vocabSize,
                                          tokenizer: tokenizer.name, resume: options.resume, group: group)
                let last = try trainer.run(onLog: onTrainLog)
                let seconds = Date().timeIntervalSince(runStart)
                let measured = try measureRun(trainer.model, game: game, options: options, seed: seed, dataset: dataset,
                                              tokenizer: tokenizer, folder: folder, group: group, log: log)
                log(String(format: "%@ seed %llu: validation loss %.4f, continuation advantage %+.4f", label(game), seed,
                           measured.evaluation.loss, measured.advantage.mean))
                runs[g].append(RunMeasurements(evaluation: measured.evaluation, horizon: measured.horizon, upstream: measured.upstream,
                                               generation: measured.generation, advantage: measured.advantage,
                                               trainLoss: last?.trainLoss ?? Gap.lastLoggedTrainLoss(folder) ?? .nan, seconds: seconds,
                                               loops: measured.loops))
                windows = measured.evaluation.windows
                tokens = measured.evaluation.tokens
            }
        }
        let (games, consequence) = summarise(games: options.games, seeds: options.seeds, runs: runs, seqLen: t, out: options.out)
        var shared = options.config
        shared.game = .teacherForced
        shared.seed = options.seeds[0]
        var measure = options.measure
        measure.advantageHorizon = options.advantageHorizon
        let summary = Summary(data: dataset.source, settings: shared, seeds: options.seeds, validationTokens: tokens,
                              validationWindows: windows, positionBuckets: Gap.positionBuckets(seqLen: t), measure: measure,
                              games: games, consequence: consequence, seconds: Date().timeIntervalSince(started))
        if writes { try LabFiles.writeJSON(summary, to: options.out.appendingPathComponent(summaryFile)) }
        return summary
    }

    /// Every measurement of one trained model, each written into its run folder with how it was
    /// made (commands.json), where `myopia report` and `myopia runs` find it.
    static func measureRun(_ model: Transformer, game: TrainingGame, options: Options, seed: UInt64, dataset: TokenDataset,
                           tokenizer: any Tokenizer, folder: URL, group: any ProcessGroup = SingleProcess(),
                           log: (String) -> Void) throws -> RunMeasurements {
        let t = options.config.seqLen, m = options.measure, flow = options.config.flow
        let validation = dataset.validation
        model.flow = flow
        func save<T: Encodable>(_ result: T, as fileName: String, since: Date, _ settings: [String: String]) throws {
            guard group.rank == 0 else { return }
            let record = AnalysisRecord(command: "games", model: folder.lastPathComponent, data: "\(dataset.source) (validation)",
                                        settings: settings.merging(["seq_len": "\(t)", "seed": "\(seed)"]) { a, _ in a },
                                        seconds: Date().timeIntervalSince(since))
            try RunFolder.write(result, as: fileName, record: record, to: folder)
        }
        var since = Date()
        let evaluation = Evaluation.run(model, tokens: validation, seqLen: t, batch: options.config.batch, maxWindows: m.scoreWindows,
                                        group: group)
        try save(evaluation, as: "eval.json", since: since, ["windows": m.scoreWindows.map(String.init) ?? "all"])

        since = Date()
        let maxOffset = m.maxOffset.map { min($0, t - 1) }
        let horizon = Horizon.compute(model, tokens: validation, seqLen: t, maxOffset: maxOffset, sequences: m.horizonWindows, flow: flow,
                                      group: group)
        try save(horizon, as: HorizonTable.fileName, since: since,
                 ["sequences": "\(m.horizonWindows)", "max_offset": maxOffset.map(String.init) ?? "all", "flow": flow.description])

        since = Date()
        let upstream = try Upstream.measure(model, tokens: validation, seqLen: t, game: game, flow: flow,
                                            options: Upstream.Options(windows: m.upstreamWindows, maxOffset: maxOffset,
                                                                      draws: m.upstreamDraws, seed: seed))
        try save(upstream, as: UpstreamTable.fileName, since: since,
                 ["windows": "\(m.upstreamWindows)", "draws": "\(m.upstreamDraws)", "max_offset": maxOffset.map(String.init) ?? "all",
                  "game": label(game), "flow": flow.description])

        since = Date()
        let prompt = Array(validation.prefix(m.promptTokens))
        let reference = Array(validation.dropFirst(m.promptTokens).prefix(m.maxTokens))
        let v = Int32(model.config.vocabSize)
        let eos = tokenizer.endOfText.flatMap { (0..<v).contains($0) ? $0 : nil }
        let sampling = SamplingOptions(temperature: m.temperature, topK: m.topK, seed: seed, maxTokens: m.maxTokens, stopToken: eos)
        let drawn = GenerationStudy.draw(model, prompt: prompt, options: sampling, count: m.samples)
        let study = GenerationStudy.study(model, tokenizer: tokenizer, source: folder.lastPathComponent, prompt: tokenizer.decode(prompt),
                                          promptTokens: prompt, options: sampling, drawn: drawn,
                                          reference: reference.isEmpty ? nil : ("validation continuation", reference))
        try save(study, as: GenerationStudy.fileName, since: since,
                 ["samples": "\(m.samples)", "max_tokens": "\(m.maxTokens)", "temperature": "\(m.temperature)",
                  "top_k": m.topK.map(String.init) ?? "none", "prompt_tokens": "\(m.promptTokens)"])

        since = Date()
        let k = options.advantageHorizon
        let advantage = ContinuationAdvantage.measure(model, tokens: validation, seqLen: t, horizon: k, windows: m.advantageWindows,
                                                      positions: m.advantagePositions, seed: seed)
        try save(advantage, as: advantageFile, since: since,
                 ["windows": "\(m.advantageWindows)", "positions": "\(m.advantagePositions)", "horizon": "\(k)"])
        since = Date()
        let loops = SelfReinforcement.measure(model, tokens: validation, tokenizer: tokenizer)
        if let loops {
            try save(loops, as: SelfReinforcement.fileName, since: since,
                     ["sentences": "\(SelfReinforcement.runSentences)", "max_repeats": "\(loops.maxRepeats)"])
        }
        log(String(format: "%@: horizon, upstream table, %d samples, the continuation advantage and the loops' self-reinforcement measured",
                   folder.lastPathComponent, m.samples))
        return RunMeasurements(evaluation: evaluation, horizon: horizon, upstream: upstream, generation: study.metrics,
                               advantage: advantage, trainLoss: .nan, seconds: 0, loops: loops)
    }
}
