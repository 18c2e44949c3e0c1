import MyopiaKernels
import MyopiaModel

// Dimensions: B batch, T time, V vocab, N = B·T.

/// One training step's forward and backward under a game (TrainingGame): what `TrainingStep`
/// runs between zeroing the gradients and clipping them. Every game trains the model's t+1 head
/// on the ground-truth targets; what differs is what else is upstream of the loss (docs/games.md).
/// Its buffers are allocated once: a step allocates nothing.
public final class GameRunner {
    public let game: TrainingGame
    public let model: Transformer
    public let cache: ActivationCache
    /// The game's random numbers, keyed by (step, sequence, position) (KeyedRandom).
    public let random: KeyedRandom
    let batch: Int, seqLen: Int
    /// Scheduled sampling: the inputs of the second pass, (B, T).
    let mixed: UnsafeMutablePointer<Int32>
    /// Scheduled sampling: per window, how many inputs were replaced, and how many of those
    /// replacements differ from the ground truth, (B) each.
    let replacedCounts: UnsafeMutablePointer<Int32>
    let changedCounts: UnsafeMutablePointer<Int32>

    /// Test hook (scheduled sampling): called in place of drawing the model's sample with the
    /// sequence (its index in the global batch), the position of the input replaced, and its
    /// ground-truth token; returns the token put there.
    public var sampleOverride: ((_ sequence: Int, _ position: Int, _ truth: Int32) -> Int32)?

    /// What the last step measured, beyond its loss.
    public struct Statistics: Sendable, Equatable {
        /// The mean next-token cross-entropy on the step's inputs (for multi-token, head 1's; for
        /// scheduled sampling, on the mixed inputs).
        public var nextTokenLoss: Float = 0
        /// Scheduled sampling: inputs that could be replaced (B·(T−1)), those replaced, and those
        /// whose replacement differs from the ground truth.
        public var inputsEligible = 0, inputsReplaced = 0, inputsChanged = 0
        /// The consequence game's draws and rewards, and whether they were drawn (the sampled
        /// estimator) or every token was scored (exact).
        public var consequence: ConsequenceObjective.Statistics?
        public var consequenceSampled = false
        /// The share of eligible inputs replaced (scheduled sampling; 0 otherwise).
        public var replacedShare: Double { inputsEligible > 0 ? Double(inputsReplaced) / Double(inputsEligible) : 0 }
    }
    public private(set) var last = Statistics()

    /// The statistics of the steps between two logged steps, as `metrics.jsonl` records them.
    public struct Window: Sendable {
        var steps = 0
        var nextTokenLoss = 0.0
        var eligible = 0, replaced = 0, changed = 0
        var consequenceSteps = 0, pairs = 0, drewTrue = 0
        var reward = 0.0, baseline = 0.0, advantage = 0.0, absoluteAdvantage = 0.0, policyLoss = 0.0

        public init() {}

        public mutating func add(_ s: Statistics) {
            steps += 1
            nextTokenLoss += Double(s.nextTokenLoss)
            eligible += s.inputsEligible
            replaced += s.inputsReplaced
            changed += s.inputsChanged
            if let c = s.consequence {
                consequenceSteps += 1
                if s.consequenceSampled {   // the exact estimator draws nothing
                    pairs += c.positions
                    drewTrue += c.drewTrueToken
                }
                reward += c.meanReward; baseline += c.meanBaseline
                advantage += c.meanAdvantage; absoluteAdvantage += c.meanAbsoluteAdvantage
                policyLoss += c.policyLoss
            }
        }

        /// `next_token_loss` (the mean over the steps); under scheduled sampling `replaced_share`
        /// and `changed_share` (of the eligible inputs); under the consequence game the means over
        /// the steps of `reward` R(x̂), `baseline` b, `advantage` R − b, `abs_advantage` |R − b| and
        /// `policy_loss`, and `drew_true_share` (draws equal to the ground truth).
        public var logged: [String: Double] {
            var m: [String: Double] = ["next_token_loss": steps > 0 ? nextTokenLoss / Double(steps) : 0]
            if eligible > 0 {
                m["replaced_share"] = Double(replaced) / Double(eligible)
                m["changed_share"] = Double(changed) / Double(eligible)
            }
            if consequenceSteps > 0 {
                let n = Double(consequenceSteps)
                m["reward"] = reward / n
                m["baseline"] = baseline / n
                m["advantage"] = advantage / n
                m["abs_advantage"] = absoluteAdvantage / n
                m["policy_loss"] = policyLoss / n
                if pairs > 0 { m["drew_true_share"] = Double(drewTrue) / Double(pairs) }
            }
            return m
        }
    }

