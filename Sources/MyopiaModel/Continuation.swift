import Foundation
import MyopiaKernels

// Dimensions: B batch, T time of the training window, C d_model, NH query heads, NKV key/value
// heads, HS head size, F MLP width, V vocab, K continuation length (horizon), m candidates in one
// call, R = m·K new rows, W = (NH + 2·NKV)·HS, A = NH·HS, KV = NKV·HS.
//
// Continuation passes (the consequence game, docs/games.md). A training window is inputs
// x_0 … x_{T−1} and targets x_1 … x_T. For position t and a candidate token v put in place of
// x_{t+1}, the continuation is the K rows
//     inputs  v, x_{t+2}, …, x_{t+K}          at positions t+1 … t+K
//     targets x_{t+2}, …, x_{t+1+K}           (targets[t+1 … t+K] of the window)
// attending to the prefix x_0 … x_t, whose keys and values the training forward already holds
// (ActivationCache.layers[l].qkv, rows (b, 0 … t); keys after their norms and RoPE). Only the R new rows are
// computed: each layer's queries meet the prefix's keys in one GEMM for all candidates, then each
// candidate's own K × K causal block. The mean cross-entropy over the K targets is the candidate's
// continuation loss, and equals that of a full forward pass over the window with v substituted.

/// Scratch for `Transformer.continuationLosses`: the new rows of up to `candidates` continuations
/// of `horizon` tokens each, after a prefix of up to `seqLen` − 1 positions. Allocated once; a call
/// allocates nothing. One scratch serves one call at a time (parallel callers each own one).
public final class ContinuationScratch {
    /// K: continuation tokens scored after the substituted one's position.
    public let horizon: Int
    /// The most candidates one call takes.
    public let candidates: Int
    /// The longest training window (T) the prefixes come from.
    public let seqLen: Int
    let tokens: UnsafeMutablePointer<Int32>    // (R) the continuation's inputs
    /// One block's buffers for the R rows (its residIn is the residual stream).
    let layer: ActivationCache.Layer
    let ln: UnsafeMutablePointer<Float>        // (R, C) the final norm's output
    let mean: UnsafeMutablePointer<Float>      // (R)
    let rstd: UnsafeMutablePointer<Float>      // (R)
    let scores: UnsafeMutablePointer<Float>    // (R, T) one head's scores: prefix, then the candidate's own rows
    let logits: UnsafeMutablePointer<Float>    // (R, V)
    private let arena = BufferArena()

    public init(config: ModelConfig, horizon: Int, candidates: Int, seqLen: Int) {
        precondition(horizon >= 1 && candidates >= 1 && horizon < seqLen)
        self.horizon = horizon
        self.candidates = candidates
        self.seqLen = seqLen
        let arena = self.arena
        func floats(_ count: Int) -> UnsafeMutablePointer<Float> { arena.floats(count) }
        let r = candidates * horizon, c = config.dModel
        tokens = arena.ints(r)
        layer = ActivationCache.Layer.allocate(config, rows: r, attentionRows: 0, arena: arena)
        ln = floats(r * c); mean = floats(r); rstd = floats(r)
        scores = floats(r * seqLen)
        logits = floats(r * config.vocabSize)
    }
}

