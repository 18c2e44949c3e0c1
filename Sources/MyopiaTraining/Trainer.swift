import Foundation
import MyopiaSupport
import MyopiaModel
import MyopiaFormats
import MyopiaTokenizers
import MyopiaData
import MyopiaDistributed
import MyopiaKernels

/// What a run saves beside each checkpoint so that `--resume` continues the same curve bit for bit,
/// and the checksums that let a load tell a complete checkpoint from a damaged one.
public struct TrainerState: Codable, Equatable, Sendable {
    /// Updates done so far.
    public var step: Int
    /// The batcher's generator state: the data position.
    public var rng: [UInt64]
    public var tokensSeen: Int
    public var config: TrainConfig
    /// sha256 and size of config.json, model.safetensors and optimizer.safetensors, checked on load
    /// (absent in checkpoints written before checksums were recorded).
    public var files: [String: Checkpoint.FileChecksum]?

    enum CodingKeys: String, CodingKey {
        case step, rng, config, files
        case tokensSeen = "tokens_seen"
    }

    /// Reads and checks a checkpoint's trainer_state.json; every problem is an InputError naming
    /// the file and the field.
    public static func load(from url: URL) throws -> TrainerState {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        let state: TrainerState
        do { state = try JSONDecoder().decode(TrainerState.self, from: data) } catch let error as DecodingError {
            throw InputError.decoding(error, data: data, file: url.path)
        } catch let error as InputError {
            throw error.filed(under: url.path)   // raised inside the decoder (an unknown flow)
        } catch {
            throw InputError.invalidHeader(file: url.path, field: "(json)", reason: "\(error)")
        }
        let check = SettingsCheck(file: url.path).check
        try check(state.step >= 0, "step", "zero or more", state.step)
        try check(state.tokensSeen >= 0, "tokens_seen", "zero or more", state.tokensSeen)
        try check(SeededGenerator(state: state.rng) != nil, "rng", "four words, not all zero", state.rng)
        for (name, file) in state.files ?? [:] {
            try check(file.bytes >= 0, "files.\(name).bytes", "zero or more", file.bytes)
            try check(file.sha256.utf8.count == 64 && file.sha256.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) },
                      "files.\(name).sha256", "64 lowercase hex digits", file.sha256)
        }
        do { try state.config.validate(file: url.path) } catch let error as InputError {
            guard case .invalidValue(let file, let field, let expected, let found) = error else { throw error }
            throw InputError.invalidValue(file: file, field: "config.\(field)", expected: expected, found: found)
        }
        return state
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
    /// Under a game other than teacher forcing: what it measured over the steps since the last log
    /// (GameRunner.Statistics.logged), e.g. `next_token_loss`, `replaced_share`.
    public var game: [String: Double]?
    /// Under shards (DataParallelStep): the logged step's time in the ordered shard sum (copies,
    /// exchange, sums; ms) and the bytes this rank handed MPI for it (0 on one process).
    public var reduceMs: Double?
    public var reduceBytes: Int?

    enum CodingKeys: String, CodingKey {
        case step, lr
        case trainLoss = "train_loss", valLoss = "val_loss", gradNorm = "grad_norm"
        case tokensPerSecond = "tokens_per_s", msPerStep = "ms_per_step", gradientSplit = "gradient_split"
        case game
        case reduceMs = "reduce_ms", reduceBytes = "reduce_bytes"
    }
}

public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case nonFinite(step: Int, what: String, lastCheckpoint: String?)
    case resumeMismatch(file: String, field: String, saved: String, requested: String)
    case dataTooShort(file: String, tokens: Int, needed: Int, part: String)

    public var description: String {
        switch self {
        case .nonFinite(let step, let what, let last):
            return "training stopped at step \(step): \(what) is not finite; last good checkpoint: \(last ?? "none (no checkpoint was saved)")"
        case .resumeMismatch(let file, let field, let saved, let requested):
            return "\(file): cannot resume: \(field) was \(saved) in the saved run, \(requested) now"
        case .dataTooShort(let file, let tokens, let needed, let part):
            return "\(file): the \(part) split has \(tokens) tokens, fewer than one window of \(needed)"
        }
    }
}

