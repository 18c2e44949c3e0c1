import Foundation
import Myopia

/// `myopia synthetic recall|table-sum`: trains a model per gradient flow on a generated token task
/// (fresh episodes every step, targets −1 except at the answers) and scores answer accuracy and loss
/// on a fixed held-out set of episodes. Same seed ⇒ same initial weights, training episodes and
/// held-out set for every flow, so the flows differ only in their gradient.
public enum TokenTaskExperiment {
    public struct Settings: Codable, Equatable, Sendable {
        public var layers = 2
        public var heads = 4
        public var dModel = 64
        public var batch = 32
        public var steps = 2000
        public var lr = 3e-3
        public var minLR = 3e-4
        public var warmup = 100
        public var weightDecay = 0.1
        public var clip = 1.0
        public var seed: UInt64 = 1
        /// Held-out episodes scored at every evaluation.
        public var evalEpisodes = 512
        /// Score the held-out set every N steps (and after the last).
        public var evalEvery = 250
        /// The training game every flow trains under.
        public var game: TrainingGame = .teacherForced
        /// Each batch in this many shards, added in a fixed order (DataParallelStep): the same
        /// result on one process or under mpirun -np N, N ≤ shards. 1: the whole batch at once.
        public var shards = 1

        public init() {}

        enum CodingKeys: String, CodingKey {
            case layers, heads, batch, steps, lr, warmup, clip, seed, game, shards
            case dModel = "d_model", minLR = "min_lr", weightDecay = "weight_decay"
            case evalEpisodes = "eval_episodes", evalEvery = "eval_every"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Settings()
            layers = try c.decodeIfPresent(Int.self, forKey: .layers) ?? d.layers
            heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? d.heads
            dModel = try c.decodeIfPresent(Int.self, forKey: .dModel) ?? d.dModel
            batch = try c.decodeIfPresent(Int.self, forKey: .batch) ?? d.batch
            steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? d.steps
            lr = try c.decodeIfPresent(Double.self, forKey: .lr) ?? d.lr
            minLR = try c.decodeIfPresent(Double.self, forKey: .minLR) ?? d.minLR
            warmup = try c.decodeIfPresent(Int.self, forKey: .warmup) ?? d.warmup
            weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? d.weightDecay
            clip = try c.decodeIfPresent(Double.self, forKey: .clip) ?? d.clip
            seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
            evalEpisodes = try c.decodeIfPresent(Int.self, forKey: .evalEpisodes) ?? d.evalEpisodes
            evalEvery = try c.decodeIfPresent(Int.self, forKey: .evalEvery) ?? d.evalEvery
            game = try c.decodeIfPresent(TrainingGame.self, forKey: .game) ?? d.game   // results written before games: teacher-forced
            shards = try c.decodeIfPresent(Int.self, forKey: .shards) ?? d.shards      // before shards: the whole batch
        }

        /// The training run these settings describe for `task` under `flow` (optimiser, schedule,
        /// model shape; checked by `TrainConfig.validate`).
        public func trainConfig(for task: TokenTask, flow: GradientFlow) -> TrainConfig {
            var c = TrainConfig()
            c.data = task.name
            c.flow = flow
            c.layers = layers; c.heads = heads; c.dModel = dModel
            c.seqLen = task.seqLen; c.batch = batch; c.steps = steps
            c.lr = lr; c.minLR = minLR; c.warmup = warmup; c.weightDecay = weightDecay; c.clip = clip
            c.seed = seed
            c.evalEvery = evalEvery
            c.game = game
            c.shards = shards
            return c
        }

        /// Checks the settings for `task` under every flow that will train.
        public func validate(for task: TokenTask, flows: [GradientFlow] = [.vanilla]) throws {
            for flow in flows {
                let config = trainConfig(for: task, flow: flow)
                try config.validate()
                try config.checkGame(vocabSize: task.vocabSize, file: "flags")
            }
            if evalEpisodes <= 0 {
                throw InputError.invalidValue(file: "flags", field: "eval_episodes", expected: "a positive integer", found: "\(evalEpisodes)")
            }
        }
    }

    /// Answer accuracy and loss on a set of episodes.
    public struct Score: Codable, Equatable, Sendable {
        /// Share of answers whose most likely token is right.
        public var accuracy: Double
        /// Mean cross-entropy over answers, nats.
        public var loss: Double
        /// Accuracy of the k-th answer of an episode (k = 0..<answersPerEpisode).
        public var accuracyByAnswer: [Double]
        public var answers: Int

        enum CodingKeys: String, CodingKey {
            case accuracy, loss, answers
            case accuracyByAnswer = "accuracy_by_answer"
        }
    }

    public struct CurvePoint: Codable, Equatable, Sendable {
        public var step: Int
        /// Mean training loss (over answers) since the previous point.
        public var trainLoss: Double
        public var accuracy: Double
        public var loss: Double

