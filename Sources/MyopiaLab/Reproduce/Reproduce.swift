import Foundation
import Myopia

/// `myopia reproduce wu2024`: the headline figures of Wu, Morris & Levine 2024 beside what Myopia
/// measures here, at the scale a budget allows. A fixed plan (ReproducePlan.swift) written to
/// plan.json, then its sections, each in its own folder of the output folder:
///
///     sine-pP-fF/        the synthetic task, vanilla and myopic over seeds, losses over the
///                        no-pre-caching floor, regression probes of sin(f·x_{n−i}) by layer
///     text-gap/          the myopia gap with the GPT-2 tokenizer, T 64: vanilla, myopic and the
///                        transformer bigram over ≥ 3 seeds (gap.json), kept checkpoints
///     dynamics/          (marker) dynamics.json of the text gap's first vanilla run, in its folder
///     bonus/             the local myopia bonus from the text gap's first vanilla model
///     pretrained-gap/    SmolLM2-135M-Instruct (Q4_1): vanilla and myopic fine-tunes
///     pretrained-bonus/  its local myopia bonus
///
/// A finished section leaves `section.json`; a rerun into the same folder with the same plan reads
/// it instead of redoing the section, and continues an interrupted one from its checkpoints (the
/// trainer resumes bit for bit), so an interrupted and resumed run gives the same figures as an
/// uninterrupted one. Then reproduce.json (ReproduceRows.swift) and report.html (ReproduceReport.swift).
public enum Reproduce {
    public struct Options: Sendable {
        public var out: URL
        public var tier: Tier
        /// The budget asked for, in seconds (recorded; the tier decides the work).
        public var budget: Double?
        public var seed: UInt64
        public var store: AssetStore

        public init(out: URL, tier: Tier, budget: Double? = nil, seed: UInt64 = 1, store: AssetStore = AssetStore()) {
            self.out = out
            self.tier = tier
            self.budget = budget
            self.seed = seed
            self.store = store
        }
    }

    /// What `progress` reports: `done` of `total` within a part (one training run) of a section.
    public struct Progress: Sendable {
        public var section: String
        public var done: Int
        public var total: Int
        public var status: String
        public var milestone: Bool
    }

    /// What a finished section leaves (section.json): how long it took, what it measured at which
    /// scale, or why it could not run.
    public struct SectionRecord: Codable, Equatable, Sendable {
        public var section: String
        public var seconds: Double
        /// Why the section could not be measured here (nil: it was).
        public var skipped: String?
        /// The model(s) and data, in words.
        public var model: String?
        public var data: String?
        public var scale: PaperFigures.Scale?
    }

    /// The sine section's figures over seeds (sine.json).
    public struct SineFigures: Codable, Equatable, Sendable {
        public var name: String
        public var p: Double
        public var frequency: Double
        public var seeds: [UInt64]
        public var floorLoss: Double
        public var predictZeroLoss: Double
        /// Validation loss of each seed's run.
        public var vanilla: [Double]
        public var myopic: [Double]
        public var layers: [Int]
        public var lags: [Int]
        /// Held-out R² of the probe of sin(f·x_{n−lag}), [seed][layer][lag].
        public var vanillaR2: [[[Double]]]
        public var myopicR2: [[[Double]]]

        enum CodingKeys: String, CodingKey {
            case name, p, frequency, seeds, vanilla, myopic, layers, lags
            case floorLoss = "floor_loss", predictZeroLoss = "predict_zero_loss"
            case vanillaR2 = "vanilla_r2", myopicR2 = "myopic_r2"
        }
    }

    public static let planFile = "plan.json"
    public static let resultFile = "reproduce.json"
    public static let sectionFile = "section.json"
    public static let sineFile = "sine.json"

    /// A section that cannot be measured on this machine, and why.
    struct Unmeasurable: Error { var reason: String }