/// Trains a model on a token dataset, logging to `metrics.jsonl` and TensorBoard scalars
/// (`events.out.tfevents.*`) and writing `checkpoint-STEP` folders into `out`. In an MPI job
/// (`Distributed.group`) every rank trains the same model on its shards of each batch
/// (DataParallelStep) and only rank 0 writes.
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
    /// The processes training together, and the sharded step when `config.shards` > 1 or there
    /// are several ranks (nil: the whole batch at once, through the game runner).
    public let group: any ProcessGroup
    public let dataParallel: DataParallelStep?
    /// Rank 0 writes the run folder; the other ranks only compute.
    var writes: Bool { group.rank == 0 }

    public static let metricsFile = "metrics.jsonl"
    public static let runConfigFile = "run_config.json"

    /// A new run, or with `resume`, the continuation of the newest checkpoint in `out`. With a
    /// `reference` (a trained model), a new run fine-tunes a copy of it instead of a fresh
    /// initialisation, and under the local-myopic flow the reference stays, frozen, as the source of
    /// earlier positions' keys and values (LocalMyopicTraining.swift).
    public init(config: TrainConfig, dataset: TokenDataset, out: URL, vocabSize: Int = 256,
                tokenizer: String = ByteTokenizer.name, resume: Bool = false, reference: Transformer? = nil,
                group: any ProcessGroup = Distributed.group) throws {
        try config.validate()
        try config.checkShards(ranks: group.size)
        self.group = group
        try config.checkMemory(vocabSize: vocabSize)
        try config.checkGame(vocabSize: vocabSize)
        for (part, tokens) in [("training", dataset.train), ("validation", dataset.validation)]
            where tokens.count < config.seqLen + 1 {
            throw TrainingError.dataTooShort(file: dataset.source, tokens: tokens.count, needed: config.seqLen + 1, part: part)
        }
        self.config = config
        self.dataset = dataset
        self.out = out
        batcher = Batcher(batch: config.batch, seqLen: config.seqLen, seed: config.seed)
        if resume, let latest = try? Checkpoint.latestCheckpoint(in: out) {
            // The state first: it holds the checksums the model and optimizer loads verify.
            let stateURL = latest.appendingPathComponent(Checkpoint.stateFile)
            let state = try TrainerState.load(from: stateURL)
            model = try Checkpoint.loadModel(from: latest)
            try Checkpoint.loadOptimizer(into: model.params, from: latest)
            var saved = state.config, now = config
            saved.steps = 0; now.steps = 0
            saved.evalEvery = 0; now.evalEvery = 0
            saved.logEvery = 0; now.logEvery = 0
            saved.checkpointEvery = 0; now.checkpointEvery = 0
            saved.checkpointAt = nil; now.checkpointAt = nil
            saved.logGradientSplit = 0; now.logGradientSplit = 0
            if saved.reference == nil { now.reference = nil }   // runs saved before the reference was recorded
            if saved != now {
                let (fields, before, after) = Self.differences(saved, now)
                throw TrainingError.resumeMismatch(file: stateURL.path, field: fields, saved: before, requested: after)
            }
            guard let rng = SeededGenerator(state: state.rng) else {
                throw InputError.invalidValue(file: stateURL.path, field: "rng", expected: "four words, not all zero", found: "\(state.rng)")
            }
            // A token id at or past the model's vocabulary would index outside the embedding.
            guard model.config.vocabSize == vocabSize, !model.config.isContinuous else {
                throw TrainingError.resumeMismatch(file: latest.appendingPathComponent(Checkpoint.configFile).path, field: "vocab_size",
                                                   saved: "\(model.config.vocabSize)", requested: "\(vocabSize) (the tokenizer's)")
            }
            batcher.rng = rng
            step = state.step
            tokensSeen = state.tokensSeen
            if group.rank == 0 {
                try Self.truncateMetrics(in: out, after: step)
                try TensorBoardReader.truncate(in: out, after: step)
            }
        } else if let reference {
            model = reference.copy()
        } else {
            model = Transformer(config: config.modelConfig(vocabSize: vocabSize, tokenizer: tokenizer))
            model.initialize(seed: config.seed)
        }
        // The multi-token game trains the extra heads the model carries: a model loaded to resume
        // or fine-tune must have as many.
        let heads: Int
        if case .multiToken(let n) = config.game { heads = n } else { heads = 1 }
        if model.config.predictionHeads != heads {
            let what = resume ? "the checkpoint resumed" : "the reference model"
            throw InputError.invalidValue(file: config.reference ?? out.path, field: "myopia_prediction_heads",
                                          expected: "\(heads) (game \(config.game)), which \(what) must have",
                                          found: "\(model.config.predictionHeads)")
        }
        model.flow = config.flow
        try Self.attach(reference, to: model, config: config)
        if config.shards > 1 || group.size > 1 {
            let sharded = DataParallelStep(model: model, batch: config.batch, seqLen: config.seqLen, shards: config.shards, group: group,
                                           game: config.game, seed: config.seed)
            dataParallel = sharded
            cache = sharded.cache
            runner = sharded.runner
        } else {
            dataParallel = nil
            cache = model.makeCache(batch: config.batch, seqLen: config.seqLen)
            runner = GameRunner(game: config.game, model: model, cache: cache, batch: config.batch, seqLen: config.seqLen,
                                seed: config.seed)
        }
        try Self.agree(config: config, dataset: dataset, model: model, step: step, group: group)
    }

    /// Refuses, on every rank, a job whose ranks would not compute the same thing: the settings,
    /// the data, the GEMM arithmetic, the step resumed and the starting weights must match rank 0's.
    static func agree(config: TrainConfig, dataset: TokenDataset, model: Transformer, step: Int, group: any ProcessGroup) throws {
        guard group.size > 1 else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = SHA256()
        for part in [dataset.train, dataset.validation] {
            data.update(Data("\(part.count);".utf8))
            part.withUnsafeBytes { data.update($0) }
        }
        var weights = SHA256()
        weights.update(UnsafeRawBufferPointer(start: model.params.weights, count: 4 * model.params.count))
        try Agreement.check([
            ("the settings (sha256 of run_config.json)", SHA256.hash(try encoder.encode(config))),
            ("the data (sha256 of its tokens)", data.hexDigest()),
            ("the GEMM arithmetic", GEMM.kernel == .portable ? "portable (multiply, then add)" : "fused multiply-add (avx2 and avx512 agree)"),
            ("the step resumed", "\(step)"),
            ("the starting weights (sha256)", weights.hexDigest()),
        ], in: group)
    }

    /// The training game's forward and backward passes.
    public let runner: GameRunner

    /// The training settings saved with a checkpoint folder, or with the newest checkpoint of a run
    /// folder; nil when there are none to read (a model from elsewhere, or a damaged checkpoint,
    /// which loading it reports).
    public static func recordedConfig(in folder: URL) -> TrainConfig? {
        var state = folder.appendingPathComponent(Checkpoint.stateFile)
        if !FileManager.default.fileExists(atPath: state.path) {
            guard let latest = try? Checkpoint.latestCheckpoint(in: folder) else { return nil }
            state = latest.appendingPathComponent(Checkpoint.stateFile)
        }
        return (try? TrainerState.load(from: state))?.config
    }

    /// Runs to `config.steps` (or stops early after step `stoppingAfter`, as an interrupted run would,
    /// saving a checkpoint there), calling `onLog` at each logged step; returns the last metrics.
    /// On Ctrl-C (`Interruption`) it finishes the step, saves a checkpoint and throws `Interrupted`.
    @discardableResult
    public func run(stoppingAfter: Int? = nil, onLog: (TrainMetrics) -> Void = { _ in }) throws -> TrainMetrics? {
        let metricsURL = out.appendingPathComponent(Self.metricsFile)
        var metrics: FileHandle?
        var events: TensorBoardWriter?
        if writes {
            try Self.prepareOutput(out)
            try Self.removeInterruptedSaves(in: out)
            // A run from step 0 (new, or resumed before its first checkpoint) logs from scratch.
            if step == 0 {
                try Self.truncateMetrics(in: out, after: 0)
                for file in TensorBoardReader.eventFiles(in: out) { try? FileManager.default.removeItem(at: file) }
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try AtomicFile.write(try encoder.encode(config), to: out.appendingPathComponent(Self.runConfigFile))
            if !FileManager.default.fileExists(atPath: metricsURL.path) {
                _ = FileManager.default.createFile(atPath: metricsURL.path, contents: nil)
            }
            do {
                metrics = try FileHandle(forWritingTo: metricsURL)
                try metrics?.seekToEnd()
            } catch {
                throw InputError.io(file: metricsURL.path, reason: "cannot open for appending: \(error.localizedDescription)")
            }
            // TensorBoard scalars beside metrics.jsonl: a new events file per call (a resume continues in
            // the next one; TensorBoard merges a folder's files).
            events = try TensorBoardWriter(folder: out)
        }
        defer { try? metrics?.close() }

        let t = config.seqLen, b = config.batch
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        let schedule = config.schedule
        let trainingStep = TrainingStep(model: model, optimizer: config.optimizer, clip: config.clip)
        trainingStep.afterBackward = faultHook
        var last: TrainMetrics?
        var lastCheckpoint: URL? = writes ? try Checkpoint.latestCheckpoint(in: out) : nil
        var windowLoss = 0.0, windowSteps = 0, windowStart = DispatchTime.now().uptimeNanoseconds
        var gameWindow = GameRunner.Window()
        let lineEncoder = JSONEncoder()
        lineEncoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]

        let stop = min(config.steps, stoppingAfter ?? config.steps)
        let scheduled = config.scheduledCheckpoints
        while step < stop {
            batcher.next(from: dataset.train, inputs: &inputs, targets: &targets)
            // The split costs two extra forward/backward passes, on the logged steps only.
            var split: [String: GradientSplitStats]?
            // Under shards each flow's gradient is the sharded step's: the shards' sum, the same on any N.
            if config.logGradientSplit > 0 && (step + 1) % config.logGradientSplit == 0 {
                split = GradientSplit.measure(model) {
                    if let dataParallel {
                        // Teacher-forced under any game, as the whole-batch split below.
                        _ = inputs.withUnsafeBufferPointer { x in
                            targets.withUnsafeBufferPointer { y in dataParallel.teacherForcedGradient(inputs: x.baseAddress!, targets: y.baseAddress!) }
                        }
                    } else {
                        model.params.zeroGrads()
                        model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
                        model.backward(cache: cache)
                    }
                }
            }
            let lr = schedule.rate(at: step)
            let result = try inputs.withUnsafeBufferPointer { x in
                try targets.withUnsafeBufferPointer { y in
                    if let dataParallel {
                        return try dataParallel.step(trainingStep, step: step + 1, lr: lr, inputs: x.baseAddress!,
                                                     targets: y.baseAddress!, lastCheckpoint: lastCheckpoint?.path)
                    }
                    return try runner.step(trainingStep, step: step + 1, lr: lr, inputs: x.baseAddress!, targets: y.baseAddress!,
                                           lastCheckpoint: lastCheckpoint?.path)
                }
            }
            let loss = result.loss, norm = result.gradNorm
            step += 1
            tokensSeen += b * t
            windowLoss += Double(loss)
            windowSteps += 1
            gameWindow.add(runner.last)

            let isLast = step == config.steps
            if step % config.logEvery == 0 || step % config.evalEvery == 0 || isLast || split != nil {
                let now = DispatchTime.now().uptimeNanoseconds
                let seconds = Double(now - windowStart) / 1e9
                var m = TrainMetrics(step: step, trainLoss: windowLoss / Double(windowSteps), valLoss: nil, lr: lr,
                                     gradNorm: norm, tokensPerSecond: Double(windowSteps * b * t) / seconds,
                                     msPerStep: 1000 * seconds / Double(windowSteps), gradientSplit: split,
                                     game: config.game == .teacherForced ? nil : gameWindow.logged)
                if let dataParallel {
                    m.reduceMs = 1000 * dataParallel.sum.lastSeconds
                    m.reduceBytes = dataParallel.sum.bytesPerStep
                }
                if step % config.evalEvery == 0 || isLast {
                    // Windows in batches of the cache's size (a shard's under shards), spread over the ranks.
                    m.valLoss = Evaluation.run(model, tokens: dataset.validation, seqLen: t, batch: cache.capacityB,
                                               maxWindows: config.evalWindows, cache: cache, group: group).loss
                }
                if let metrics {
                    do { try metrics.write(contentsOf: try lineEncoder.encode(m) + Data("\n".utf8)) } catch {
                        throw InputError.io(file: metricsURL.path, reason: "cannot append: \(error.localizedDescription)")
                    }
                }
                try events?.add(step: m.step, scalars: m.tensorBoardScalars)
                onLog(m)
                last = m
                windowLoss = 0; windowSteps = 0
                gameWindow = GameRunner.Window()
                windowStart = DispatchTime.now().uptimeNanoseconds
            }
            // Under the sharded step every rank has seen every rank's Ctrl-C: all stop at this step.
            let interrupted = dataParallel?.interruptRequested ?? Interruption.isRequested
            if writes && (step % config.checkpointEvery == 0 || isLast || step == stop || interrupted || scheduled.contains(step)) {
                lastCheckpoint = try saveCheckpoint()
            }
            if interrupted && !isLast {
                throw Interrupted(step: step, steps: config.steps, checkpoint: lastCheckpoint?.path)
            }
        }
        return last
    }

    /// Writes `checkpoint-STEP` atomically: every file into a hidden `.checkpoint-STEP.partial`
    /// folder (each file fsync'd, its sha256 taken as it is written and recorded in
    /// trainer_state.json, written last), then the folder is renamed into place. A kill or a full
    /// disk at any moment leaves the previous checkpoints as they were; a failed save removes its
    /// partial folder and throws.
    @discardableResult
    public func saveCheckpoint() throws -> URL {
        let fm = FileManager.default
        let final = out.appendingPathComponent("checkpoint-\(step)")
        let temp = out.appendingPathComponent(".checkpoint-\(step).partial")
        try? fm.removeItem(at: temp)
        do {
            var files = try Checkpoint.saveModel(model, to: temp)
            files.merge(try Checkpoint.saveOptimizer(model.params, to: temp)) { _, new in new }
            let state = TrainerState(step: step, rng: batcher.rng.state, tokensSeen: tokensSeen, config: config, files: files)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try encoder.encode(state), to: temp.appendingPathComponent(Checkpoint.stateFile))
            try AtomicFile.commitFolder(temp, to: final)
        } catch {
            try? fm.removeItem(at: temp)
            if error is InputError { throw error }
            throw InputError.io(file: final.path, reason: "cannot save the checkpoint: \(error.localizedDescription)")
        }
        pruneCheckpoints()
        return final
    }

    /// Keeps the newest `keepCheckpoints` and every step `checkpoint_at` names.
    private func pruneCheckpoints() {
        let scheduled = config.scheduledCheckpoints
        let steps = ((try? Checkpoint.checkpointSteps(in: out)) ?? []).filter { !scheduled.contains($0) }
        for s in steps.dropLast(keepCheckpoints) {
            try? FileManager.default.removeItem(at: out.appendingPathComponent("checkpoint-\(s)"))
        }
    }

    /// The settings two configs differ in, under their config-file names, and each side's values:
    /// ("seq_len", "8", "12").
    static func differences(_ a: TrainConfig, _ b: TrainConfig) -> (fields: String, a: String, b: String) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func object(_ c: TrainConfig) -> [String: Any] {
            (try? encoder.encode(c)).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        }
        func text(_ v: Any?) -> String {
            guard let v, !(v is NSNull) else { return "none" }
            if let data = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys]) {
                return String(decoding: data, as: UTF8.self)
            }
            return "\(v)"
        }
        let x = object(a), y = object(b)
        let keys = Set(x.keys).union(y.keys).sorted().filter { text(x[$0]) != text(y[$0]) }
        guard !keys.isEmpty else { return ("config", "\(a)", "\(b)") }
        return (keys.joined(separator: ", "), keys.map { text(x[$0]) }.joined(separator: ", "), keys.map { text(y[$0]) }.joined(separator: ", "))
    }

    /// Test hook: called after each backward pass with the step (from 1) and the model, before
    /// the gradients are checked (tests plant a NaN here).
    var faultHook: ((Int, Transformer) -> Void)?

    /// Creates the run folder (and its parents) and proves it writable with a probe file, so an
    /// unwritable `--out` is refused before a tokenizer or corpus is loaded.
    public static func prepareOutput(_ out: URL) throws {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        if fm.fileExists(atPath: out.path, isDirectory: &isFolder), !isFolder.boolValue {
            throw InputError.io(file: out.path, reason: "is a file, not a run folder")
        }
        do { try fm.createDirectory(at: out, withIntermediateDirectories: true) } catch {
            throw InputError.io(file: out.path, reason: "cannot create the run folder: \(Self.reason(error))")
        }
        let probe = out.appendingPathComponent("\(Self.probePrefix)\(ProcessInfo.processInfo.processIdentifier)")
        do {
            try AtomicFile.write(Data("probe".utf8), to: probe)
            try fm.removeItem(at: probe)
        } catch {
            try? fm.removeItem(at: probe)
            throw InputError.io(file: out.path, reason: "cannot write in the run folder: \(Self.reason(error))")
        }
    }

    private static func reason(_ error: Error) -> String {
        if let e = error as? InputError, case .io(_, let reason) = e { return reason }
        if let e = error as? CocoaError, let underlying = e.userInfo[NSUnderlyingErrorKey] as? NSError,
           underlying.domain == NSPOSIXErrorDomain {
            return "\(String(cString: strerror(Int32(underlying.code)))) (errno \(underlying.code))"
        }
        return error.localizedDescription
    }

    static let probePrefix = ".write-probe-"

    /// Removes what a killed run leaves behind: `.checkpoint-STEP.partial` folders and the
    /// temporary files of interrupted atomic writes. Complete checkpoints are never touched.
    static func removeInterruptedSaves(in out: URL) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
        for name in names where (name.hasPrefix(".checkpoint-") && name.hasSuffix(".partial")) || AtomicFile.isTemporaryName(name)
            || name.hasPrefix(Self.probePrefix) {
            try? FileManager.default.removeItem(at: out.appendingPathComponent(name))
        }
    }

    /// Drops metrics lines logged after `step` (a resumed run rewrites them).
    static func truncateMetrics(in out: URL, after step: Int) throws {
        let url = out.appendingPathComponent(metricsFile)
        guard let data = try? Data(contentsOf: url) else { return }
        let text = String(decoding: data, as: UTF8.self)   // a line cut by a kill is dropped below
        let kept = text.split(separator: "\n").filter { line in
            guard let data = line.data(using: .utf8),
                  let m = try? JSONDecoder().decode(TrainMetrics.self, from: data) else { return false }
            return m.step <= step
        }
        try AtomicFile.write(Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8), to: url)
    }
}