    /// A runner for `game` on `model`, whose forward passes write `cache`, for batches of
    /// (batch, seqLen) windows; `seed` keys the game's random streams (the run's seed).
    public init(game: TrainingGame, model: Transformer, cache: ActivationCache, batch: Int, seqLen: Int, seed: UInt64) {
        self.game = game
        self.model = model
        self.cache = cache
        self.batch = batch
        self.seqLen = seqLen
        random = KeyedRandom(seed: seed)
        if case .multiToken(let heads) = game {
            precondition(model.config.predictionHeads == heads,
                         "multi-token with \(heads) heads needs a model with as many (it has \(model.config.predictionHeads))")
        }
        let sampling: Bool
        if case .scheduledSampling = game { sampling = true } else { sampling = false }
        mixed = .allocate(capacity: sampling ? batch * seqLen : 0)
        replacedCounts = .allocate(capacity: batch)
        changedCounts = .allocate(capacity: batch)
        if case .consequence(let settings) = game {
            consequence = ConsequenceObjective(model: model, batch: batch, seqLen: seqLen, settings: settings, random: random)
        } else {
            consequence = nil
        }
        switch game {
        case .teacherForced: figureCount = 1
        case .scheduledSampling: figureCount = 4
        case .consequence: figureCount = 1 + ConsequenceObjective.Statistics.sumCount
        case .multiToken(let heads): figureCount = heads
        }
        figures = .allocate(capacity: figureCount)
        figures.initialize(repeating: 0, count: figureCount)
        headDenominators = Array(repeating: 0, count: max(0, model.config.predictionHeads - 1))
    }

    /// The consequence game's objective (its test hooks: a forced reward, fixed positions).
    public let consequence: ConsequenceObjective?

    deinit {
        mixed.deallocate()
        replacedCounts.deallocate()
        changedCounts.deallocate()
        figures.deallocate()
    }

    /// The global index of this runner's first window when its batch is one shard of a larger
    /// batch (DataParallelStep): the game's draws are keyed by (step, firstSequence + row,
    /// position), so a window draws the same numbers whichever shard or rank computes it. 0 for a
    /// whole batch.
    public var firstSequence = 0 {
        didSet { consequence?.firstSequence = firstSequence }
    }

    // MARK: One shard of a global batch (DataParallelStep)

    /// How many figures one shard's passes leave in `figures`: the sums the whole batch's loss and
    /// statistics are made of — the t+1 row losses over counted targets, then under scheduled
    /// sampling the eligible, replaced and changed inputs, under the consequence game the sums of
    /// `ConsequenceObjective.Statistics`, under multi-token heads each extra head's row losses.
    public let figureCount: Int
    /// The last shard's figures (`figureCount`).
    public let figures: UnsafeMutablePointer<Double>
    /// The global batch's counted targets, and each extra head's (index j − 2), set by `prepareShards`.
    private var counted = 0
    private var headDenominators: [Int]

    /// Before the shards of a global batch of `windows` windows (`targets`, windows·T): every loss
    /// of the shards' passes is divided by the global batch's count — its counted targets, each
    /// prediction head's, the consequence game's pairs — not the shard's. Undone by `finishShards`.
    func prepareShards(targets: UnsafePointer<Int32>, windows: Int) {
        let t = seqLen
        counted = 0
        for i in 0..<(windows * t) where targets[i] >= 0 { counted += 1 }
        cache.lossDenominator = counted
        if case .multiToken(let heads) = game, heads > 1 {
            for j in 2...heads {
                headDenominators[j - 2] = Transformer.predictionCountedTargets(head: j, targets: targets, batch: windows, seqLen: t)
            }
            cache.predictionLossDenominators = headDenominators
        }
        if let consequence { consequence.pairDenominator = windows * consequence.settings.positions }
    }

    func finishShards() {
        cache.lossDenominator = nil
        cache.predictionLossDenominators = nil
        consequence?.pairDenominator = nil
        firstSequence = 0
    }

