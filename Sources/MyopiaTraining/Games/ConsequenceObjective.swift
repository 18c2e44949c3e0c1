import Foundation
import MyopiaKernels
import MyopiaModel
import MyopiaSupport

// Dimensions: B batch, T window, V vocab, K horizon, M positions per window, P = B·M (row, position)
// pairs per step.
//
// The consequence game's objective (docs/games.md, "The consequence game"). In each window M
// distinct positions t are drawn uniformly among 0 … T−1−K (those whose continuation
// x_{t+2 … t+1+K} lies inside the window). At each, x̂ ~ p(·|x_≤t) (temperature 1) takes the place
// of x_{t+1}, and the ground-truth continuation is scored with x̂ in the context:
//     R(x̂) = −(mean cross-entropy of targets[t+1 … t+K]),   b = R(x_{t+1}) (the window's own losses).
// R is a constant for the gradient. The objective is
//     L = mean CE − λ · (1/P) Σ_pairs (R(x̂) − b) · log p(x̂ | x_≤t),
// and its logit gradient at row t adds −(λ/P)·(R − b)·(onehot(x̂) − p). The exact estimator
// replaces the draw by its expectation Σ_v p(v)·(R(v) − b)·∇log p(v), whose logit gradient is
// −(λ/P)·p_k·(A_k − Σ_v p_v A_v) with A_v = R(v) − b (b cancels: Σ_v ∇p(v) = 0).
// Where the family soft-caps its logits (Gemma 2: ℓ = cap·tanh(z/cap), p = softmax(ℓ)), backward
// carries dL/dz, so the term is multiplied by the cap's derivative dℓ/dz = 1 − (ℓ/cap)², as the
// cross-entropy's own gradient is.

/// The consequence game's policy-gradient term, below the trainer: `prepare` after the step's
/// forward pass (logits intact), then `addPolicyGradient` inside backward:
///
///     model.forward(tokens:targets:batch:seqLen:cache:)
///     objective.prepare(cache: cache, step: step)
///     model.backward(cache: cache) { objective.addPolicyGradient(to: $0) }
///
/// Random draws are keyed by (step, row, position) (`KeyedRandom`, purposes `.position` and
/// `.sample`), so a step's draws do not depend on threads or on earlier steps. Everything is
/// allocated in `init`: a step allocates nothing.
public final class ConsequenceObjective {
    public let model: Transformer
    public let batch: Int
    public let seqLen: Int
    public let settings: ConsequenceSettings
    public let random: KeyedRandom

    /// Test hook: the reward of every token, the window's own included (so the baseline too). The
    /// advantages are then exactly 0, and a step is teacher forcing's, bit for bit.
    public var forcedReward: Float?
    /// Test hook: the positions, M per window (B·M, window by window), in place of the draw.
    public var fixedPositions: [Int]? {
        didSet {
            if let p = fixedPositions {
                precondition(p.count == batch * settings.positions && p.allSatisfy { (0...(seqLen - 1 - settings.horizon)).contains($0) })
            }
        }
    }

    /// What the last `prepare` measured, for the log (means over its B·M pairs; the exact estimator's
    /// are expectations under p).
    public struct Statistics: Sendable, Equatable {
        /// Pairs (window, position) that drew a token: B·M.
        public var positions = 0
        /// Mean R(x̂) = −(mean continuation cross-entropy).
        public var meanReward = 0.0
        /// Mean baseline b = R(x_{t+1}).
        public var meanBaseline = 0.0
        /// Mean advantage R(x̂) − b.
        public var meanAdvantage = 0.0
        /// Mean |R(x̂) − b|.
        public var meanAbsoluteAdvantage = 0.0
        /// The policy term's value, −λ·(1/P)·Σ (R − b)·log p(x̂) (its gradient is what backward adds).
        public var policyLoss = 0.0
        /// Tokens drawn equal to the window's own x_{t+1} (sampled estimator).
        public var drewTrueToken = 0

        /// As sums over pairs (`sums`), the figures a shard of a global batch hands on, in this
        /// order: positions, reward, baseline, advantage, |advantage|, −Σ (R − b)·log p(x̂), drawn true.
        public static let sumCount = 7

