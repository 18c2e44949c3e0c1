import Foundation
import Myopia

/// Trains a transformer with continuous heads on the synthetic pre-caching task (docs/DESIGN.md §5) under a
/// gradient flow, and scores it on a fixed validation set beside two exact baselines on the same
/// data: predict-zero, and the no-pre-caching floor.
///
/// Data are infinite: every step draws fresh sequences from a generator seeded by `seed`, so a run is
/// deterministic for its options (and vanilla and myopic runs with the same seed see the same
/// initialisation and the same batches). The validation sequences come from `validationSeed`,
/// independent of `seed`, so every run of one task is scored on the same data.
public enum SineExperiment {
    public struct Options: Codable, Equatable, Sendable {
        public var task = SineTask(p: 1, frequency: 3, window: SineTask.publishedWindow)
        public var flow: GradientFlow = .vanilla
        /// Wu et al.'s model: 2 layers, d_model 128, 2 heads, MLP 4×.
        public var layers = 2
        public var heads = 2
        public var dModel = 128
        public var seqLen = 64
        public var batch = 64
        public var steps = 1500
        public var lr = 3e-3
        public var minLR = 3e-4
        public var warmup = 100
        public var weightDecay = 0.01
        public var beta1 = 0.9
        public var beta2 = 0.99
        public var clip = 1.0
        public var loss: RegressionLoss = .huber
        public var seed: UInt64 = 1
        public var validationSequences = 512
        public var validationSeed: UInt64 = 1_000_003
        public var evalEvery = 250
        public var logEvery = 50
        /// Stop after the step during which this much wall time (seconds) has passed.
        public var timeLimit: Double? = nil
        /// Each batch in this many shards, added in a fixed order (DataParallelStep): the same
        /// result on one process or under mpirun -np N, N ≤ shards. 1: the whole batch at once.
        public var shards = 1

        public init() {}

        enum CodingKeys: String, CodingKey {
            case task, flow, layers, heads, steps, lr, warmup, beta1, beta2, clip, loss, seed, batch, shards
            case dModel = "d_model", seqLen = "seq_len", minLR = "min_lr", weightDecay = "weight_decay"
            case validationSequences = "validation_sequences", validationSeed = "validation_seed"
            case evalEvery = "eval_every", logEvery = "log_every", timeLimit = "time_limit"
        }

        /// Every key as written; `shards` absent (a run saved before shards) is 1.
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            task = try c.decode(SineTask.self, forKey: .task)
            flow = try c.decode(GradientFlow.self, forKey: .flow)
            layers = try c.decode(Int.self, forKey: .layers)
            heads = try c.decode(Int.self, forKey: .heads)
            dModel = try c.decode(Int.self, forKey: .dModel)
            seqLen = try c.decode(Int.self, forKey: .seqLen)
            batch = try c.decode(Int.self, forKey: .batch)
            steps = try c.decode(Int.self, forKey: .steps)
            lr = try c.decode(Double.self, forKey: .lr)
            minLR = try c.decode(Double.self, forKey: .minLR)
            warmup = try c.decode(Int.self, forKey: .warmup)
            weightDecay = try c.decode(Double.self, forKey: .weightDecay)
            beta1 = try c.decode(Double.self, forKey: .beta1)
            beta2 = try c.decode(Double.self, forKey: .beta2)
            clip = try c.decode(Double.self, forKey: .clip)
            loss = try c.decode(RegressionLoss.self, forKey: .loss)
            seed = try c.decode(UInt64.self, forKey: .seed)
            validationSequences = try c.decode(Int.self, forKey: .validationSequences)
            validationSeed = try c.decode(UInt64.self, forKey: .validationSeed)
            evalEvery = try c.decode(Int.self, forKey: .evalEvery)
            logEvery = try c.decode(Int.self, forKey: .logEvery)
            timeLimit = try c.decodeIfPresent(Double.self, forKey: .timeLimit)
            shards = try c.decodeIfPresent(Int.self, forKey: .shards) ?? 1
        }

        /// Rejects impossible settings before any work starts.
        public func validate(file: String = "flags") throws {
            let settings = SettingsCheck(file: file)
            let check = settings.check
            try task.validate(file: file)
            try settings.model(layers: layers, heads: heads, dModel: dModel, seqLen: seqLen)
            try settings.optimisation(batch: batch, steps: steps, lr: lr, minLR: minLR, warmup: warmup,
                                      weightDecay: weightDecay, beta1: beta1, beta2: beta2, clip: clip)
            try check(validationSequences > 0, "validation_sequences", "a positive integer", validationSequences)
            try check(evalEvery > 0, "eval_every", "a positive integer", evalEvery)
            try check(logEvery > 0, "log_every", "a positive integer", logEvery)
            if let timeLimit { try check(timeLimit > 0, "time_limit", "a positive number of seconds", timeLimit) }
            try check(shards >= 1 && batch % max(1, shards) == 0, "shards", "a positive divisor of batch (\(batch))", shards)
        }