    /// One shard's forward, its figures into `figures`, and (when its loss is finite) its backward,
    /// adding into `params.grads`, at optimiser step `step`.
    func shardPasses(step: Int, inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>) {
        passes(step: step, inputs: inputs, targets: targets) { forward, backward in
            let loss = forward()
            let rows = batch * seqLen
            var total = 0.0
            for r in 0..<rows where targets[r] >= 0 { total += Double(cache.rowLoss[r]) }
            figures[0] = total
            switch game {
            case .teacherForced: break
            case .scheduledSampling:
                figures[1] = Double(last.inputsEligible)
                figures[2] = Double(last.inputsReplaced)
                figures[3] = Double(last.inputsChanged)
            case .consequence:
                consequence!.sums.write(into: figures + 1)
            case .multiToken(let heads):
                if loss != nil {
                    for j in stride(from: 2, through: heads, by: 1) { figures[j - 1] = model.predictionHeadLossSum(head: j, cache: cache) }
                }
            }
            if let loss, loss.isFinite { backward() }
        }
    }

    /// From the figures of every shard added in shard order (`totals`): the global batch's loss
    /// under the game (returned) and its statistics (`last`).
    func combineShards(_ totals: UnsafePointer<Double>) -> Float {
        func mean(_ sum: Double, _ count: Int) -> Float { count > 0 ? Float(sum / Double(count)) : 0 }
        let next = Float(totals[0] / Double(max(1, counted)))
        switch game {
        case .teacherForced:
            last = Statistics(nextTokenLoss: next)
            return next
        case .scheduledSampling:
            last = Statistics(nextTokenLoss: next, inputsEligible: Int(totals[1]), inputsReplaced: Int(totals[2]),
                              inputsChanged: Int(totals[3]))
            return next
        case .consequence:
            let objective = consequence!
            let sums = ConsequenceObjective.Statistics(reading: totals + 1)
            last = Statistics(nextTokenLoss: next, consequence: sums.means(weight: objective.settings.weight),
                              consequenceSampled: objective.settings.estimator == .sampled)
            return next
        case .multiToken(let heads):
            // As forwardPredictionHeads: the mean over the heads of each head's mean loss.
            let first = mean(totals[0], counted)
            var total = Double(first)
            for j in stride(from: 2, through: heads, by: 1) { total += Double(mean(totals[j - 1], headDenominators[j - 2])) }
            last = Statistics(nextTokenLoss: first)
            return Float(total / Double(heads))
        }
    }

    /// Runs optimiser step `step` (from 1) of `trainingStep` on the windows `inputs` → `targets`
    /// (B·T each) under the game.
    @discardableResult
    public func step(_ trainingStep: TrainingStep, step: Int, lr: Double, inputs: UnsafePointer<Int32>,
                     targets: UnsafePointer<Int32>, lastCheckpoint: String? = nil) throws -> TrainingStep.Result {
        precondition(trainingStep.model === model, "the training step must train the runner's model")
        return try passes(step: step, inputs: inputs, targets: targets) { forward, backward in
            try trainingStep.run(step: step, lr: lr, lastCheckpoint: lastCheckpoint, forward: forward, backward: backward)
        }
    }

    /// The gradient step `step` would take, without taking it: zeroes `model.params.grads`, runs the
    /// game's forward and backward passes (the draws of that step) and returns the loss; the
    /// gradients are left in `params.grads`. A non-finite loss skips backward.
    @discardableResult
    public func gradient(step: Int, inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>) -> Float? {
        model.params.zeroGrads()
        return passes(step: step, inputs: inputs, targets: targets) { forward, backward in
            let loss = forward()
            if let loss, loss.isFinite { backward() }
            return loss
        }
    }

    /// The game's forward pass alone for step `step` (with that step's draws): afterwards the cache
    /// holds the forward pass of the inputs the game trains on. Returns the loss it trains.
    @discardableResult
    public func forward(step: Int, inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>) -> Float? {
        passes(step: step, inputs: inputs, targets: targets) { forward, _ in forward() }
    }