    /// Runs (or resumes) the plan into `options.out`; writes reproduce.json and report.html there.
    public static func run(_ options: Options, log: @escaping (String) -> Void = { _ in },
                           progress: @escaping (Progress) -> Void = { _ in }) throws -> Table {
        let started = Date()
        let loadStart = Demo.loadAverage()
        var plan = Plan.make(options.tier, seed: options.seed, budget: options.budget)
        try plan.validate()
        let out = options.out
        try LabFiles.createDirectory(out)
        let planURL = out.appendingPathComponent(planFile)
        if FileManager.default.fileExists(atPath: planURL.path) {
            let saved: Plan
            do { saved = try RunFolder.decoder.decode(Plan.self, from: Data(contentsOf: planURL)) } catch {
                throw InputError.invalidHeader(file: planURL.path, field: "(plan)", reason: "not a reproduce plan: \(error)")
            }
            // The budget asked for may differ; the tier, seed and settings decide the work.
            var same = saved
            same.budgetSeconds = plan.budgetSeconds
            guard same == plan else {
                throw InputError.invalidValue(file: planURL.path, field: "tier, seed or settings",
                                               expected: "the plan of this command (\(plan.tier.rawValue), seed \(plan.seed)) to resume",
                                               found: "another plan (\(saved.tier.rawValue), seed \(saved.seed)); use another --out")
            }
            plan = saved
            log("resuming the plan in \(planURL.path): finished sections are reused")
        } else {
            try LabFiles.writeJSON(plan, to: planURL)
        }

        var context = Context(plan: plan, out: out, store: options.store, log: log, progress: progress)
        var records: [SectionRecord] = []
        let sections = plan.sections
        var expectedDone = 0.0, actualDone = 0.0
        for (i, section) in sections.enumerated() {
            let folder = out.appendingPathComponent(section.name)
            let expected = plan.expectedSeconds[section.name] ?? 0
            if let record = try? RunFolder.decoder.decode(SectionRecord.self, from: Data(contentsOf: folder.appendingPathComponent(sectionFile))) {
                log("[\(i + 1)/\(sections.count)] \(section): finished earlier, reused")
                records.append(record)
                continue
            }
            let slowdown = expectedDone > 0 ? min(8, max(0.25, actualDone / expectedDone)) : 1
            let left = sections[i...].reduce(0) { $0 + (plan.expectedSeconds[$1.name] ?? 0) } * slowdown
            log("[\(i + 1)/\(sections.count)] \(section): \(title(section, plan)) (about \(duration(expected * slowdown)); "
                + "about \(duration(left)) left in the plan)")
            let t0 = Date()
            var record: SectionRecord
            do {
                record = try context.run(section, folder: folder)
            } catch let skip as Unmeasurable {
                log("\(section): not measured (\(skip.reason))")
                record = SectionRecord(section: section.name, seconds: 0, skipped: skip.reason)
            }
            record.seconds = Date().timeIntervalSince(t0)
            try LabFiles.createDirectory(folder)
            try LabFiles.writeJSON(record, to: folder.appendingPathComponent(sectionFile))
            if section == .pretrainedGap || section == .pretrainedBonus { dropOptimizerStates(in: folder) }
            records.append(record)
            expectedDone += expected
            actualDone += record.seconds
            if Interruption.isRequested, i + 1 < sections.count {
                throw Interrupted(step: i + 1, steps: sections.count, checkpoint: folder.appendingPathComponent(sectionFile).path,
                                  run: "reproduce, sections (\(section) finished)")
            }
        }

        var table = try Rows.table(plan: plan, records: records, out: out)
        table.seconds = Date().timeIntervalSince(started)
        table.cores = ProcessInfo.processInfo.activeProcessorCount
        table.loadAverageStart = loadStart
        table.loadAverageEnd = Demo.loadAverage()
        try LabFiles.writeJSON(table, to: out.appendingPathComponent(resultFile))
        let reportURL = out.appendingPathComponent(Report.defaultFile)
        let html = try ReproduceReport.build(table: table, plan: plan, out: out, file: reportURL)
        try AtomicFile.write(Data(html.utf8), to: reportURL)
        log("wrote \(out.appendingPathComponent(resultFile).path) and \(reportURL.path)")
        return table
    }

    /// A finished pretrained section's fine-tunes keep their models but not their optimizer states
    /// (twice the model's size each; nothing resumes a finished section).
    static func dropOptimizerStates(in folder: URL) {
        let fm = FileManager.default
        for run in (try? fm.contentsOfDirectory(atPath: folder.path)) ?? [] {
            let runURL = folder.appendingPathComponent(run)
            for checkpoint in (try? fm.contentsOfDirectory(atPath: runURL.path)) ?? [] where checkpoint.hasPrefix("checkpoint-") {
                try? fm.removeItem(at: runURL.appendingPathComponent(checkpoint).appendingPathComponent(Checkpoint.optimizerFile))
            }
        }
    }