        public var modelConfig: ModelConfig {
            .continuous(inputFeatures: SineTask.features, outputs: SineTask.outputs, maxPositions: seqLen,
                        dModel: dModel, nLayers: layers, nHeads: heads, loss: loss)
        }

        public var schedule: LearningRateSchedule {
            LearningRateSchedule(maxLR: lr, minLR: minLR, warmupSteps: warmup, totalSteps: steps)
        }

        /// The default run folder: runs/sine-FLOW-pP-fF (e.g. runs/sine-myopic-p0.3-f3).
        public var defaultOut: String {
            func number(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(v) }
            return "runs/sine-\(flow)-p\(number(task.p))-f\(number(task.frequency))"
        }
    }

    /// One logged step, as written to `metrics.jsonl`. The keys are a superset of a token run's
    /// (`TrainMetrics`), so `myopia report` draws a sine run's curves like any training run's.
    public struct Metrics: Codable, Equatable, Sendable {
        public var step: Int
        public var trainLoss: Double
        public var valLoss: Double?
        public var lr: Double
        public var gradNorm: Double
        /// Positions (the task's tokens) trained on per second over the logged window.
        public var tokensPerSecond: Double
        public var msPerStep: Double
        public var seconds: Double

        enum CodingKeys: String, CodingKey {
            case step, lr, seconds
            case trainLoss = "train_loss", valLoss = "val_loss", gradNorm = "grad_norm", msPerStep = "ms_per_step"
            case tokensPerSecond = "tokens_per_s"
        }
    }

    /// What `results.json` holds, and `myopia synthetic sine --json` prints.
    public struct Result: Codable, Equatable, Sendable {
        public var flow: String
        public var p: Double
        public var frequency: Double
        public var window: Int
        public var seqLen: Int
        public var batch: Int
        public var parameters: Int
        /// Steps done, and the steps planned (fewer done when the time limit stopped the run).
        public var steps: Int
        public var stepsPlanned: Int
        public var stoppedByTimeLimit: Bool
        public var sequencesSeen: Int
        public var seconds: Double
        public var msPerStep: Double
        /// Mean training loss over the last logged window of steps.
        public var trainLoss: Double
        /// Mean loss on the validation sequences, and the two baselines on the same sequences.
        public var valLoss: Double
        public var predictZeroLoss: Double
        public var floorLoss: Double
        /// valLoss / floorLoss: 0 is a perfect model, 1 a model that caches nothing.
        public var ratio: Double
        /// Validation loss at each position 0..<T (early positions have shorter windows).
        public var positionLoss: [Double]
        public var validationSequences: Int
        public var loss: String
        public var checkpoint: String

        enum CodingKeys: String, CodingKey {
            case flow, p, frequency, window, batch, parameters, steps, seconds, ratio, loss, checkpoint
            case seqLen = "seq_len", stepsPlanned = "steps_planned", stoppedByTimeLimit = "stopped_by_time_limit"
            case sequencesSeen = "sequences_seen", msPerStep = "ms_per_step", trainLoss = "train_loss"
            case valLoss = "val_loss", predictZeroLoss = "predict_zero_loss", floorLoss = "floor_loss"
            case positionLoss = "position_loss", validationSequences = "validation_sequences"
        }
    }

    public static let runConfigFile = "run_config.json"
    public static let metricsFile = "metrics.jsonl"
    public static let resultsFile = "results.json"

    /// Mean loss and per-position loss of `model` on `data`, `batch` sequences per forward. In a
    /// group of several ranks each computes a contiguous run of the batches (WindowSpans, the
    /// batches one process forms) and every rank receives every position's loss, added in sequence
    /// order: the same figures on any number of ranks. Every rank of `group` must call it.
    public static func evaluate(_ model: Transformer, on data: SineBatch, batch: Int,
                                cache reuse: ActivationCache? = nil,
                                group: any ProcessGroup = SingleProcess()) -> (loss: Double, positionLoss: [Double]) {
        let t = data.seqLen, f = SineTask.features
        let b = max(1, min(batch, data.batch))
        let cache = reuse.flatMap { $0.capacityB >= b && $0.capacityT >= t ? $0 : nil } ?? model.makeCache(batch: b, seqLen: t)
        var losses = [Float](repeating: 0, count: data.batch * t)
        let spans = WindowSpans(batches: (data.batch + b - 1) / b, batch: b, windows: data.batch, ranks: group.size)
        let mine = spans.windows(of: group.rank)
        var s = mine.lowerBound
        while s < mine.upperBound {
            let nb = min(b, mine.upperBound - s)
            let x = Array(data.features[(s * t * f)..<((s + nb) * t * f)])
            let y = Array(data.targets[(s * t)..<((s + nb) * t)])
            model.forward(features: x, targets: y, batch: nb, seqLen: t, cache: cache)
            for i in 0..<(nb * t) { losses[s * t + i] = cache.rowLoss[i] }
            s += nb
        }
        if group.size > 1 { spans.gather(&losses, rowWidth: t, group: group) }
        var total = 0.0
        var position = [Double](repeating: 0, count: t)
        for i in 0..<(data.batch * t) {
            total += Double(losses[i])
            position[i % t] += Double(losses[i])
        }
        return (total / Double(data.batch * t), position.map { $0 / Double(data.batch) })
    }

    /// Trains and evaluates, writing into `out`: run_config.json, metrics.jsonl (one line per logged
    /// step), checkpoint-STEP/ (config.json + model.safetensors of the final model) and results.json.
    /// `onLog` sees every logged step. In an MPI job (`group`) every rank draws every batch and
    /// computes its shards of it (DataParallelStep); the validation sequences are spread over the
    /// ranks (`evaluate`), and rank 0 alone writes.
    public static func run(_ options: Options, out: URL, group: any ProcessGroup = Distributed.group,
                           log: (String) -> Void = { _ in }, onLog: (Metrics) -> Void = { _ in }) throws -> Result {
        try options.validate()
        try TrainConfig.checkShards(options.shards, ranks: group.size)
        if group.size > 1, options.timeLimit != nil {
            // Each rank's clock would stop it after a step of its own.
            throw InputError.invalidValue(file: "flags", field: "time_limit", expected: "no time limit in an MPI job of \(group.size) ranks (give --steps)",
                                          found: "\(options.timeLimit!)")
        }
        let writes = group.rank == 0
        let fm = FileManager.default
        var metrics: FileHandle?
        if writes {
            do { try fm.createDirectory(at: out, withIntermediateDirectories: true) } catch {
                throw InputError.io(file: out.path, reason: "cannot create the folder: \(error.localizedDescription)")
            }
            // A rerun into the same folder replaces the previous run's files.
            for name in (try? fm.contentsOfDirectory(atPath: out.path)) ?? [] where name.hasPrefix("checkpoint-") {
                try? fm.removeItem(at: out.appendingPathComponent(name))
            }
            try? fm.removeItem(at: out.appendingPathComponent(resultsFile))
            let pretty = JSONEncoder()
            pretty.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try pretty.encode(options), to: out.appendingPathComponent(runConfigFile))
            let metricsURL = out.appendingPathComponent(metricsFile)
            guard fm.createFile(atPath: metricsURL.path, contents: nil) else {
                throw InputError.io(file: metricsURL.path, reason: "cannot create the file")
            }
            metrics = try FileHandle(forWritingTo: metricsURL)
        }
        defer { try? metrics?.close() }
        let line = JSONEncoder()
        line.outputFormatting = [.sortedKeys]

        let model = Transformer(config: options.modelConfig)
        model.initialize(seed: options.seed)
        model.flow = options.flow
        let b = options.batch, t = options.seqLen
        let sharded = options.shards > 1 || group.size > 1
            ? DataParallelStep(model: model, batch: b, seqLen: t, shards: options.shards, group: group) : nil
        let cache = sharded?.cache ?? model.makeCache(batch: b, seqLen: t)
        var validationRNG = SeededGenerator(seed: options.validationSeed)
        let validation = options.task.makeBatch(batch: options.validationSequences, seqLen: t, rng: &validationRNG)
        let predictZero = validation.predictZeroLoss(options.loss), floor = validation.floorLoss(options.loss)
        log(String(format: "%d parameters; validation: %d sequences, predict-zero %.4f, floor %.4f",
                   model.params.count, options.validationSequences, predictZero, floor))

        // The training stream is its own generator, so the data do not depend on the validation set.
        var rng = SeededGenerator(seed: options.seed ^ 0x5151_5151_5151_5151)
        let schedule = options.schedule
        let trainingStep = TrainingStep(model: model, optimizer: AdamW(beta1: options.beta1, beta2: options.beta2, weightDecay: options.weightDecay),
                                        clip: options.clip)
        let started = DispatchTime.now().uptimeNanoseconds
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 }
        var step = 0, stoppedByTime = false, interrupted = false, seconds = 0.0
        var windowLoss = 0.0, windowSteps = 0, windowStart = 0.0
        var trainLoss = Double.nan
        var final: (loss: Double, positionLoss: [Double])?
        while step < options.steps && !stoppedByTime && !interrupted {
            let data = options.task.makeBatch(batch: b, seqLen: t, rng: &rng)
            let lr = schedule.rate(at: step)
            let result: TrainingStep.Result
            if let sharded {
                result = try data.features.withUnsafeBufferPointer { x in
                    try data.targets.withUnsafeBufferPointer { y in
                        try trainingStep.run(step: step + 1, lr: lr, forward: {
                            sharded.gradient(features: x.baseAddress!, targets: y.baseAddress!, interrupted: Interruption.isRequested)
                        }, backward: {})
                    }
                }
            } else {
                result = try trainingStep.run(step: step + 1, lr: lr, cache: cache) {
                    model.forward(features: data.features, targets: data.targets, batch: b, seqLen: t, cache: cache)
                }
            }
            let loss = result.loss, norm = result.gradNorm
            step += 1
            windowLoss += Double(loss)
            windowSteps += 1
            seconds = elapsed()
            if let limit = options.timeLimit, seconds >= limit, step < options.steps { stoppedByTime = true }
            // Ctrl-C: stop here, saved below (under shards every rank has seen every rank's: all stop here).
            if sharded?.interruptRequested ?? Interruption.isRequested { interrupted = true }

            let isLast = step == options.steps || stoppedByTime || interrupted
            guard step % options.logEvery == 0 || step % options.evalEvery == 0 || isLast else { continue }
            trainLoss = windowLoss / Double(windowSteps)
            let windowSeconds = seconds - windowStart
            var m = Metrics(step: step, trainLoss: trainLoss, valLoss: nil, lr: lr, gradNorm: norm,
                            tokensPerSecond: windowSeconds > 0 ? Double(windowSteps * b * t) / windowSeconds : 0,
                            msPerStep: 1000 * windowSeconds / Double(windowSteps), seconds: seconds)
            if isLast {
                final = evaluate(model, on: validation, batch: cache.capacityB, cache: cache, group: group)
                m.valLoss = final?.loss
            } else if step % options.evalEvery == 0 {
                m.valLoss = evaluate(model, on: validation, batch: cache.capacityB, cache: cache, group: group).loss
            }
            try metrics?.write(contentsOf: try line.encode(m) + Data("\n".utf8))
            onLog(m)
            windowLoss = 0
            windowSteps = 0
            windowStart = elapsed()
        }
        // With steps = 0, the untrained model.
        let (val, position) = final ?? evaluate(model, on: validation, batch: cache.capacityB, cache: cache, group: group)
        let result = try finish(model: model, options: options, out: out, writes: writes, step: step, stopped: stoppedByTime,
                                seconds: seconds, trainLoss: trainLoss, val: val, position: position,
                                predictZero: predictZero, floor: floor)
        if interrupted, step < options.steps {
            throw Interrupted(step: step, steps: options.steps, checkpoint: out.appendingPathComponent("checkpoint-\(step)").path,
                              run: "sine \(options.flow)")
        }
        return result
    }

    private static func finish(model: Transformer, options: Options, out: URL, writes: Bool, step: Int, stopped: Bool,
                               seconds: Double, trainLoss: Double, val: Double, position: [Double],
                               predictZero: Double, floor: Double) throws -> Result {
        let checkpoint = out.appendingPathComponent("checkpoint-\(step)")
        if writes { try Checkpoint.saveModel(model, to: checkpoint, metadata: ["task": "sine", "flow": "\(options.flow)"]) }
        let result = Result(flow: "\(options.flow)", p: options.task.p, frequency: options.task.frequency,
                            window: options.task.window, seqLen: options.seqLen, batch: options.batch,
                            parameters: model.params.count, steps: step, stepsPlanned: options.steps,
                            stoppedByTimeLimit: stopped, sequencesSeen: step * options.batch, seconds: seconds,
                            msPerStep: step > 0 ? 1000 * seconds / Double(step) : 0, trainLoss: trainLoss,
                            valLoss: val, predictZeroLoss: predictZero, floorLoss: floor,
                            ratio: floor > 0 ? val / floor : .nan, positionLoss: position,
                            validationSequences: options.validationSequences, loss: options.loss.rawValue,
                            checkpoint: checkpoint.path)
        let pretty = JSONEncoder()
        pretty.outputFormatting = [.prettyPrinted, .sortedKeys]
        pretty.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        if writes { try AtomicFile.write(try pretty.encode(result), to: out.appendingPathComponent(resultsFile)) }
        return result
    }
}