        public func write(into out: UnsafeMutablePointer<Double>) {
            out[0] = Double(positions); out[1] = meanReward; out[2] = meanBaseline; out[3] = meanAdvantage
            out[4] = meanAbsoluteAdvantage; out[5] = policyLoss; out[6] = Double(drewTrueToken)
        }

        public init() {}

        /// Sums written by `write(into:)` (or added over shards).
        public init(reading p: UnsafePointer<Double>) {
            positions = Int(p[0]); meanReward = p[1]; meanBaseline = p[2]; meanAdvantage = p[3]
            meanAbsoluteAdvantage = p[4]; policyLoss = p[5]; drewTrueToken = Int(p[6])
        }

        /// These sums over `positions` pairs as means, the policy term weighted by λ = `weight`.
        public func means(weight lambda: Double) -> Statistics {
            var s = self
            let scale = 1 / Double(max(1, positions))
            s.meanReward *= scale; s.meanBaseline *= scale; s.meanAdvantage *= scale
            s.meanAbsoluteAdvantage *= scale
            s.policyLoss *= lambda * scale
            return s
        }
    }
    public private(set) var statistics = Statistics()
    /// The same figures as sums over the last `prepare`'s pairs (no scaling, no λ): what a shard
    /// of a global batch contributes to the batch's statistics.
    public private(set) var sums = Statistics()

    /// The global index of row 0 of the prepared batch, when it is one shard of a larger batch:
    /// the draws are keyed by (step, firstSequence + row, …). 0 for a whole batch.
    public var firstSequence = 0
    /// The number of pairs P the policy term is averaged over, when not the prepared batch's own
    /// (rows · M): the global batch's, when the batch is one of its shards.
    public var pairDenominator: Int?

    let vocab: Int
    /// (row, position) pairs of the step, window by window: P.
    let pairs: Int
    let pairRow: UnsafeMutablePointer<Int>          // (P) the window
    let pairPosition: UnsafeMutablePointer<Int>     // (P) t
    let pool: UnsafeMutablePointer<Int>             // (T − K) the draw's shuffled candidates
    let probabilities: UnsafeMutablePointer<Float>  // (P, V) p(·|x_≤t), saved before backward
    /// The final soft-cap (Gemma 2), and for each pair's row dℓ/dz = 1 − (ℓ/cap)² (P, V) of its
    /// capped logits ℓ, saved before backward overwrites them; nil without a cap.
    let finalSoftcap: Float?
    let capDerivatives: UnsafeMutablePointer<Float>
    let sampled: UnsafeMutablePointer<Int32>        // (P) x̂ (sampled)
    let baselines: UnsafeMutablePointer<Float>      // (P) b
    let rewards: UnsafeMutablePointer<Float>        // (P, 1) sampled or (P, V) exact: R
    let vocabularyTokens: UnsafeMutablePointer<Int32> // (V) 0 … V−1, the exact estimator's candidates
    /// Exact: one continuation scratch per work slot; slot s runs pairs s, s + slots, … (results do
    /// not depend on the number of slots or threads). Sampled: none.
    let scratches: [ContinuationScratch]
    /// Exact: candidates per continuation call (a chunk of the vocabulary).
    let candidatesPerCall: Int
    /// Sampled: the pairs' continuations, `batchScratch.capacity` pairs per batched call.
    let batchScratch: ContinuationBatchScratch?
    /// The buffers above, freed together.
    private let owned: [UnsafeMutableRawPointer]
    private var preparedRows = 0

    deinit { for p in owned { p.deallocate() } }

