import Foundation
import MyopiaKernels

// Dimensions: B batch, T time of the training window, C d_model, NH query heads, NKV key/value
// heads, HS head size, F MLP width, V vocab, K continuation length (horizon), P continuations in
// one call (each its own window and position), R = P·K new rows, W = (NH + 2·NKV)·HS, A = NH·HS.
//
// Batched continuation passes (the consequence game's sampled estimator, docs/games.md). The same
// continuations as Continuation.swift, but P of them at once, each with its own window b_j,
// position t_j and first token: continuation j is the K rows
//     inputs  x̂_j, x_{t_j+2}, …, x_{t_j+K}     at positions t_j+1 … t_j+K of window b_j
//     targets x_{t_j+2}, …, x_{t_j+1+K}
// Everything that acts on rows alone (embedding, norms, the Q/K/V, output and MLP projections, the
// final norm, lm_head) runs once over all R rows, so the weights are read once per call rather
// than once per continuation, through the parallel GEMM. Attention stays per continuation: its
// rows meet the prefix keys and values of window b_j (ActivationCache.layers[l].qkv, rows
// (b_j, 0 … t_j); keys after their norms and RoPE) and its own K × K causal block, one work item per
// (continuation, head). Every row's arithmetic is the same whatever the thread count.

/// Scratch for the batched `Transformer.continuationLosses`: the new rows of up to `capacity`
/// continuations of `horizon` tokens each, from windows of up to `seqLen` tokens. Allocated once; a
/// call allocates nothing. One scratch serves one call at a time.
public final class ContinuationBatchScratch {
    /// K: continuation tokens scored after the substituted one's position.
    public let horizon: Int
    /// The most continuations one call takes.
    public let capacity: Int
    /// The longest training window (T) the prefixes come from.
    public let seqLen: Int
    let tokens: UnsafeMutablePointer<Int32>    // (R) the continuations' inputs
    let targets: UnsafeMutablePointer<Int32>   // (R) their targets (−1: left out)
    /// One block's buffers for the R rows (its residIn is the residual stream).
    let layer: ActivationCache.Layer
    let ln: UnsafeMutablePointer<Float>        // (R, C) the final norm's output
    let mean: UnsafeMutablePointer<Float>      // (R)
    let rstd: UnsafeMutablePointer<Float>      // (R)
    let logits: UnsafeMutablePointer<Float>    // (R, V)
    let rowLoss: UnsafeMutablePointer<Float>   // (R) ℓ of each row with a target
    private let arena = BufferArena()

    public init(config: ModelConfig, horizon: Int, capacity: Int, seqLen: Int) {
        precondition(horizon >= 1 && capacity >= 1 && horizon < seqLen)
        self.horizon = horizon
        self.capacity = capacity
        self.seqLen = seqLen
        let arena = self.arena
        func floats(_ count: Int) -> UnsafeMutablePointer<Float> { arena.floats(count) }
        let r = capacity * horizon, c = config.dModel
        tokens = arena.ints(r); targets = arena.ints(r)
        layer = ActivationCache.Layer.allocate(config, rows: r, attentionRows: 0, arena: arena)
        ln = floats(r * c); mean = floats(r); rstd = floats(r)
        logits = floats(r * config.vocabSize)
        rowLoss = floats(r)
    }
}