    static func title(_ section: Section, _ plan: Plan) -> String {
        switch section {
        case .sine(let name): return "synthetic task \(name), vanilla and myopic over \(plan.sineSeeds.count) seeds, probes by layer"
        case .textGap: return "the myopia gap on text (GPT-2 tokenizer, T \(plan.text.seqLen)), \(plan.textFlows.map(\.description).joined(separator: ", ")) over \(plan.textSeeds.count) seeds"
        case .dynamics: return "pre-caching over training: every kept checkpoint of the first vanilla run"
        case .bonus: return "the local myopia bonus over \(plan.bonusSeeds.count) seeds"
        case .pretrainedGap: return "\(plan.pretrained.label): vanilla and myopic fine-tunes"
        case .pretrainedBonus: return "\(plan.pretrained.label): the local myopia bonus"
        }
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }

    /// The first seed's vanilla run of the text gap (the dynamics' run and the bonus's reference).
    static func firstTextRun(_ plan: Plan, out: URL) -> URL {
        Gap.runFolder(out.appendingPathComponent(Section.textGap.name), flow: .vanilla, seed: plan.textSeeds[0])
    }

    /// What the sections share while the plan runs: the text data, once loaded.
    struct Context {
        var plan: Plan
        var out: URL
        var store: AssetStore
        var log: (String) -> Void
        var progress: (Progress) -> Void
        /// The text (a data name or file the run configs record), its GPT-2 tokens and the tokenizer.
        var text: (data: String, label: String, dataset: TokenDataset, tokenizer: any Tokenizer)?

        mutating func run(_ section: Section, folder: URL) throws -> SectionRecord {
            switch section {
            case .sine(let name):
                guard let spec = plan.sine.first(where: { $0.name == name }) else { throw Unmeasurable(reason: "not in the plan") }
                return try sine(spec, folder: folder)
            case .textGap: return try textGap(folder: folder)
            case .dynamics: return try dynamics(folder: folder)
            case .bonus: return try bonus(folder: folder)
            case .pretrainedGap: return try pretrained(folder: folder, bonus: false)
            case .pretrainedBonus: return try pretrained(folder: folder, bonus: true)
            }
        }

        /// Progress of one fine-tuning run of `steps` steps.
        func report(_ section: Section, _ status: String, steps: Int) -> (TrainMetrics) -> Void {
            { m in
                let val = m.valLoss.map { String(format: " val %.3f", $0) } ?? ""
                progress(Progress(section: section.name, done: m.step, total: steps, status: String(format: "%@: loss %.3f%@", status, m.trainLoss, val),
                                  milestone: m.valLoss != nil))
            }
        }

        // MARK: Sine