    /// An objective for steps of up to `batch` windows of `seqLen` tokens. The settings must have
    /// passed `validate`.
    public init(model: Transformer, batch: Int, seqLen: Int, settings: ConsequenceSettings, random: KeyedRandom) {
        let k = settings.horizon, m = settings.positions, v = model.config.vocabSize
        precondition(k >= 1 && k <= seqLen - 1 && m >= 1 && m <= seqLen - k, "consequence settings not validated")
        precondition(settings.estimator == .sampled || v <= ConsequenceSettings.exactVocabularyLimit)
        precondition(model.flow != .localMyopic, TrainingGame.consequence(settings).refusal(under: .localMyopic) ?? "")
        self.model = model
        self.batch = batch
        self.seqLen = seqLen
        self.settings = settings
        self.random = random
        vocab = v
        pairs = batch * m
        let exact = settings.estimator == .exact
        if exact {
            // Up to about 256 new rows per call, the pairs spread over the slots.
            let perCall = min(v, max(1, 256 / k))
            candidatesPerCall = perCall
            let slots = min(pairs, max(1, Parallel.threadCount))
            scratches = (0..<slots).map { _ in
                ContinuationScratch(config: model.config, horizon: k, candidates: perCall, seqLen: seqLen)
            }
            batchScratch = nil
        } else {
            // Every pair's K rows in one batched pass, or as many as the training forward's B·T rows.
            candidatesPerCall = 1
            scratches = []
            batchScratch = ContinuationBatchScratch(config: model.config, horizon: k,
                                                    capacity: min(pairs, max(1, batch * seqLen / k)), seqLen: seqLen)
        }
        var owned: [UnsafeMutableRawPointer] = []
        func buffer<T>(_ count: Int, _ zero: T) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, count))
            p.initialize(repeating: zero, count: max(1, count))
            owned.append(UnsafeMutableRawPointer(p))
            return p
        }
        pairRow = buffer(pairs, 0)
        pairPosition = buffer(pairs, 0)
        pool = buffer(seqLen - k, 0)
        probabilities = buffer(pairs * v, 0)
        finalSoftcap = model.config.finalSoftcap.map { Float($0) }
        capDerivatives = buffer(finalSoftcap == nil ? 0 : pairs * v, 0)
        sampled = buffer(pairs, 0)
        baselines = buffer(pairs, 0)
        rewards = buffer(pairs * (exact ? v : 1), 0)
        vocabularyTokens = buffer(v, 0)
        for j in 0..<v { vocabularyTokens[j] = Int32(j) }
        self.owned = owned
    }

    /// Checks the settings against the window and the vocabulary; `file` names where they came from
    /// ("flags" or a config file). Throws `InputError.invalidValue` naming `consequence_weight`,
    /// `consequence_horizon`, `consequence_positions` or `consequence_estimator`.
    /// The game's positions in window `sequence` at `step`: `count` distinct positions among
    /// 0 ..< choices (T − K) by a partial Fisher–Yates shuffle of `pool` (room for `choices`),
    /// keyed by (step, sequence, draw i); written to `out[0 ..< count]`.
    public static func drawPositions(_ random: KeyedRandom, step: Int, sequence: Int, choices: Int, count m: Int,
                                     pool: UnsafeMutablePointer<Int>, into out: UnsafeMutablePointer<Int>) {
        for i in 0..<choices { pool[i] = i }
        for i in 0..<m {
            let u = random.uniform(.position, step: step, sequence: sequence, position: i)
            let j = i + min(choices - i - 1, Int(u * Double(choices - i)))
            (pool[i], pool[j]) = (pool[j], pool[i])
            out[i] = pool[i]
        }
    }

    public static func validate(_ settings: ConsequenceSettings, seqLen: Int, vocabSize: Int,
                                file: String = "flags") throws {
        let check = SettingsCheck(file: file)
        let k = settings.horizon, m = settings.positions
        try check.check(settings.weight.isFinite, "consequence_weight", "a finite number", settings.weight)
        try check.check(k >= 1 && k <= seqLen - 1, "consequence_horizon",
                        "an integer from 1 to \(seqLen - 1) (the continuation must fit in a window of \(seqLen) tokens)", k)
        try check.check(m >= 1 && m <= seqLen - k, "consequence_positions",
                        "an integer from 1 to \(seqLen - k) (the positions with a \(k)-token continuation in a window of \(seqLen))", m)
        let limit = ConsequenceSettings.exactVocabularyLimit
        try check.check(settings.estimator == .sampled || vocabSize <= limit, "consequence_estimator",
                        "sampled for a vocabulary over \(limit) tokens (exact scores every token at every position)",
                        "exact with a vocabulary of \(vocabSize)")
    }

    /// After `model.forward(tokens:targets:…)` on step `step`'s batch (`cache` holds it, logits
    /// intact): draws the positions and tokens, runs the continuation passes and keeps what the
    /// gradient needs (the M rows' probabilities, the rewards and baselines).
    public func prepare(cache: ActivationCache, step: Int) {
        let rows = cache.batch, k = settings.horizon, m = settings.positions, v = vocab
        precondition(rows <= batch && cache.seqLen == seqLen, "the objective was made for \(batch) windows of \(seqLen)")
        preparedRows = rows
        let exact = settings.estimator == .exact
        // Positions: a partial Fisher–Yates shuffle of 0 … T−1−K per window.
        let choices = seqLen - k
        for row in 0..<rows {
            if let fixed = fixedPositions {
                for i in 0..<m { pairPosition[row * m + i] = fixed[row * m + i] }
            } else {
                Self.drawPositions(random, step: step, sequence: firstSequence + row, choices: choices, count: m, pool: pool,
                                   into: pairPosition + row * m)
            }
            for i in 0..<m { pairRow[row * m + i] = row }
        }
        // Probabilities and draws, serially (P·V work); the baseline from the training forward.
        for pair in 0..<(rows * m) {
            let row = pairRow[pair], t = pairPosition[pair]
            let logits = cache.logitRow(row * seqLen + t)
            let p = probabilities + pair * v
            p.update(from: logits, count: v)
            RowOps.softmax(p, count: v)
            if let cap = finalSoftcap {
                // As CrossEntropy.backward carries the loss through the cap: 1 − (ℓ/cap)².
                let f = capDerivatives + pair * v
                for j in 0..<v {
                    let t = logits[j] / cap
                    f[j] = 1 - t * t
                }
            }
            baselines[pair] = -Float(cache.meanLoss(row: row, positions: (t + 1)..<(t + 1 + k)))
            if !exact {
                let u = random.uniform(.sample, step: step, sequence: firstSequence + row, position: t)
                sampled[pair] = KeyedRandom.sample(logits: logits, count: v, u: u)
            }
        }
        if let scratch = batchScratch {
            // Sampled: the pairs' continuations batched, R = −(continuation loss).
            let count = rows * m
            var start = 0
            while start < count {
                let chunk = min(scratch.capacity, count - start)
                model.continuationLosses(cache: cache, rows: pairRow + start, positions: pairPosition + start,
                                         firstTokens: sampled + start, count: chunk, scratch: scratch,
                                         losses: rewards + start)
                start += chunk
            }
            for pair in 0..<count { rewards[pair] = -rewards[pair] }
        } else {
            // Exact: (row, position) pairs spread over the slots.
            Parallel.forEach(scratches.count, (self, cache)) { args, slot in
                let (objective, cache) = args
                objective.runExactContinuations(slot: slot, cache: cache)
            }
        }
        if let forced = forcedReward {
            for pair in 0..<(rows * m) { baselines[pair] = forced }
            rewards.update(repeating: forced, count: rows * m * (exact ? v : 1))
        }
        measure(cache: cache)
    }

    /// Slot `slot`'s share of the pairs (exact estimator): rewards R(v) = −(continuation loss) for
    /// every token v.
    private func runExactContinuations(slot: Int, cache: ActivationCache) {
        let scratch = scratches[slot], v = vocab
        var pair = slot
        while pair < preparedRows * settings.positions {
            let row = pairRow[pair], t = pairPosition[pair]
            var start = 0
            while start < v {
                let count = min(candidatesPerCall, v - start)
                model.continuationLosses(cache: cache, row: row, position: t, candidates: vocabularyTokens + start,
                                         count: count, scratch: scratch, losses: rewards + pair * v + start)
                start += count
            }
            for j in 0..<v { rewards[pair * v + j] = -rewards[pair * v + j] }
            pair += scratches.count
        }
    }

    /// Fills `statistics` from the prepared pairs (logits still intact).
    private func measure(cache: ActivationCache) {
        let count = preparedRows * settings.positions, v = vocab, lambda = settings.weight
        var s = Statistics()
        s.positions = count
        for pair in 0..<count {
            let row = pairRow[pair], t = pairPosition[pair]
            let logits = cache.logitRow(row * seqLen + t)
            let p = probabilities + pair * v, b = Double(baselines[pair])
            // log p(v) = logit_v − log Σ exp(logits), in Double.
            var maxLogit = logits[0]
            for j in 1..<v where logits[j] > maxLogit { maxLogit = logits[j] }
            var sum = 0.0
            for j in 0..<v { sum += exp(Double(logits[j] - maxLogit)) }
            let logZ = Double(maxLogit) + log(sum)
            if settings.estimator == .exact {
                for j in 0..<v {
                    let pj = Double(p[j]), r = Double(rewards[pair * v + j])
                    s.meanReward += pj * r
                    s.meanAdvantage += pj * (r - b)
                    s.meanAbsoluteAdvantage += pj * abs(r - b)
                    s.policyLoss -= pj * (r - b) * (Double(logits[j]) - logZ)
                }
            } else {
                let token = Int(sampled[pair]), r = Double(rewards[pair])
                s.meanReward += r
                s.meanAdvantage += r - b
                s.meanAbsoluteAdvantage += abs(r - b)
                s.policyLoss -= (r - b) * (Double(logits[token]) - logZ)
                if cache.target(row: row, position: t) == Int32(token) { s.drewTrueToken += 1 }
            }
            s.meanBaseline += b
        }
        sums = s
        statistics = s.means(weight: lambda)
    }

    /// The positions t window `row` used in the last `prepare`, in draw order (for tests and logs;
    /// allocates).
    public func positions(row: Int) -> [Int] {
        precondition(row >= 0 && row < preparedRows)
        return (0..<settings.positions).map { pairPosition[row * settings.positions + $0] }
    }

    /// The tokens x̂ window `row` drew in the last `prepare`, one per position (sampled estimator;
    /// for tests and logs; allocates).
    public func drawnTokens(row: Int) -> [Int32] {
        precondition(row >= 0 && row < preparedRows && settings.estimator == .sampled)
        return (0..<settings.positions).map { sampled[row * settings.positions + $0] }
    }

    /// Adds the policy term's gradient to dL/dlogits (B·T, V), which holds the cross-entropy
    /// gradient: −(λ/P)·(R − b)·(onehot(x̂) − p) at each drawn row (sampled), or its expectation
    /// −(λ/P)·p_k·(A_k − Σ_v p_v A_v) (exact). Pass it to `model.backward(cache:adjustingLogitGradient:)`
    /// after `prepare`. With a final soft-cap the buffer holds the gradient of the logits before the
    /// cap, and the term is multiplied by the cap's derivative, element by element. With λ = 0, or
    /// every advantage 0, it adds exact zeros.
    public func addPolicyGradient(to dLogits: UnsafeMutablePointer<Float>) {
        let count = preparedRows * settings.positions, v = vocab
        let scale = Float(settings.weight) / Float(max(1, pairDenominator ?? count))
        for pair in 0..<count {
            let d = dLogits + (pairRow[pair] * seqLen + pairPosition[pair]) * v
            let p = probabilities + pair * v, b = baselines[pair]
            if finalSoftcap != nil {
                let f = capDerivatives + pair * v
                if settings.estimator == .exact {
                    let r = rewards + pair * v
                    var expected = 0.0
                    for j in 0..<v { expected += Double(p[j]) * Double(r[j] - b) }
                    let mean = Float(expected)
                    for j in 0..<v { d[j] -= scale * p[j] * ((r[j] - b) - mean) * f[j] }
                } else {
                    let c = scale * (rewards[pair] - b), token = Int(sampled[pair])
                    for j in 0..<v { d[j] += c * p[j] * f[j] }
                    d[token] -= c * f[token]
                }
                continue
            }
            if settings.estimator == .exact {
                let r = rewards + pair * v
                var expected = 0.0
                for j in 0..<v { expected += Double(p[j]) * Double(r[j] - b) }
                let mean = Float(expected)
                for j in 0..<v { d[j] -= scale * p[j] * ((r[j] - b) - mean) }
            } else {
                let c = scale * (rewards[pair] - b)
                for j in 0..<v { d[j] += c * p[j] }
                d[Int(sampled[pair])] -= c
            }
        }
    }
}