    /// The game's forward pass (returning the loss it trains) and backward pass for step `step`,
    /// handed to `body`, which runs them.
    func passes<R>(step: Int, inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>,
                   _ body: (() -> Float?, () -> Void) throws -> R) rethrows -> R {
        let b = batch, t = seqLen
        switch game {
        case .teacherForced:
            return try body({
                let loss = model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
                last = Statistics(nextTokenLoss: loss ?? .nan)
                return loss
            }, { model.backward(cache: cache) })
        case .scheduledSampling(let rate):
            return try body({
                let loss = scheduledSamplingForward(step: step, rate: rate, inputs: inputs, targets: targets)
                last.nextTokenLoss = loss ?? .nan
                return loss
            }, { model.backward(cache: cache) })
        case .consequence:
            let objective = consequence!
            return try body({
                let loss = model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
                // The draws and the continuation passes read the forward's logits and keys and values.
                if loss != nil { objective.prepare(cache: cache, step: step) }
                last = Statistics(nextTokenLoss: loss ?? .nan, consequence: objective.statistics,
                                  consequenceSampled: objective.settings.estimator == .sampled)
                return loss
            }, {
                model.backward(cache: cache) { objective.addPolicyGradient(to: $0) }
            })
        case .multiToken:
            return try body({
                guard let next = model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache) else { return nil }
                last = Statistics(nextTokenLoss: next)
                // The mean over the heads of each head's mean loss (head 1's is `next`).
                return model.forwardPredictionHeads(cache: cache)
            }, { model.backwardPredictionHeads(cache: cache) })
        }
    }

    /// Scheduled sampling in its parallel two-pass form (Duckworth et al. 2019): a first forward
    /// pass over the ground truth gives p(·|x_≤t) at every position; each input x_{t+1} (t+1 ≥ 1)
    /// is then replaced, with probability `rate`, by a draw from p(·|x_≤t) at temperature 1; the
    /// second pass, over the mixed inputs with the ground-truth targets, is the one trained. The
    /// samples are data for the second pass: no gradient passes through them.
    func scheduledSamplingForward(step: Int, rate: Double, inputs: UnsafePointer<Int32>,
                                  targets: UnsafePointer<Int32>) -> Float? {
        let b = batch, t = seqLen, v = model.config.vocabSize
        model.forward(tokens: inputs, targets: nil, batch: b, seqLen: t, cache: cache)
        mixed.update(from: inputs, count: b * t)
        let logits = cache.logitRows
        if let sampleOverride {
            for row in 0..<b {
                replacedCounts[row] = 0
                changedCounts[row] = 0
                let sequence = firstSequence + row
                for p in 1..<max(1, t) where random.uniform(.replace, step: step, sequence: sequence, position: p) < rate {
                    let token = sampleOverride(sequence, p, inputs[row * t + p])
                    mixed[row * t + p] = token
                    replacedCounts[row] += 1
                    if token != inputs[row * t + p] { changedCounts[row] += 1 }
                }
            }
        } else {
            // Rows are independent and each draw is keyed by its (step, sequence, position): the
            // result does not depend on the threads.
            Parallel.forEach(b, (random, mixed, inputs, logits, replacedCounts, changedCounts, step, rate, t, v, firstSequence)) { args, row in
                let (random, mixed, inputs, logits, replaced, changed, step, rate, t, v, first) = args
                replaced[row] = 0
                changed[row] = 0
                let sequence = first + row
                for p in 1..<max(1, t) where random.uniform(.replace, step: step, sequence: sequence, position: p) < rate {
                    // Input p is the target of position p − 1: it is drawn from that row's logits.
                    let u = random.uniform(.sample, step: step, sequence: sequence, position: p)
                    let token = KeyedRandom.sample(logits: logits + (row * t + p - 1) * v, count: v, u: u)
                    mixed[row * t + p] = token
                    replaced[row] += 1
                    if token != inputs[row * t + p] { changed[row] += 1 }
                }
            }
        }
        var stats = Statistics(inputsEligible: b * max(0, t - 1))
        for row in 0..<b {
            stats.inputsReplaced += Int(replacedCounts[row])
            stats.inputsChanged += Int(changedCounts[row])
        }
        last = stats
        return model.forward(tokens: mixed, targets: targets, batch: b, seqLen: t, cache: cache)
    }

    /// The inputs the last scheduled-sampling step trained on, (B, T).
    public func mixedInputs() -> [Int32] {
        guard case .scheduledSampling = game else { return [] }
        return Array(UnsafeBufferPointer(start: mixed, count: batch * seqLen))
    }
}