        func sine(_ spec: SineSpec, folder: URL) throws -> SectionRecord {
            var vanilla: [Double] = [], myopic: [Double] = [], vR2: [[[Double]]] = [], mR2: [[[Double]]] = []
            var floor = 0.0, zero = 0.0, layers: [Int] = [], parameters = 0, sequences = 0
            for seed in plan.sineSeeds {
                for flow in [GradientFlow.vanilla, .myopic] {
                    var options = spec.options
                    options.flow = flow
                    options.seed = seed
                    let run = folder.appendingPathComponent("\(flow)-seed\(seed)")
                    // A run finished before an interruption is read back, not trained again.
                    let result: SineExperiment.Result
                    if let saved = try? RunFolder.decoder.decode(SineExperiment.Result.self,
                                                                 from: Data(contentsOf: run.appendingPathComponent(SineExperiment.resultsFile))),
                       saved.steps == options.steps, FileManager.default.fileExists(atPath: run.appendingPathComponent(SineProbeTable.fileName).path) {
                        result = saved
                    } else {
                        progress(Progress(section: spec.name, done: 0, total: options.steps, status: "\(flow) seed \(seed)", milestone: false))
                        log("\(spec.name): training \(flow) seed \(seed) (\(options.layers) layers, d_model \(options.dModel), \(options.steps) steps of \(options.batch)×\(options.seqLen))")
                        result = try SineExperiment.run(options, out: run, onLog: { m in
                            progress(Progress(section: spec.name, done: m.step, total: options.steps,
                                              status: String(format: "%@ seed %llu: loss %.4f", flow.description, seed, m.trainLoss),
                                              milestone: m.valLoss != nil))
                        })
                        let model = try Checkpoint.loadModel(from: URL(fileURLWithPath: result.checkpoint))
                        // Every run of a task is probed on the same fresh sequences.
                        var rng = SeededGenerator(seed: plan.seed ^ 0x0005_1E0F_5EED)
                        let data = options.task.makeBatch(batch: plan.sineProbeSequences, seqLen: options.seqLen, rng: &rng)
                        let probe = SineProbes.compute(model, data: data, lags: plan.sineProbeLags, seed: plan.seed)
                        try RunFolder.write(probe, as: SineProbeTable.fileName, record: AnalysisRecord(
                            command: "reproduce", model: result.checkpoint, data: "sine task (fresh sequences)",
                            settings: ["p": "\(options.task.p)", "frequency": "\(options.task.frequency)", "seed": "\(plan.seed)"]), to: run)
                        log(String(format: "%@ %@ seed %llu: validation %.4f, %.3f × the floor %.4f", spec.name, flow.description, seed,
                                   result.valLoss, result.ratio, result.floorLoss))
                    }
                    guard let probe = try RunFolder.load(SineProbeTable.self, SineProbeTable.fileName, in: run) else {
                        throw InputError.missing(file: run.appendingPathComponent(SineProbeTable.fileName).path, field: "r2")
                    }
                    floor = result.floorLoss; zero = result.predictZeroLoss; layers = probe.layers
                    parameters = result.parameters; sequences = result.sequencesSeen
                    if flow == .vanilla { vanilla.append(result.valLoss); vR2.append(probe.r2) } else { myopic.append(result.valLoss); mR2.append(probe.r2) }
                    if Interruption.isRequested {
                        throw Interrupted(step: vanilla.count + myopic.count, steps: 2 * plan.sineSeeds.count, checkpoint: nil,
                                          run: "\(spec.name), runs finished (they are kept)")
                    }
                }
            }
            let figures = SineFigures(name: spec.name, p: spec.options.task.p, frequency: spec.options.task.frequency, seeds: plan.sineSeeds,
                                      floorLoss: floor, predictZeroLoss: zero, vanilla: vanilla, myopic: myopic, layers: layers,
                                      lags: plan.sineProbeLags, vanillaR2: vR2, myopicR2: mR2)
            try LabFiles.writeJSON(figures, to: folder.appendingPathComponent(sineFile))
            let o = spec.options
            return SectionRecord(section: spec.name, seconds: 0, skipped: nil,
                                 model: "2-layer regressor, d_model \(o.dModel), \(o.heads) heads",
                                 data: "x ~ N(0,1), p \(o.task.p), f \(o.task.frequency), T \(o.seqLen), fresh batches",
                                 scale: PaperFigures.Scale(parameters: parameters, sequences: sequences, tokens: sequences * o.seqLen))
        }

        // MARK: Text

        /// tiny-shakespeare (cached or fetched) with the GPT-2 tokenizer; offline synthetic text
        /// written into the output folder when tiny-shakespeare cannot be had.
        mutating func loadText() throws -> (data: String, label: String, dataset: TokenDataset, tokenizer: any Tokenizer) {
            if let text { return text }
            let tokenizer: any Tokenizer
            do { tokenizer = try Tokenizers.load(plan.text.tokenizer, store: store, log: log) } catch let error as InputError where error.isUnavailable {
                throw Unmeasurable(reason: "the GPT-2 tokenizer is not in the cache and cannot be fetched (\(Demo.shortReason(error)))")
            }
            var name = plan.text.data, label = plan.text.data
            do {
                _ = try AssetStore.resolveDataPath(name, store: store, log: log)
            } catch let error as InputError where error.isUnavailable {
                let file = out.appendingPathComponent("synthetic-text.txt")
                try AtomicFile.write(Data(SyntheticText.generate(bytes: 1_000_000, seed: plan.seed).utf8), to: file)
                log("offline: \(name) is not available (\(Demo.shortReason(error))); the text sections use offline synthetic text")
                name = file.path
                label = "offline synthetic text (\(name) was not available)"
            }
            let dataset = try DataSource.load(name, tokenizer: tokenizer, validationFraction: plan.text.validationFraction, log: log)
            text = (name, label, dataset, tokenizer)
            return (name, label, dataset, tokenizer)
        }