        enum CodingKeys: String, CodingKey {
            case step, accuracy, loss
            case trainLoss = "train_loss"
        }
    }

    public struct FlowResult: Codable, Equatable, Sendable {
        public var flow: String
        public var accuracy: Double
        public var loss: Double
        public var accuracyByAnswer: [Double]
        public var parameters: Int
        public var seconds: Double
        public var curve: [CurvePoint]

        enum CodingKeys: String, CodingKey {
            case flow, accuracy, loss, parameters, seconds, curve
            case accuracyByAnswer = "accuracy_by_answer"
        }
    }

    public struct Results: Codable, Equatable, Sendable {
        public var task: TokenTaskSummary
        public var settings: Settings
        public var flows: [FlowResult]
    }

    public static let resultsFile = "results.json"

    /// The held-out set: the same for every flow of a seed, and drawn from a stream the training
    /// episodes never use.
    public static func heldOut(_ task: TokenTask, episodes: Int, seed: UInt64) -> (inputs: [Int32], targets: [Int32]) {
        var rng = SeededGenerator(seed: seed ^ 0xC0FF_EE00_D15E_A5E5)
        return task.batch(episodes, rng: &rng)
    }

    /// Scores `model` on episodes laid out (count, T), `batch` episodes per forward pass. In a group
    /// of several ranks each scores a contiguous run of the batches (WindowSpans, the batches one
    /// process forms) and every rank receives every answer's loss and hit, added in episode order:
    /// the same score on any number of ranks. Every rank of `group` must call it.
    public static func score(_ model: Transformer, task: TokenTask, inputs: [Int32], targets: [Int32],
                             batch: Int, cache reuse: ActivationCache? = nil, group: any ProcessGroup = SingleProcess()) -> Score {
        let t = task.seqLen, v = model.config.vocabSize
        let episodes = inputs.count / t
        let b = max(1, min(batch, episodes))
        let cache = reuse.flatMap { $0.capacityB >= b && $0.capacityT >= t ? $0 : nil } ?? model.makeCache(batch: b, seqLen: t)
        // Per position (episodes, T), at the answers: the loss, and 1 where the most likely token is
        // the answer. This rank's batches, then every rank's.
        var losses = [Float](repeating: 0, count: episodes * t), hits = losses
        let spans = WindowSpans(batches: (episodes + b - 1) / b, batch: b, windows: episodes, ranks: group.size)
        let mine = spans.windows(of: group.rank)
        var e = mine.lowerBound
        while e < mine.upperBound {
            let nb = min(b, mine.upperBound - e)
            let range = (e * t)..<((e + nb) * t)
            model.forward(tokens: Array(inputs[range]), targets: Array(targets[range]), batch: nb, seqLen: t, cache: cache)
            let logits = cache.logitsArray(), rowLosses = cache.positionLosses()
            for i in 0..<(nb * t) where targets[e * t + i] >= 0 {
                let row = i * v
                var best = 0
                for c in 1..<v where logits[row + c] > logits[row + best] { best = c }
                hits[e * t + i] = best == Int(targets[e * t + i]) ? 1 : 0
                losses[e * t + i] = rowLosses[i]
            }
            e += nb
        }
        if group.size > 1 {
            spans.gather(&losses, rowWidth: t, group: group)
            spans.gather(&hits, rowWidth: t, group: group)
        }
        var right = 0, answers = 0, total = 0.0
        var rightByAnswer = [Int](repeating: 0, count: task.answersPerEpisode)
        var countByAnswer = rightByAnswer
        for episode in 0..<episodes {
            var k = 0
            for j in 0..<t where targets[episode * t + j] >= 0 {
                let ok = hits[episode * t + j] == 1
                if ok { right += 1 }
                if k < rightByAnswer.count {
                    rightByAnswer[k] += ok ? 1 : 0
                    countByAnswer[k] += 1
                }
                k += 1
                answers += 1
                total += Double(losses[episode * t + j])
            }
        }
        return Score(accuracy: answers > 0 ? Double(right) / Double(answers) : .nan,
                     loss: answers > 0 ? total / Double(answers) : .nan,
                     accuracyByAnswer: zip(rightByAnswer, countByAnswer).map { $1 > 0 ? Double($0) / Double($1) : .nan },
                     answers: answers)
    }

