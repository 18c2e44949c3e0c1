import Foundation
import Myopia
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Demo {
    /// Runs the plan's stages into `options.out`, writes report.html, summary.json and plan.json
    /// there, and returns the summary. `log` gets one line per stage and per finished part;
    /// `progress` the steps within a stage.
    public static func run(_ options: Options, log: (String) -> Void = { _ in },
                           progress: (Progress) -> Void = { _ in }) throws -> Summary {
        let started = Date()
        let loadStart = loadAverage()
        var plan = Plan.make(quick: options.quick, seed: options.seed)
        if let budget = options.budget { plan.budgetSeconds = budget }
        try plan.validate()
        let out = options.out
        try LabFiles.createDirectory(out)
        for name in stageFolders + [Report.defaultFile, summaryFile, planFile] {
            try? FileManager.default.removeItem(at: out.appendingPathComponent(name))
        }
        try LabFiles.writeJSON(plan, to: out.appendingPathComponent(planFile))

        var records: [StageRecord] = []
        func timed<T>(_ stage: Stage, folder: String?, _ body: () throws -> T) throws -> T {
            let number = (Stage.allCases.firstIndex(of: stage) ?? 0) + 1
            log("[\(number)/\(Stage.allCases.count)] \(stage.title)")
            let t0 = Date()
            let result = try body()
            records.append(StageRecord(stage: stage, folder: folder, seconds: Date().timeIntervalSince(t0), skipped: false, note: nil))
            return result
        }

        // 1. Data: the one network access of the text stages.
        let text = try timed(.data, folder: nil) { try loadText(options, plan: plan, log: log) }
        if text.offline { records[records.count - 1].note = "offline synthetic text: \(text.reason ?? "")" }

        // 2. The sine task needs no data.
        let sine = try timed(.sine, folder: "sine") {
            try runSine(plan, out: out.appendingPathComponent("sine"), log: log, progress: progress)
        }

        // 3. The myopia gap on the text, over seeds, with the gradient split in each run's metrics.
        let textName = textFolder(offline: text.offline)
        let textOut = out.appendingPathComponent(textName)
        var config = plan.text
        config.data = text.name
        let dataset = TokenDataset.split(ByteTokenizer().encode(text.data), validationFraction: config.validationFraction,
                                         source: text.name)
        let gap = try timed(.gap, folder: textName) { () throws -> Gap.Summary in
            var current = ""
            return try Gap.run(Gap.Options(config: config, seeds: plan.textSeeds, flows: [.vanilla, .myopic], out: textOut),
                               dataset: dataset, log: { log("\(textName): " + $0) },
                               onStart: { flow, seed in
                                   current = "\(flow) seed \(seed)"
                                   progress(Progress(stage: .gap, done: 0, total: config.steps, status: current, milestone: false))
                                   log("\(textName): training \(current) (\(config.layers) layers, d_model \(config.dModel), \(config.steps) steps of \(config.batch)×\(config.seqLen))")
                               },
                               onTrainLog: { m in
                                   let val = m.valLoss.map { String(format: " val %.3f", $0) } ?? ""
                                   progress(Progress(stage: .gap, done: m.step, total: config.steps,
                                                     status: String(format: "%@: loss %.3f%@  %.0f tok/s", current, m.trainLoss, val, m.tokensPerSecond),
                                                     milestone: m.valLoss != nil))
                               })
        }

        // 4. Each flow's first-seed model: horizon, probes, lens, generation.
        let heldOutText = String(decoding: dataset.validation.map { UInt8(truncatingIfNeeded: $0) }, as: UTF8.self)
        let firstSeed = plan.textSeeds[0]
        let analysis = try timed(.analyses, folder: textName) { () throws -> FlowPair<ModelAnalysis> in
            var found: [ModelAnalysis] = []
            for flow in [GradientFlow.vanilla, .myopic] {
                let folder = Gap.runFolder(textOut, flow: flow, seed: firstSeed)
                guard let checkpoint = try Checkpoint.latestCheckpoint(in: folder) else {
                    throw InputError.missing(file: folder.path, field: "checkpoint-STEP")
                }
                let model = try Checkpoint.loadModel(from: checkpoint)
                found.append(try analyse(model, tokenizer: ByteTokenizer(), source: "\(textName)/\(folder.lastPathComponent)",
                                         tokens: dataset.validation, heldOutText: heldOutText, plan: plan.textAnalysis,
                                         seed: plan.seed, folder: folder, relativeTo: out, stage: .analyses, log: log, progress: progress))
            }
            return FlowPair(vanilla: found[0], myopic: found[1])
        }
        let futureShare = FlowPair(
            vanilla: try futureGradientShare(Gap.runFolder(textOut, flow: .vanilla, seed: firstSeed)),
            myopic: try futureGradientShare(Gap.runFolder(textOut, flow: .myopic, seed: firstSeed)))

        // 5. The training games on the same text: one small model per game and seed, each measured.
        let gamesOut = out.appendingPathComponent(gamesFolder)
        let games = try timed(.games, folder: gamesFolder) { () throws -> GamesExperiment.Summary in
            var options = try plan.gamesOptions(out: gamesOut)
            options.config.data = text.name
            var current = ""
            return try GamesExperiment.run(options, dataset: dataset, log: { log("\(gamesFolder): " + $0) },
                                           onStart: { game, seed in
                                               current = "\(GamesExperiment.label(game)) seed \(seed)"
                                               progress(Progress(stage: .games, done: 0, total: options.config.steps, status: current, milestone: false))
                                               log("\(gamesFolder): training \(current) (\(options.config.layers) layers, d_model \(options.config.dModel), \(options.config.steps) steps of \(options.config.batch)×\(options.config.seqLen))")
                                           },
                                           onTrainLog: { m in
                                               progress(Progress(stage: .games, done: m.step, total: options.config.steps,
                                                                 status: String(format: "%@: loss %.3f", current, m.trainLoss),
                                                                 milestone: m.valLoss != nil))
                                           })
        }

        // 6. SmolLM2-135M, when it is cached or can be fetched within the budget.
        var smollm2: ModelAnalysis?
        var smollm2Skipped: String?
        let elapsed = Date().timeIntervalSince(started)
        let decision = smolLM2Decision(plan: plan, skip: options.skipSmolLM2, offline: text.offline,
                                       cached: options.store.path(of: "smollm2-135m") != nil,
                                       secondsLeft: plan.budgetSeconds - elapsed,
                                       slowdown: slowdown(plan: plan, finished: records.map { ($0.stage, $0.seconds) }))
        switch decision {
        case .skip(let reason):
            smollm2Skipped = reason
        case .run(let fetch):
            smollm2 = try timed(.smollm2, folder: "smollm2") { () throws -> ModelAnalysis? in
                let loaded: (model: Transformer, tokenizer: any Tokenizer)
                var name = "smollm2-135m"
                do {
                    if fetch { log("smollm2-135m: not cached; fetching it (~270 MB)") }
                    let location = try ModelSource.locate("smollm2-135m", store: options.store, log: log)
                    name = ModelSource.label(location)
                    loaded = (try ModelSource.load(location), try Tokenizers.load("smollm2-135m", store: options.store))
                } catch {
                    smollm2Skipped = "unavailable: " + shortReason(error)
                    return nil
                }
                let tokens = loaded.tokenizer.encode(heldOutText)
                var analysis = try analyse(loaded.model, tokenizer: loaded.tokenizer, source: name, tokens: tokens,
                                           heldOutText: heldOutText, plan: plan.smollm2, seed: plan.seed,
                                           folder: out.appendingPathComponent("smollm2"), relativeTo: out, stage: .smollm2,
                                           log: log, progress: progress)
                analysis.name = name
                return analysis
            }
        }
        if let reason = smollm2Skipped {
            log("smollm2-135m: skipped (\(reason))")
            if let i = records.firstIndex(where: { $0.stage == .smollm2 }) { records.remove(at: i) }
            records.append(StageRecord(stage: .smollm2, folder: nil, seconds: 0, skipped: true, note: reason))
        }

        // 7. The summary, then the report over every folder (headed by the summary's table), then
        // the summary again with the report's time.
        let reportURL = out.appendingPathComponent(Report.defaultFile)
        guard let vanilla = gap.flow(GradientFlow.vanilla.description), let myopic = gap.flow(GradientFlow.myopic.description),
              let difference = gap.gap else {
            throw InputError.missing(file: textOut.appendingPathComponent(Gap.summaryFile).path, field: "flows vanilla, myopic and gap")
        }
        let textSummary = TextSummary(
            data: text.name, steps: config.steps, seeds: plan.textSeeds,
            valLoss: FlowPair(vanilla: vanilla.valLoss, myopic: myopic.valLoss), gap: difference.valLoss,
            unigramLoss: TokenStatistics.unigramCrossEntropy(train: dataset.train, eval: dataset.validation, vocabSize: ByteTokenizer().vocabSize),
            futureGradientShare: futureShare, analysis: analysis)
        var summary = Summary(seed: options.seed, quick: options.quick, offline: text.offline, offlineReason: text.reason,
                              data: text.name, steps: config.steps, valLoss: vanilla.valLoss.mean,
                              seconds: Date().timeIntervalSince(started), budgetSeconds: plan.budgetSeconds,
                              cores: ProcessInfo.processInfo.activeProcessorCount, loadAverageStart: loadStart,
                              loadAverageEnd: loadAverage(), stages: records, sine: sine, text: textSummary,
                              games: GamesDigest(games, folder: gamesFolder),
                              smollm2: smollm2, smollm2Skipped: smollm2Skipped, report: reportURL.path)
        try LabFiles.writeJSON(summary, to: out.appendingPathComponent(summaryFile))
        try timed(.report, folder: nil) {
            var folders = [out.appendingPathComponent("sine").appendingPathComponent(sineRunName(.vanilla)),
                           out.appendingPathComponent("sine").appendingPathComponent(sineRunName(.myopic)), textOut,
                           Gap.runFolder(textOut, flow: .vanilla, seed: firstSeed), Gap.runFolder(textOut, flow: .myopic, seed: firstSeed),
                           gamesOut]
            if smollm2 != nil { folders.append(out.appendingPathComponent("smollm2")) }
            let html = try Report.build(runs: folders, title: "Myopia demo", file: reportURL)
            try AtomicFile.write(Data(html.utf8), to: reportURL)
        }
        summary.stages = records
        summary.seconds = Date().timeIntervalSince(started)
        try LabFiles.writeJSON(summary, to: out.appendingPathComponent(summaryFile))
        return summary
    }

    // MARK: - Data

    struct TextSource {
        var data: Data
        var name: String
        var offline: Bool
        var reason: String?
    }

    /// tiny-shakespeare from the cache or the registry; offline synthetic text (one line saying so)
    /// when neither can provide it, or with `--offline`.
    static func loadText(_ options: Options, plan: Plan, log: (String) -> Void) throws -> TextSource {
        let reason: String
        if options.offline {
            reason = "--offline"
        } else {
            do {
                let url = try AssetStore.resolveDataPath("tinyshakespeare", store: options.store, log: log)
                do {
                    return TextSource(data: try Data(contentsOf: url), name: "tinyshakespeare", offline: false, reason: nil)
                } catch {
                    throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
                }
            } catch let error as InputError where error.isUnavailable {
                reason = shortReason(error)
            }
        }
        log("offline: tiny-shakespeare is not available (\(reason)); the text stages train on offline synthetic text")
        let text = SyntheticText.generate(bytes: plan.syntheticBytes, seed: options.seed)
        return TextSource(data: Data(text.utf8), name: SyntheticText.sourceName, offline: true, reason: reason)
    }

    /// One short clause for an asset that could not be had (pip's own output can run to many lines).
    static func shortReason(_ error: Error) -> String {
        let text: String
        switch error as? InputError {
        case .fetchFailed(_, let reason)? where reason.contains("could not be reached"):
            return "no package registry could be reached"
        case .toolUnavailable(_, let tool, _)?:
            return "\(tool) is not available to download it"
        default:
            text = "\(error)"
        }
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? text
        return line.count > 160 ? String(line.prefix(157)) + "…" : line
    }

    // MARK: - Sine task

    /// A sine run's folder inside `sine/`.
    public static func sineRunName(_ flow: GradientFlow) -> String { "sine-\(flow)" }

    static func runSine(_ plan: Plan, out: URL, log: (String) -> Void, progress: (Progress) -> Void) throws -> SineSummary {
        var results: [SineExperiment.Result] = [], offsets: [[Double]] = [], lag0: [[Double]] = []
        for flow in [GradientFlow.vanilla, .myopic] {
            var options = plan.sine
            options.flow = flow
            options.seed = plan.seed
            let folder = out.appendingPathComponent(sineRunName(flow))
            progress(Progress(stage: .sine, done: 0, total: options.steps, status: "\(flow): starting", milestone: false))
            log("sine: training \(flow) (\(options.layers) layers, d_model \(options.dModel), \(options.steps) steps of \(options.batch)×\(options.seqLen))")
            let result = try SineExperiment.run(options, out: folder, onLog: { m in
                let val = m.valLoss.map { String(format: " val %.4f", $0) } ?? ""
                progress(Progress(stage: .sine, done: m.step, total: options.steps,
                                  status: String(format: "%@: loss %.4f%@", flow.description, m.trainLoss, val),
                                  milestone: m.valLoss != nil))
            })
            let model = try Checkpoint.loadModel(from: URL(fileURLWithPath: result.checkpoint))
            // Both flows are measured on the same fresh sequences.
            var rng = SeededGenerator(seed: plan.seed ^ 0x0005_1E0F_5EED)
            let horizonData = options.task.makeBatch(batch: plan.sineHorizonSequences, seqLen: options.seqLen, rng: &rng)
            let horizon = Horizon.compute(model, sine: horizonData)
            let record = AnalysisRecord(command: "demo", model: result.checkpoint, data: "sine task (fresh sequences)",
                                        settings: ["p": "\(options.task.p)", "frequency": "\(options.task.frequency)",
                                                   "seq_len": "\(options.seqLen)", "seed": "\(plan.seed)"])
            try RunFolder.write(horizon, as: HorizonTable.fileName, record: record, to: folder)
            let probeData = options.task.makeBatch(batch: plan.sineProbeSequences, seqLen: options.seqLen, rng: &rng)
            let probe = SineProbes.compute(model, data: probeData, lags: plan.sineProbeLags, seed: plan.seed)
            try RunFolder.write(probe, as: SineProbeTable.fileName, record: record, to: folder)
            guard let lagZero = probe.lags.firstIndex(of: 0) else {
                throw InputError.missing(file: folder.appendingPathComponent(SineProbeTable.fileName).path, field: "lags (lag 0)")
            }
            log(String(format: "sine %@: validation %.4f, %.3f × the floor %.4f", flow.description, result.valLoss, result.ratio, result.floorLoss))
            results.append(result)
            offsets.append(horizon.meanOffset)
            lag0.append(probe.r2.map { $0[lagZero] })
        }
        return SineSummary(p: plan.sine.task.p, frequency: plan.sine.task.frequency, steps: results[0].steps,
                           floorLoss: results[0].floorLoss, predictZeroLoss: results[0].predictZeroLoss,
                           valLoss: FlowPair(vanilla: results[0].valLoss, myopic: results[1].valLoss),
                           ratio: FlowPair(vanilla: results[0].ratio, myopic: results[1].ratio),
                           horizonMeanOffset: FlowPair(vanilla: offsets[0], myopic: offsets[1]),
                           lag0R2: FlowPair(vanilla: lag0[0], myopic: lag0[1]))
    }

    // MARK: - Analyses of a language model

    /// A prompt from held-out text — the line after its first blank line (a speaker's name in
    /// tiny-shakespeare), else its second line, else its start — cut to `maxPromptCharacters`, and
    /// the text that follows it: the real continuation the teacher-forced loss is scored on.
    public static func promptAndReference(in text: String, maxPromptCharacters: Int = 48) -> (prompt: String, reference: String) {
        let head = text.prefix(8192)
        var start = head.range(of: "\n\n")?.upperBound ?? head.range(of: "\n")?.upperBound ?? text.startIndex
        if start == text.endIndex { start = text.startIndex }
        let rest = text[start...]
        var end = rest.firstIndex(of: "\n").map { text.index(after: $0) } ?? rest.endIndex
        if text.distance(from: start, to: end) > maxPromptCharacters {
            end = text.index(start, offsetBy: maxPromptCharacters)
        }
        return (String(text[start..<end]), String(text[end...]))
    }

    /// Horizon, probes, logit lens and a generation study of `model` on `tokens` (held-out text),
    /// each written into `folder` under the file name `myopia report` looks for.
    static func analyse(_ model: Transformer, tokenizer: any Tokenizer, source: String, tokens: [Int32], heldOutText: String,
                        plan a: AnalysisPlan, seed: UInt64, folder: URL, relativeTo root: URL, stage: Stage,
                        log: (String) -> Void, progress: (Progress) -> Void) throws -> ModelAnalysis {
        let started = Date()
        let t = a.seqLen, config = model.config
        guard t <= config.maxPositions else {
            throw InputError.invalidValue(file: source, field: "seq_len", expected: "at most the model's \(config.maxPositions) positions", found: "\(t)")
        }
        guard TokenDataset.windows(tokens, seqLen: t) >= 2 else {
            throw InputError.invalidValue(file: source, field: "(held-out text)", expected: "at least 2 windows of \(t + 1) tokens",
                                           found: "\(tokens.count) tokens")
        }
        let layers = a.layers ?? Array(0...config.nLayers)
        guard !layers.isEmpty, layers.allSatisfy({ (0...config.nLayers).contains($0) }) else {
            throw InputError.invalidValue(file: source, field: "layers", expected: "residual streams in 0…\(config.nLayers)", found: "\(layers)")
        }
        try LabFiles.createDirectory(folder)
        /// Writes a result where `myopia report` finds it, with how it was made (commands.json).
        @discardableResult
        func save<T: Encodable>(_ result: T, as fileName: String, since: Date, _ settings: [String: String]) throws -> URL {
            let record = AnalysisRecord(command: "demo", model: source, data: "held-out text",
                                        settings: settings.merging(["seq_len": "\(t)", "seed": "\(seed)"]) { a, _ in a },
                                        seconds: Date().timeIntervalSince(since))
            return try RunFolder.write(result, as: fileName, record: record, to: folder)
        }
        func report(_ what: String, _ done: Int, _ total: Int) {
            progress(Progress(stage: stage, done: done, total: total, status: "\(source): \(what)", milestone: done == total))
        }

        var stepStarted = Date()
        report("horizon", 0, a.horizonSequences)
        log("\(source): gradient horizon (\(a.horizonSequences) windows of \(t), offsets 0…\(a.horizonMaxOffset))")
        let horizon = Horizon.compute(model, tokens: tokens, seqLen: t, maxOffset: a.horizonMaxOffset,
                                      sequences: a.horizonSequences, flow: .vanilla, progress: { report("horizon", $0, $1) })
        try save(horizon, as: HorizonTable.fileName, since: stepStarted,
                 ["sequences": "\(a.horizonSequences)", "max_offset": "\(a.horizonMaxOffset)"])

        stepStarted = Date()
        report("probe hidden states", 0, 1)
        log("\(source): probes (layers \(layers.map(String.init).joined(separator: ",")), offsets \(a.probeOffsets.map(String.init).joined(separator: ",")), \(a.probePositions) positions)")
        let data = TokenProbes.extract(model, tokens: tokens, seqLen: t, layers: layers, offsets: a.probeOffsets,
                                       positions: a.probePositions, progress: { report("probe hidden states", $0, $1) })
        var settings = ProbeSettings()
        settings.batch = a.probeBatch
        settings.seed = seed
        let probe = TokenProbes.run(data, layers: layers, offsets: a.probeOffsets, top: a.probeTop, settings: settings)
        let probeFile = try save(probe, as: ProbeTable.fileName, since: stepStarted,
                                 ["layers": layers.map(String.init).joined(separator: ","),
                                  "offsets": a.probeOffsets.map(String.init).joined(separator: ","),
                                  "positions": "\(a.probePositions)", "top": "\(a.probeTop)"])

        stepStarted = Date()
        report("logit lens", 0, a.lensWindows)
        log("\(source): logit lens (\(a.lensWindows) windows)")
        let lens = LogitLens.compute(model, tokens: tokens, seqLen: t, layers: layers, offsets: a.lensOffsets,
                                     windows: a.lensWindows, progress: { report("logit lens", $0, $1) })
        try save(lens, as: LensTable.fileName, since: stepStarted,
                 ["layers": layers.map(String.init).joined(separator: ","),
                  "offsets": a.lensOffsets.map(String.init).joined(separator: ","), "windows": "\(a.lensWindows)"])

        stepStarted = Date()
        let (prompt, referenceText) = promptAndReference(in: heldOutText)
        let reference = Array(tokenizer.encode(referenceText).prefix(a.maxTokens))
        report("generation", 0, a.samples)
        log("\(source): generation study (\(a.samples) samples of \(a.maxTokens) tokens after \(prompt.debugDescription))")
        let v = Int32(config.vocabSize)
        let eos = (tokenizer.endOfText ?? config.eosTokenID.map { Int32($0) }).flatMap { (0..<v).contains($0) ? $0 : nil }
        let sampling = SamplingOptions(temperature: a.temperature, topK: a.topK, seed: seed, maxTokens: a.maxTokens, stopToken: eos)
        let study = GenerationStudy.run(model, tokenizer: tokenizer, source: source, prompt: prompt, options: sampling,
                                        count: a.samples, reference: reference.isEmpty ? nil : ("held-out continuation", reference),
                                        onSample: { report("generation", $0, a.samples) })
        try save(study, as: GenerationStudy.fileName, since: stepStarted,
                 ["samples": "\(a.samples)", "max_tokens": "\(a.maxTokens)", "temperature": "\(a.temperature)",
                  "top_k": a.topK.map(String.init) ?? "none"])

        let probeOffset = a.probeOffsets.firstIndex(of: 1) ?? 0
        let scored = probe.loss.indices.filter { probe.loss[$0][probeOffset].isFinite }
        guard let best = scored.min(by: { probe.loss[$0][probeOffset] < probe.loss[$1][probeOffset] }) else {
            throw InputError.invalidValue(file: probeFile.path, field: "loss", expected: "a finite held-out loss for some layer", found: "none")
        }
        let m = study.metrics
        let relative = folder.path.hasPrefix(root.path + "/") ? String(folder.path.dropFirst(root.path.count + 1)) : folder.path
        return ModelAnalysis(
            folder: relative, horizonMeanOffset: horizon.meanOffset,
            probe: ProbeSummary(offset: a.probeOffsets[probeOffset], bestLayer: probe.layers[best], bestLoss: probe.loss[best][probeOffset],
                                bestAccuracy: probe.accuracy[best][probeOffset], currentTokenLoss: probe.currentTokenLoss[probeOffset],
                                unigramLoss: probe.unigramLoss[probeOffset]),
            lens: LensSummary(layer: lens.layers[lens.layers.count - 1], loss: lens.loss[lens.layers.count - 1], offsets: lens.offsets),
            generation: GenerationSummary(samples: m.samples, tokens: m.tokens, loopShare: m.loop_share.value ?? 0,
                                          distinct2: m.distinct.first { $0.n == 2 }?.pooled, freeRunningLoss: m.free_running.loss,
                                          teacherForcedLoss: m.teacher_forced.value?.loss),
            seconds: Date().timeIntervalSince(started))
    }

    /// ‖g_future‖ / ‖g_vanilla‖ over all parameter groups (they partition the parameters, so the
    /// squared norms add), averaged over the steps of `run`'s metrics.jsonl that logged the split.
    static func futureGradientShare(_ run: URL) throws -> Double {
        let file = run.appendingPathComponent(Trainer.metricsFile)
        let text: String
        do { text = try String(contentsOf: file, encoding: .utf8) } catch {
            throw InputError.io(file: file.path, reason: "cannot read: \(error.localizedDescription)")
        }
        var ratios: [Double] = []
        for (n, line) in text.split(separator: "\n").enumerated() {
            let m: TrainMetrics
            do { m = try JSONDecoder().decode(TrainMetrics.self, from: Data(line.utf8)) } catch {
                throw InputError.invalidHeader(file: file.path, field: "line \(n + 1)", reason: "\(error)")
            }
            guard let split = m.gradientSplit else { continue }
            // Summed in key order: a dictionary's own order differs between instances, and so would the last bit.
            let groups = split.keys.sorted().compactMap { split[$0] }
            let future = groups.reduce(0) { $0 + $1.futureNorm * $1.futureNorm }
            let vanilla = groups.reduce(0) { $0 + $1.vanillaNorm * $1.vanillaNorm }
            if vanilla > 0 { ratios.append((future / vanilla).squareRoot()) }
        }
        guard !ratios.isEmpty else { throw InputError.missing(file: file.path, field: "gradient_split") }
        return ratios.reduce(0, +) / Double(ratios.count)
    }

    /// The 1, 5 and 15 minute load averages (empty where the system does not say).
    static func loadAverage() -> [Double] {
        var values = [Double](repeating: 0, count: 3)
        let n = getloadavg(&values, 3)
        return n > 0 ? Array(values.prefix(Int(n))) : []
    }
}

extension InputError {
    /// An asset that could not be obtained (no registry, no pip), as opposed to a broken one.
    var isUnavailable: Bool {
        switch self {
        case .fetchFailed, .toolUnavailable: return true
        default: return false
        }
    }
}