        mutating func textGap(folder: URL) throws -> SectionRecord {
            let text = try loadText()
            var config = plan.text
            config.data = text.data
            var current = ""
            let summary = try Gap.run(Gap.Options(config: config, seeds: plan.textSeeds, flows: plan.textFlows, out: folder, resume: true),
                                      dataset: text.dataset, tokenizer: text.tokenizer, log: { log("text-gap: " + $0) },
                                      onStart: { flow, seed in
                                          current = "\(flow) seed \(seed)"
                                          progress(Progress(section: "text-gap", done: 0, total: config.steps, status: current, milestone: false))
                                          log("text-gap: training \(current) (\(config.layers) layers, d_model \(config.dModel), \(config.steps) steps of \(config.batch)×\(config.seqLen))")
                                      },
                                      onTrainLog: { m in
                                          progress(Progress(section: "text-gap", done: m.step, total: config.steps,
                                                            status: String(format: "%@: loss %.3f", current, m.trainLoss), milestone: m.valLoss != nil))
                                      })
            // The scheduled checkpoints and the last stay: the same folders whether or not a run was
            // interrupted (an interruption's checkpoint would otherwise be kept as a rolling one).
            let keep = config.scheduledCheckpoints.union([config.steps])
            for seed in plan.textSeeds {
                for flow in plan.textFlows {
                    let run = Gap.runFolder(folder, flow: flow, seed: seed)
                    for step in try Checkpoint.checkpointSteps(in: run) where !keep.contains(step) {
                        try? FileManager.default.removeItem(at: run.appendingPathComponent("checkpoint-\(step)"))
                    }
                }
            }
            let model = try Checkpoint.loadModel(from: try latest(in: firstTextRun(plan, out: out)))
            let sequences = config.steps * config.batch
            return SectionRecord(section: Section.textGap.name, seconds: 0, skipped: nil,
                                 model: "GPT-2-style, \(config.layers) layers, d_model \(config.dModel), \(config.heads) heads",
                                 data: "\(text.label), GPT-2 tokenizer, \(config.seqLen)-token windows; validation \(summary.validationTokens) predictions",
                                 scale: PaperFigures.Scale(parameters: model.params.count, sequences: sequences, tokens: sequences * config.seqLen))
        }

        func latest(in run: URL) throws -> URL {
            guard let checkpoint = try Checkpoint.latestCheckpoint(in: run) else {
                throw InputError.missing(file: run.path, field: "checkpoint-STEP")
            }
            return checkpoint
        }

        /// Sections that read the text gap's runs cannot run where it could not.
        func requireTextGap() throws {
            let record = try? RunFolder.decoder.decode(SectionRecord.self, from: Data(contentsOf: out.appendingPathComponent(Section.textGap.name)
                .appendingPathComponent(sectionFile)))
            if let reason = record?.skipped { throw Unmeasurable(reason: "the text gap was not measured: \(reason)") }
        }

        func dynamics(folder: URL) throws -> SectionRecord {
            try requireTextGap()
            let run = firstTextRun(plan, out: out)
            try LabFiles.createDirectory(folder)
            let t0 = Date()
            let steps = try Checkpoint.checkpointSteps(in: run)
            progress(Progress(section: "dynamics", done: 0, total: steps.count, status: "measuring checkpoints", milestone: false))
            var n = 0
            let table = try Dynamics.run(run, options: plan.dynamics, log: { line in
                if line.hasPrefix("step ") {
                    n += 1
                    progress(Progress(section: "dynamics", done: n, total: steps.count, status: line, milestone: true))
                }
            })
            let o = plan.dynamics
            try RunFolder.write(table, as: DynamicsTable.fileName, record: AnalysisRecord(
                command: "reproduce", model: run.path, data: nil,
                settings: ["eval_windows": "\(o.evalWindows)", "horizon_sequences": "\(o.horizonSequences)",
                           "probe_positions": "\(o.probePositions)", "batch": "\(o.batch)"],
                seconds: Date().timeIntervalSince(t0)), to: run)
            return SectionRecord(section: Section.dynamics.name, seconds: 0, skipped: nil, model: run.lastPathComponent,
                                 data: "\(table.points.count) kept checkpoints", scale: nil)
        }