extension Transformer {
    /// For window `row` of the last forward pass (`cache`, with targets) and position t, the mean
    /// cross-entropy over targets[t+1 … t+K] when x_{t+1} is replaced by each of the `count`
    /// candidate tokens: `losses[j]` for candidate j (K = scratch.horizon; needs t + K ≤ T − 1).
    /// The prefix x_0 … x_t is not recomputed: its keys and values are read from the cache. Targets
    /// marked −1 are left out of the mean (0 when none counts). Allocates nothing; GEMMs run on the
    /// calling thread's share of the pool (inline inside a parallel-for). Under the bigram flow each
    /// position attends to itself only, as in forward; the local-myopic flow is not supported.
    public func continuationLosses(cache: ActivationCache, row b: Int, position t: Int,
                                   candidates: UnsafePointer<Int32>, count m: Int,
                                   scratch s: ContinuationScratch, losses: UnsafeMutablePointer<Float>) {
        precondition(!config.isContinuous, "a model with continuous heads has no tokens to substitute")
        precondition(flow != .localMyopic, "continuation passes do not support the local-myopic flow")
        precondition(cache.hasTargets, "continuation passes score the window's targets")
        let k = s.horizon, bigT = cache.seqLen
        precondition(b >= 0 && b < cache.batch && t >= 0 && t + k <= bigT - 1, "position \(t) has no \(k)-token continuation")
        precondition(m >= 1 && m <= s.candidates && bigT <= s.seqLen)
        let c = config.dModel, v = config.vocabSize, rows = m * k
        let ld = t + 1 + k                                        // scores row: t + 1 prefix columns, K own
        let w = params.weights, a = s.layer
        let window = b * bigT                                     // the window's first row in the cache

        // Inputs: the candidate, then the window's own x_{t+2} … x_{t+K}.
        for j in 0..<m {
            s.tokens[j * k] = candidates[j]
            for i in 1..<k { s.tokens[j * k + i] = cache.tokens[window + t + 1 + i] }
        }
        embed(out: a.residIn, tokens: s.tokens, b: m, t: k, firstPosition: t + 1)
        let selfOnly = attentionPattern == .selfOnly
        for l in 0..<config.nLayers {
            let p = blocks[l], shape = shapes[l], sh = shape.attention, hs = sh.hs, width = sh.width, out = sh.out
            let prefix = UnsafePointer(cache.layers[l].qkv + window * width)   // (t + 1, W), rows of the window
            // Row j·K + i sits at position t + 1 + i.
            Block.forwardQKV(a, w: w, p: p, shape: shape, n: rows, firstPosition: t + 1, period: k)
            for h in 0..<sh.nh {
                let kvh = h / sh.group
                let key = sh.keyColumn + kvh * hs, value = sh.valueColumn + kvh * hs
                if selfOnly {
                    for r in 0..<rows { (a.z + r * out + h * hs).update(from: a.qkv + r * width + value, count: hs) }
                    continue
                }
                // Scores against the prefix, every candidate's rows at once: (R, t + 1).
                GEMM.multiply(m: rows, n: t + 1, k: hs, a: a.qkv + h * hs, lda: width, transA: false,
                              b: prefix + key, ldb: width, transB: true, c: s.scores, ldc: ld, accumulate: false,
                              parallel: false)
                // Each candidate's own K × K block (its upper triangle is masked below).
                for j in 0..<m {
                    let own = a.qkv + j * k * width
                    GEMM.multiply(m: k, n: k, k: hs, a: own + h * hs, lda: width, transA: false,
                                  b: own + key, ldb: width, transB: true, c: s.scores + j * k * ld + t + 1, ldc: ld,
                                  accumulate: false, parallel: false)
                }
                for r in 0..<rows {
                    // Columns are positions 0 … t + K: the prefix's, then the candidate's own.
                    let scoreRow = s.scores + r * ld, visible = t + 2 + r % k
                    sh.softmaxRow(scoreRow, query: t + 1 + r % k, keys: visible)
                    if visible < ld { (scoreRow + visible).update(repeating: 0, count: ld - visible) }
                }
                // z = a_prefix · v_prefix + a_own · v_own.
                GEMM.multiply(m: rows, n: hs, k: t + 1, a: s.scores, lda: ld, transA: false, b: prefix + value,
                              ldb: width, transB: false, c: a.z + h * hs, ldc: out, accumulate: false, parallel: false)
                for j in 0..<m {
                    GEMM.multiply(m: k, n: hs, k: k, a: s.scores + j * k * ld + t + 1, lda: ld, transA: false,
                                  b: a.qkv + j * k * width + value, ldb: width, transB: false,
                                  c: a.z + j * k * out + h * hs, ldc: out, accumulate: true, parallel: false)
                }
            }
            Block.forwardAfterAttention(w: w, p: p, shape: shape, a, residOut: a.residIn, n: rows)
        }
        finalNorm.forward(w: w, out: s.ln, mean: s.mean, rstd: s.rstd, inp: a.residIn, n: rows, c: c, eps: eps)
        logits(s.logits, from: s.ln, rows: rows)
        // ℓ = log Σ exp(logits) − logit[target], averaged over the K targets (in Double).
        for j in 0..<m {
            var total = 0.0, counted = 0
            for i in 0..<k {
                let target = cache.targets[window + t + 1 + i]
                guard target >= 0 else { continue }
                let logitRow = s.logits + (j * k + i) * v
                let picked = logitRow[Int(target)]
                total += Double(RowOps.softmax(logitRow, count: v) - picked)
                counted += 1
            }
            losses[j] = counted > 0 ? Float(total / Double(counted)) : 0
        }
    }
}

extension ActivationCache {
    /// Row r (of B·T) of the last forward pass's logits (V), without a copy: valid until backward
    /// overwrites them with their gradient.
    public func logitRow(_ r: Int) -> UnsafePointer<Float> {
        precondition(!config.isContinuous && r >= 0 && r < batch * seqLen)
        return UnsafePointer(logits + r * config.vocabSize)
    }

    /// The mean ℓ over `positions` of window `row` of the last forward pass, leaving out the
    /// positions whose target is −1 (0 when none counts): what `Transformer.continuationLosses` returns for
    /// the window's own token.
    public func meanLoss(row: Int, positions: Range<Int>) -> Double {
        precondition(hasTargets && row >= 0 && row < batch && positions.lowerBound >= 0 && positions.upperBound <= seqLen)
        var total = 0.0, counted = 0
        for i in positions where targets[row * seqLen + i] >= 0 {
            total += Double(rowLoss[row * seqLen + i])
            counted += 1
        }
        return counted > 0 ? total / Double(counted) : 0
    }

    /// The target of window `row` at `position` in the last forward pass (x_{t+1}; −1: none).
    public func target(row: Int, position: Int) -> Int32 {
        precondition(hasTargets && row >= 0 && row < batch && position >= 0 && position < seqLen)
        return targets[row * seqLen + position]
    }
}
