import Foundation

/// What a run saves beside each checkpoint so that `--resume` continues the same curve bit for bit.
public struct TrainerState: Codable, Equatable, Sendable {
    /// Updates done so far.
    public var step: Int
    /// The batcher's generator state: the data position.
    public var rng: [UInt64]
    public var tokensSeen: Int
    public var config: TrainConfig

    enum CodingKeys: String, CodingKey {
        case step, rng, config
        case tokensSeen = "tokens_seen"
    }
}

/// One logged step, as written to `metrics.jsonl`.
public struct TrainMetrics: Codable, Equatable, Sendable {
    public var step: Int
    public var trainLoss: Double
    public var valLoss: Double?
    public var lr: Double
    public var gradNorm: Double
    public var tokensPerSecond: Double
    public var msPerStep: Double
    /// At `log_gradient_split` steps: per parameter group, g_myopic and g_future on this step's batch.
    public var gradientSplit: [String: GradientSplitStats]?

    enum CodingKeys: String, CodingKey {
        case step, lr
        case trainLoss = "train_loss", valLoss = "val_loss", gradNorm = "grad_norm"
        case tokensPerSecond = "tokens_per_s", msPerStep = "ms_per_step", gradientSplit = "gradient_split"
    }
}

public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case nonFinite(step: Int, what: String, lastCheckpoint: String?)
    case resumeMismatch(file: String, field: String, saved: String, requested: String)
    case dataTooShort(file: String, tokens: Int, needed: Int, part: String)

    public var description: String {
        switch self {
        case .nonFinite(let step, let what, let last):
            return "training stopped at step \(step): \(what) is not finite; last good checkpoint: \(last ?? "none")"
        case .resumeMismatch(let file, let field, let saved, let requested):
            return "\(file): cannot resume: \(field) was \(saved) in the saved run, \(requested) now"
        case .dataTooShort(let file, let tokens, let needed, let part):
            return "\(file): the \(part) split has \(tokens) tokens, fewer than one window of \(needed)"
        }
    }
}

/// Trains a model on a token dataset, logging to `metrics.jsonl` and writing `checkpoint-STEP`
/// folders into `out`.
public final class Trainer {
    public let config: TrainConfig
    public let model: Transformer
    public let dataset: TokenDataset
    public let out: URL
    public private(set) var step = 0
    public private(set) var tokensSeen = 0
    public var keepCheckpoints = 2
    var batcher: Batcher
    let cache: ActivationCache

    public static let metricsFile = "metrics.jsonl"
    public static let runConfigFile = "run_config.json"

