import MyopiaKernels
import MyopiaModel

// Dimensions: T the model's positions (maxPositions), V vocab, h = max(1, T/2) tokens kept when the
// context restarts, n ≤ chunk rows per decode call.
//
// Teacher-forced vs free-running loss (docs/DESIGN.md §5, generation study). Both are the model's mean
// next-token cross-entropy over a continuation of a prompt:
//   teacher-forced   on a real continuation (text the model did not write)
//   free-running     on the model's own samples, scored by itself
// Teacher forcing never shows the model the effect of its own sampled tokens on later text; the
// gap between the two is where that shows. The free-running loss is the raw model's (temperature
// 1, no top-k / top-p), whatever settings drew the samples.
//
// Contexts. Token j of the text (prompt + continuation) is scored with exactly the context
// `Generation.sample` gives it, so a sample is scored as it was drawn:
//   - the window starts at s = max(0, P − T) (P prompt tokens) and grows up to T tokens;
//   - the token after a full window of T is scored from the last h tokens before it (a window
//     starting at j − h), which again grows up to T; and so on.
// While prompt + continuation fits in T + 1 tokens this is one window: every token sees all the
// text before it. Logits come from cached decoding (equal to a full forward's over each window).

/// The mean loss over the tokens of one or more continuations.
public struct ContinuationScore: Codable, Equatable, Sendable {
    /// Mean cross-entropy per scored token, nats; nil when no token was scored.
    public var loss: Double?
    /// Tokens scored.
    public var tokens: Int

    public init(loss: Double?, tokens: Int) {
        self.loss = loss
        self.tokens = tokens
    }

    /// The mean of `losses` (nil when empty).
    public init(losses: [Float]) {
        tokens = losses.count
        loss = losses.isEmpty ? nil : losses.reduce(0.0) { $0 + Double($1) } / Double(losses.count)
    }

    enum CodingKeys: String, CodingKey { case loss, tokens }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(loss, forKey: .loss)
        try c.encode(tokens, forKey: .tokens)
    }
}

/// Teacher-forced loss on a real continuation next to free-running loss on the model's samples.
public struct LossComparison: Codable, Equatable, Sendable {
    /// On the reference continuation; nil without one.
    public var teacherForced: ContinuationScore?
    /// Over every token of every sample, pooled (each token counts once).
    public var freeRunning: ContinuationScore
    /// Each sample's own mean.
    public var perSample: [ContinuationScore]

    public init(teacherForced: ContinuationScore?, freeRunning: ContinuationScore, perSample: [ContinuationScore]) {
        self.teacherForced = teacherForced
        self.freeRunning = freeRunning
        self.perSample = perSample
    }

    enum CodingKeys: String, CodingKey {
        case teacherForced = "teacher_forced"
        case freeRunning = "free_running"
        case perSample = "per_sample"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(teacherForced, forKey: .teacherForced)
        try c.encode(freeRunning, forKey: .freeRunning)
        try c.encode(perSample, forKey: .perSample)
    }
}

public enum ContinuationLoss {
    /// Tokens kept when a full context restarts: max(1, T/2).
    public static func restartLength(maxPositions t: Int) -> Int { max(1, t / 2) }

    /// Where the context of each continuation token starts (see the file header): element k is the
    /// first index of the text that token P + k is scored (and sampled) with, so its context is
    /// text[start..<P + k]. `promptLength` ≥ 1.
    public static func contextStarts(promptLength p: Int, continuationLength: Int, maxPositions t: Int) -> [Int] {
        precondition(p >= 1 && continuationLength >= 0 && t >= 1)
        let h = restartLength(maxPositions: t)
        var starts: [Int] = []
        starts.reserveCapacity(continuationLength)
        var s = max(0, p - t)
        for j in p..<(p + continuationLength) {
            if j - s > t { s = j - h }   // the window before j was full: restart from the last h tokens
            starts.append(s)
        }
        return starts
    }

    /// ℓ_j = −log p(text[j] | context) for every token of `continuation` after `prompt` (non-empty),
    /// with the contexts of `contextStarts`.
    public static func tokenLosses(_ model: Transformer, prompt: [Int32], continuation: [Int32]) -> [Float] {
        precondition(!prompt.isEmpty, "scoring needs at least one prompt token")
        precondition(!model.config.isContinuous, "a model with continuous heads has no token loss")
        guard !continuation.isEmpty else { return [] }
        let text = prompt + continuation, v = model.config.vocabSize
        let starts = contextStarts(promptLength: prompt.count, continuationLength: continuation.count,
                                   maxPositions: model.config.maxPositions)
        let kv = KVCache(config: model.config)
        var rowLoss = [Float](repeating: 0, count: kv.chunk), logZ = rowLoss
        var targets = [Int32](repeating: CrossEntropy.ignoreIndex, count: kv.chunk)
        var scratch = [Float](repeating: 0, count: CrossEntropy.chunks * v)
        var losses: [Float] = []
        losses.reserveCapacity(continuation.count)
        var k = 0
        while k < continuation.count {
            // One window: continuation tokens k..<last share the context start s.
            let s = starts[k]
            var last = k + 1
            while last < continuation.count && starts[last] == s { last += 1 }
            let first = prompt.count + k, end = prompt.count + last   // targets text[first..<end]
            // Inputs text[s..<end − 1]; row i predicts text[i + 1]. Calls of ≤ chunk rows keep every row's logits.
            kv.reset()
            var i = s
            while i < end - 1 {
                let n = min(kv.chunk, end - 1 - i)
                model.decode(Array(text[i..<(i + n)]), cache: kv)
                for r in 0..<n { targets[r] = i + r + 1 >= first ? text[i + r + 1] : CrossEntropy.ignoreIndex }
                CrossEntropy.forward(rowLoss: &rowLoss, logZ: &logZ, logits: kv.logits, targets: targets,
                                     rows: n, v: v, scratch: &scratch)
                for r in 0..<n where targets[r] >= 0 { losses.append(rowLoss[r]) }
                i += n
            }
            k = last
        }
        return losses
    }

    /// The mean loss of `continuation` after `prompt`.
    public static func score(_ model: Transformer, prompt: [Int32], continuation: [Int32]) -> ContinuationScore {
        ContinuationScore(losses: tokenLosses(model, prompt: prompt, continuation: continuation))
    }

    /// Teacher-forced loss on `reference` (when given) and free-running loss on `samples`, all
    /// continuations of `prompt` scored by `model`.
    public static func compare(_ model: Transformer, prompt: [Int32], reference: [Int32]?,
                               samples: [[Int32]]) -> LossComparison {
        let perSample = samples.map { tokenLosses(model, prompt: prompt, continuation: $0) }
        return LossComparison(teacherForced: reference.map { score(model, prompt: prompt, continuation: $0) },
                              freeRunning: ContinuationScore(losses: perSample.flatMap { $0 }),
                              perSample: perSample.map { ContinuationScore(losses: $0) })
    }
}