        mutating func bonus(folder: URL) throws -> SectionRecord {
            try requireTextGap()
            let text = try loadText()
            let referenceURL = try latest(in: firstTextRun(plan, out: out))
            let reference = try Checkpoint.loadModel(from: referenceURL)
            var config = plan.bonus
            config.data = text.data
            let summary = try Bonus.run(Bonus.Options(config: config, seeds: plan.bonusSeeds, out: folder, resume: true),
                                        reference: reference, referenceSource: referenceURL.path, dataset: text.dataset,
                                        log: { log("bonus: " + $0) },
                                        onStart: { flow, seed in log("bonus: fine-tuning \(flow) seed \(seed)") },
                                        onTrainLog: report(.bonus, "bonus", steps: config.steps))
            let sequences = (plan.text.steps + summary.settings.steps) * config.batch
            return SectionRecord(section: Section.bonus.name, seconds: 0, skipped: nil,
                                 model: "the text gap's vanilla seed \(plan.textSeeds[0]) model, fine-tuned \(config.steps) steps",
                                 data: "\(text.label), GPT-2 tokenizer, \(config.seqLen)-token windows",
                                 scale: PaperFigures.Scale(parameters: reference.params.count, sequences: sequences, tokens: sequences * config.seqLen))
        }

        // MARK: Pretrained

        mutating func pretrained(folder: URL, bonus: Bool) throws -> SectionRecord {
            let p = plan.pretrained
            let isPath = p.model.contains("/")
            if isPath { try requireTextGap() }
            let text = try loadText()
            var config = p.config
            config.data = text.data
            let loaded: ModelInputs.Loaded
            do {
                let name = isPath ? out.appendingPathComponent(p.model).path : p.model
                loaded = try ReferenceModel.load(name, given: ReferenceModel.Given(), config: &config, log: log)
            } catch let error as InputError where error.isUnavailable {
                throw Unmeasurable(reason: "\(p.label) is not in the cache and cannot be fetched (\(Demo.shortReason(error)))")
            } catch let error as InputError where error.field == "model size" {
                throw Unmeasurable(reason: "\(p.label) does not fit in this machine's memory: \(error)")
            }
            let (source, model, tokenizer) = loaded
            let full = try DataSource.load(text.data, tokenizer: tokenizer, validationFraction: config.validationFraction)
            // The scored windows: a prefix of the validation split (whole windows of T + 1 tokens).
            let dataset = TokenDataset(train: full.train, validation: Array(full.validation.prefix(p.validationWindows * (config.seqLen + 1))),
                                       source: full.source)
            let name = bonus ? "pretrained-bonus" : "pretrained-gap"
            if bonus {
                _ = try Bonus.run(Bonus.Options(config: config, seeds: p.seeds, out: folder, resume: true), reference: model,
                                  referenceSource: source.path, dataset: dataset, log: { log("\(name): " + $0) },
                                  onStart: { flow, seed in log("\(name): fine-tuning \(flow) seed \(seed)") },
                                  onTrainLog: report(.pretrainedBonus, name, steps: config.steps))
            } else {
                config.reference = source.path
                _ = try Gap.run(Gap.Options(config: config, seeds: p.seeds, flows: [.vanilla, .myopic], out: folder, resume: true),
                                dataset: dataset, tokenizer: tokenizer, reference: model, log: { log("\(name): " + $0) },
                                onStart: { flow, seed in log("\(name): fine-tuning \(flow) seed \(seed)") },
                                onTrainLog: report(.pretrainedGap, name, steps: config.steps))
            }
            let sequences = config.steps * config.batch
            return SectionRecord(section: name, seconds: 0, skipped: nil,
                                 model: "\(p.label), \(config.layers) layers, d_model \(config.dModel), fine-tuned \(config.steps) steps",
                                 data: "\(text.label), the model's tokenizer, \(config.seqLen)-token windows; \(p.validationWindows) validation windows",
                                 scale: PaperFigures.Scale(parameters: model.params.count, sequences: sequences, tokens: sequences * config.seqLen))
        }
    }
}