extension Transformer {
    /// For `count` continuations of the last forward pass (`cache`, with targets), continuation j
    /// in window `rows[j]` at position `positions[j]` with `firstTokens[j]` in place of x_{t+1}:
    /// `losses[j]` = the mean cross-entropy over targets[t+1 … t+K] (K = scratch.horizon; needs
    /// t + K ≤ T − 1). What `continuationLosses(cache:row:position:candidates:count:scratch:losses:)`
    /// gives for one candidate, for many (window, position) pairs in one pass: the dense layers run
    /// once over all P·K rows on the pool, attention per (continuation, head). Targets marked −1 are
    /// left out of the mean (0 when none counts). Allocates nothing; results do not depend on the
    /// thread count. Under the bigram flow each position attends to itself only; the local-myopic
    /// flow is not supported.
    public func continuationLosses(cache: ActivationCache, rows: UnsafePointer<Int>, positions: UnsafePointer<Int>,
                                   firstTokens: UnsafePointer<Int32>, count p: Int,
                                   scratch s: ContinuationBatchScratch, losses: UnsafeMutablePointer<Float>) {
        precondition(!config.isContinuous, "a model with continuous heads has no tokens to substitute")
        precondition(flow != .localMyopic, "continuation passes do not support the local-myopic flow")
        precondition(cache.hasTargets, "continuation passes score the window's targets")
        let k = s.horizon, bigT = cache.seqLen
        precondition(p >= 0 && p <= s.capacity && bigT <= s.seqLen)
        guard p > 0 else { return }
        let c = config.dModel, n = p * k
        let w = params.weights, a = s.layer

        // Inputs: each continuation's token, then its window's own x_{t+2} … x_{t+K}; its targets.
        for j in 0..<p {
            let b = rows[j], t = positions[j], window = b * bigT
            precondition(b >= 0 && b < cache.batch && t >= 0 && t + k <= bigT - 1, "position \(t) has no \(k)-token continuation")
            s.tokens[j * k] = firstTokens[j]
            for i in 1..<k { s.tokens[j * k + i] = cache.tokens[window + t + 1 + i] }
            for i in 0..<k { s.targets[j * k + i] = cache.targets[window + t + 1 + i] }
            embed(out: a.residIn + j * k * c, tokens: s.tokens + j * k, b: 1, t: k, firstPosition: t + 1)
        }
        let v = config.vocabSize
        for l in 0..<config.nLayers {
            let layer = blocks[l], shape = shapes[l], sh = shape.attention, width = sh.width
            Block.forwardQKV(a, w: w, p: layer, shape: shape, n: n, firstPosition: 0, period: nil, rotating: false)
            if let rope = shape.rope {
                for j in 0..<p {
                    rope.rotate(a.qkv + j * k * width, ld: width, rows: k, heads: sh.nh + sh.nkv,
                                firstPosition: positions[j] + 1)
                }
            }
            // The body captures nothing (its inputs travel as the args tuple), so the parallel-for allocates nothing.
            Parallel.forEach(p * sh.nh, (self, cache, s, l, rows, positions)) { args, item in
                let (model, cache, s, l, rows, positions) = args
                let sh = model.shapes[l].attention, j = item / sh.nh
                model.attendContinuation(cache: cache, scratch: s, layer: l, continuation: j, head: item % sh.nh,
                                         row: rows[j], position: positions[j])
            }
            Block.forwardAfterAttention(w: w, p: layer, shape: shape, a, residOut: a.residIn, n: n)
        }
        finalNorm.forward(w: w, out: s.ln, mean: s.mean, rstd: s.rstd, inp: a.residIn, n: n, c: c, eps: eps)
        logits(s.logits, from: s.ln, rows: n)
        // ℓ = log Σ exp(logits) − logit[target] per row, then averaged over each continuation's K
        // targets in Double, in row order.
        Parallel.forEach(n, (s.logits, s.targets, s.rowLoss, v)) { args, r in
            let (logits, targets, rowLoss, v) = args
            guard targets[r] >= 0 else { return }
            let logitRow = logits + r * v
            let picked = logitRow[Int(targets[r])]
            rowLoss[r] = RowOps.softmax(logitRow, count: v) - picked
        }
        for j in 0..<p {
            var total = 0.0, counted = 0
            for r in (j * k)..<((j + 1) * k) where s.targets[r] >= 0 {
                total += Double(s.rowLoss[r])
                counted += 1
            }
            losses[j] = counted > 0 ? Float(total / Double(counted)) : 0
        }
    }

    /// Head h of continuation j's attention in layer l: its K queries (scratch.qkv rows j·K …) against
    /// the prefix of window `row` (positions 0 … t) and its own keys, written to scratch.z. Under the
    /// self-only pattern each row takes its own value. Scores live in the calling thread's
    /// attention scratch (K × (t + 1 + K)); the GEMMs run on the calling thread.
    func attendContinuation(cache: ActivationCache, scratch s: ContinuationBatchScratch, layer l: Int,
                            continuation j: Int, head h: Int, row b: Int, position t: Int) {
        let k = s.horizon, sh = shapes[l].attention, hs = sh.hs, width = sh.width, out = sh.out
        let kvh = h / sh.group, key = sh.keyColumn + kvh * hs, value = sh.valueColumn + kvh * hs
        let own = s.layer.qkv + j * k * width       // (K, W) the continuation's rows
        let z = s.layer.z + j * k * out + h * hs    // (K, HS) with row stride A
        if attentionPattern == .selfOnly {
            for i in 0..<k { (z + i * out).update(from: own + i * width + value, count: hs) }
            return
        }
        let prefix = UnsafePointer(cache.layers[l].qkv + b * cache.seqLen * width)   // (t + 1, W)
        let ld = t + 1 + k
        let scores = ThreadScratch.attention(k * ld)                                 // (K, t + 1 + K)
        GEMM.multiply(m: k, n: t + 1, k: hs, a: own + h * hs, lda: width, transA: false,
                      b: prefix + key, ldb: width, transB: true, c: scores, ldc: ld, accumulate: false,
                      parallel: false)
        GEMM.multiply(m: k, n: k, k: hs, a: own + h * hs, lda: width, transA: false,
                      b: own + key, ldb: width, transB: true, c: scores + t + 1, ldc: ld,
                      accumulate: false, parallel: false)
        for i in 0..<k {
            let scoreRow = scores + i * ld, visible = t + 2 + i      // columns: positions 0 … t + K
            sh.softmaxRow(scoreRow, query: t + 1 + i, keys: visible)
            if visible < ld { (scoreRow + visible).update(repeating: 0, count: ld - visible) }
        }
        // z = a_prefix · v_prefix + a_own · v_own.
        GEMM.multiply(m: k, n: hs, k: t + 1, a: scores, lda: ld, transA: false, b: prefix + value,
                      ldb: width, transB: false, c: z, ldc: out, accumulate: false, parallel: false)
        GEMM.multiply(m: k, n: hs, k: k, a: scores + t + 1, lda: ld, transA: false, b: own + value,
                      ldb: width, transB: false, c: z, ldc: out, accumulate: true, parallel: false)
    }
}