    /// Trains one model under `flow`; with `out`, saves it there (a Hugging Face folder whose
    /// `myopia_tokenizer` names the task). `onLog` sees every evaluation. In an MPI job (`group`)
    /// every rank draws every batch and computes its shards of it (DataParallelStep); the held-out
    /// episodes are spread over the ranks (`score`), and rank 0 alone saves.
    public static func train(_ task: TokenTask, flow: GradientFlow, settings: Settings, out: URL? = nil,
                             group: any ProcessGroup = Distributed.group,
                             onLog: (CurvePoint) -> Void = { _ in }) throws -> FlowResult {
        let config = settings.trainConfig(for: task, flow: flow)
        try settings.validate(for: task, flows: [flow])
        try config.checkShards(ranks: group.size)
        let model = Transformer(config: config.modelConfig(vocabSize: task.vocabSize, tokenizer: task.name))
        model.initialize(seed: config.seed)
        model.flow = flow
        let t = task.seqLen, b = config.batch
        let sharded = config.shards > 1 || group.size > 1
            ? DataParallelStep(model: model, batch: b, seqLen: t, shards: config.shards, group: group, game: config.game, seed: config.seed)
            : nil
        let cache = sharded?.cache ?? model.makeCache(batch: b, seqLen: t)
        let heldOut = heldOut(task, episodes: settings.evalEpisodes, seed: settings.seed)
        var rng = SeededGenerator(seed: config.seed)
        let schedule = config.schedule
        let trainingStep = TrainingStep(model: model, optimizer: config.optimizer, clip: config.clip)
        let runner = sharded?.runner ?? GameRunner(game: config.game, model: model, cache: cache, batch: b, seqLen: t, seed: config.seed)
        let writes = group.rank == 0
        var curve: [CurvePoint] = []
        var windowLoss = 0.0, windowSteps = 0
        let started = Date()
        // Scored in batches of the cache's windows (a shard's under shards).
        let scoreBatch = cache.capacityB
        var last = score(model, task: task, inputs: heldOut.inputs, targets: heldOut.targets, batch: scoreBatch, cache: cache,
                         group: group)
        for step in 0..<config.steps {
            let (inputs, targets) = task.batch(b, rng: &rng)
            let loss = try inputs.withUnsafeBufferPointer { x in
                try targets.withUnsafeBufferPointer { y in
                    let lr = schedule.rate(at: step)
                    if let sharded {
                        return try sharded.step(trainingStep, step: step + 1, lr: lr, inputs: x.baseAddress!, targets: y.baseAddress!)
                    }
                    return try runner.step(trainingStep, step: step + 1, lr: lr, inputs: x.baseAddress!, targets: y.baseAddress!)
                }
            }.loss
            windowLoss += Double(loss)
            windowSteps += 1
            if (step + 1) % config.evalEvery == 0 || step + 1 == config.steps {
                last = score(model, task: task, inputs: heldOut.inputs, targets: heldOut.targets, batch: scoreBatch, cache: cache,
                             group: group)
                let point = CurvePoint(step: step + 1, trainLoss: windowLoss / Double(windowSteps), accuracy: last.accuracy, loss: last.loss)
                curve.append(point)
                onLog(point)
                windowLoss = 0; windowSteps = 0
            }
            // Ctrl-C: this step is done; the model so far is saved and the run stops (under shards
            // every rank has seen every rank's Ctrl-C: all stop at this step).
            if sharded?.interruptRequested ?? Interruption.isRequested, step + 1 < config.steps {
                if let out, writes {
                    try Checkpoint.saveModel(model, to: out, metadata: ["task": task.name, "flow": flow.description, "steps": "\(step + 1)"])
                }
                throw Interrupted(step: step + 1, steps: config.steps, checkpoint: out?.path, run: flow.description)
            }
        }
        let seconds = Date().timeIntervalSince(started)
        if let out, writes {
            try Checkpoint.saveModel(model, to: out, metadata: ["task": task.name, "flow": flow.description, "steps": "\(config.steps)"])
        }
        return FlowResult(flow: flow.description, accuracy: last.accuracy, loss: last.loss, accuracyByAnswer: last.accuracyByAnswer,
                          parameters: model.params.count, seconds: seconds, curve: curve)
    }

    /// Trains one model per flow (in order) and, with `out`, writes `out/FLOW/` (the model) and
    /// `out/results.json`.
    public static func run(_ task: TokenTask, flows: [GradientFlow], settings: Settings, out: URL? = nil,
                           group: any ProcessGroup = Distributed.group,
                           onStart: (GradientFlow) -> Void = { _ in },
                           onLog: (GradientFlow, CurvePoint) -> Void = { _, _ in }) throws -> Results {
        try settings.validate(for: task, flows: flows)
        var results = Results(task: task.summary, settings: settings, flows: [])
        for flow in flows {
            onStart(flow)
            let result = try train(task, flow: flow, settings: settings, out: out?.appendingPathComponent(flow.description), group: group) {
                onLog(flow, $0)
            }
            results.flows.append(result)
        }
        if let out, group.rank == 0 {
            try LabFiles.createDirectory(out)
            try LabFiles.writeJSON(results, to: out.appendingPathComponent(resultsFile))
        }
        return results
    }
}