    /// A new run, or with `resume`, the continuation of the newest checkpoint in `out`.
    public init(config: TrainConfig, dataset: TokenDataset, out: URL, vocabSize: Int = 256,
                tokenizer: String = ByteTokenizer.name, resume: Bool = false) throws {
        try config.validate()
        for (part, tokens) in [("training", dataset.train), ("validation", dataset.validation)]
            where tokens.count < config.seqLen + 1 {
            throw TrainingError.dataTooShort(file: dataset.source, tokens: tokens.count, needed: config.seqLen + 1, part: part)
        }
        self.config = config
        self.dataset = dataset
        self.out = out
        batcher = Batcher(batch: config.batch, seqLen: config.seqLen, seed: config.seed)
        if resume, let latest = try? Checkpoint.latestCheckpoint(in: out) {
            model = try Checkpoint.loadModel(from: latest)
            try Checkpoint.loadOptimizer(into: model.params, from: latest)
            let stateURL = latest.appendingPathComponent(Checkpoint.stateFile)
            let state: TrainerState
            do { state = try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: stateURL)) } catch {
                throw FormatError.invalidHeader(file: stateURL.path, field: "(json)", reason: "\(error)")
            }
            var saved = state.config, now = config
            saved.steps = 0; now.steps = 0
            saved.evalEvery = 0; now.evalEvery = 0
            saved.logEvery = 0; now.logEvery = 0
            saved.checkpointEvery = 0; now.checkpointEvery = 0
            saved.logGradientSplit = 0; now.logGradientSplit = 0
            if saved != now {
                throw TrainingError.resumeMismatch(file: stateURL.path, field: "config", saved: "\(state.config)", requested: "\(config)")
            }
            guard let rng = SeededGenerator(state: state.rng) else {
                throw FormatError.invalidValue(file: stateURL.path, field: "rng", expected: "four words, not all zero", found: "\(state.rng)")
            }
            batcher.rng = rng
            step = state.step
            tokensSeen = state.tokensSeen
            try Self.truncateMetrics(in: out, after: step)
        } else {
            model = Transformer(config: config.modelConfig(vocabSize: vocabSize, tokenizer: tokenizer))
            model.initialize(seed: config.seed)
        }
        model.flow = config.flow
        cache = model.makeCache(batch: config.batch, seqLen: config.seqLen)
    }

    /// Runs to `config.steps` (or stops early after step `stoppingAfter`, as an interrupted run would,
    /// saving a checkpoint there), calling `onLog` at each logged step; returns the last metrics.
    @discardableResult
    public func run(stoppingAfter: Int? = nil, onLog: (TrainMetrics) -> Void = { _ in }) throws -> TrainMetrics? {
        try Checkpoint.createDirectory(out)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(config), to: out.appendingPathComponent(Self.runConfigFile))
        let metricsURL = out.appendingPathComponent(Self.metricsFile)
        if !FileManager.default.fileExists(atPath: metricsURL.path) {
            FileManager.default.createFile(atPath: metricsURL.path, contents: nil)
        }
        let metrics = try FileHandle(forWritingTo: metricsURL)
        defer { try? metrics.close() }
        try metrics.seekToEnd()

        let t = config.seqLen, b = config.batch
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        let schedule = config.schedule, optimizer = config.optimizer
        var last: TrainMetrics?
        var lastCheckpoint: URL? = try Checkpoint.latestCheckpoint(in: out)
        var windowLoss = 0.0, windowSteps = 0, windowStart = DispatchTime.now().uptimeNanoseconds
        let lineEncoder = JSONEncoder()
        lineEncoder.outputFormatting = [.sortedKeys]

        let stop = min(config.steps, stoppingAfter ?? config.steps)
        while step < stop {
            batcher.next(from: dataset.train, inputs: &inputs, targets: &targets)
            // The split costs two extra forward/backward passes, on the logged steps only.
            var split: [String: GradientSplitStats]?
            if config.logGradientSplit > 0 && (step + 1) % config.logGradientSplit == 0 {
                split = GradientSplit.measure(model) {
                    model.params.zeroGrads()
                    model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
                    model.backward(cache: cache)
                }
            }
            model.params.zeroGrads()
            let loss = model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache) ?? .nan
            guard loss.isFinite else {
                throw TrainingError.nonFinite(step: step + 1, what: "the training loss", lastCheckpoint: lastCheckpoint?.path)
            }
            model.backward(cache: cache)
            let norm = GradientClipping.clip(model.params, maxNorm: config.clip)
            guard norm.isFinite else {
                throw TrainingError.nonFinite(step: step + 1, what: "the gradient norm", lastCheckpoint: lastCheckpoint?.path)
            }
            let lr = schedule.rate(at: step)
            optimizer.update(model.params, lr: lr, step: step + 1)
            step += 1
            tokensSeen += b * t
            windowLoss += Double(loss)
            windowSteps += 1

            let isLast = step == config.steps
            if step % config.logEvery == 0 || step % config.evalEvery == 0 || isLast || split != nil {
                let now = DispatchTime.now().uptimeNanoseconds
                let seconds = Double(now - windowStart) / 1e9
                var m = TrainMetrics(step: step, trainLoss: windowLoss / Double(windowSteps), valLoss: nil, lr: lr,
                                     gradNorm: norm, tokensPerSecond: Double(windowSteps * b * t) / seconds,
                                     msPerStep: 1000 * seconds / Double(windowSteps), gradientSplit: split)
                if step % config.evalEvery == 0 || isLast {
                    m.valLoss = Evaluation.run(model, tokens: dataset.validation, seqLen: t, batch: b,
                                               maxWindows: config.evalWindows, cache: cache).loss
                }
                try metrics.write(contentsOf: try lineEncoder.encode(m) + Data("\n".utf8))
                onLog(m)
                last = m
                windowLoss = 0; windowSteps = 0
                windowStart = DispatchTime.now().uptimeNanoseconds
            }
            if step % config.checkpointEvery == 0 || isLast || step == stop {
                lastCheckpoint = try saveCheckpoint()
            }
        }
        return last
    }

    /// Writes `checkpoint-STEP` atomically: into a hidden temporary folder, then renamed.
    @discardableResult
    public func saveCheckpoint() throws -> URL {
        let fm = FileManager.default
        let final = out.appendingPathComponent("checkpoint-\(step)")
        let temp = out.appendingPathComponent(".checkpoint-\(step).partial")
        try? fm.removeItem(at: temp)
        try Checkpoint.saveModel(model, to: temp)
        try Checkpoint.saveOptimizer(model.params, to: temp)
        let state = TrainerState(step: step, rng: batcher.rng.state, tokensSeen: tokensSeen, config: config)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(state), to: temp.appendingPathComponent(Checkpoint.stateFile))
        try? fm.removeItem(at: final)
        do { try fm.moveItem(at: temp, to: final) } catch {
            throw FormatError.io(file: final.path, reason: "cannot move the checkpoint into place: \(error.localizedDescription)")
        }
        try pruneCheckpoints()
        return final
    }

    private func pruneCheckpoints() throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
        let steps = names.compactMap { $0.hasPrefix("checkpoint-") ? Int($0.dropFirst("checkpoint-".count)) : nil }.sorted()
        for s in steps.dropLast(keepCheckpoints) {
            try? FileManager.default.removeItem(at: out.appendingPathComponent("checkpoint-\(s)"))
        }
    }

    /// Drops metrics lines logged after `step` (a resumed run rewrites them).
    static func truncateMetrics(in out: URL, after step: Int) throws {
        let url = out.appendingPathComponent(metricsFile)
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard let data = line.data(using: .utf8),
                  let m = try? JSONDecoder().decode(TrainMetrics.self, from: data) else { return false }
            return m.step <= step
        }
        try AtomicFile.write(Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8), to: url)
    }
}
