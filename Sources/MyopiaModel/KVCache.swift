import Foundation
import MyopiaKernels

// Dimensions: L layers, P positions held (≤ maxPositions), C d_model, NH query heads, NKV key/value
// heads, HS head size, F MLP width, V vocab, n new rows in one call, W = (NH + 2·NKV)·HS,
// A = NH·HS, KV = NKV·HS.

/// Keys and values of every layer for the positions decoded so far, so that each new token costs
/// one row of work instead of a forward pass over the whole context. Keys are kept after their norms and RoPE.
public final class KVCache {
    public let capacity: Int
    /// Positions held: the next token goes to position `length`.
    public internal(set) var length = 0
    public let chunk: Int
    /// Whether decoding reads the model's `quantizedDecoding` weights (where it has them).
    public let quantized: Bool
    let keys: UnsafeMutablePointer<Float>      // (L, P, KV)
    let values: UnsafeMutablePointer<Float>    // (L, P, KV)
    /// Scratch for up to `chunk` new rows: one block's buffers (its residIn is the residual stream).
    let layer: ActivationCache.Layer
    let ln: UnsafeMutablePointer<Float>        // (n, C) the final norm's output
    let mean: UnsafeMutablePointer<Float>      // (n)
    let rstd: UnsafeMutablePointer<Float>      // (n)
    let scores: UnsafeMutablePointer<Float>    // (NH, n, P)
    /// Logits of the last call's rows, (n, V).
    public let logits: UnsafeMutablePointer<Float>
    private let arena = BufferArena()

    /// A cache for `config`'s model holding up to `capacity` positions (default: all it has),
    /// taking new tokens `chunk` rows at a time (prompt processing).
    public init(config: ModelConfig, capacity: Int? = nil, chunk: Int = 64, quantized: Bool = false) {
        self.quantized = quantized
        self.capacity = min(capacity ?? config.maxPositions, config.maxPositions)
        self.chunk = max(1, min(chunk, self.capacity))
        let arena = self.arena
        func floats(_ count: Int) -> UnsafeMutablePointer<Float> { arena.floats(count) }
        let n = self.chunk, p = self.capacity, c = config.dModel
        let kv = config.kvHeads * config.headSize
        keys = floats(config.nLayers * p * kv)
        values = floats(config.nLayers * p * kv)
        layer = ActivationCache.Layer.allocate(config, rows: n, attentionRows: 0, arena: arena)
        ln = floats(n * c); mean = floats(n); rstd = floats(n)
        scores = floats(config.nHeads * n * p)
        logits = floats(n * config.vocabSize)
    }

    public func reset() { length = 0 }
}

extension Transformer {
    /// Appends `tokens` at positions cache.length… and returns the logits (V) of the last one.
    /// The logits equal those of a full forward pass over the whole sequence.
    @discardableResult
    public func decode(_ tokens: [Int32], cache: KVCache) -> UnsafePointer<Float> {
        precondition(!config.isContinuous, "a model with continuous heads does not decode tokens")
        precondition(flow != .localMyopic, "cached decoding does not support the local-myopic flow (its past is a reference model's)")
        precondition(!tokens.isEmpty && cache.length + tokens.count <= cache.capacity, "the KV cache is full")
        var start = 0
        while start < tokens.count {
            let n = min(cache.chunk, tokens.count - start)
            tokens.withUnsafeBufferPointer { decodeChunk($0.baseAddress! + start, count: n, cache: cache) }
            start += n
        }
        let n = (tokens.count - 1) % cache.chunk + 1
        return UnsafePointer(cache.logits + (n - 1) * config.vocabSize)
    }

    /// Forward for n ≤ chunk new rows at positions p0 = cache.length …, attending to the cache
    /// (within each layer's window).
    private func decodeChunk(_ tokens: UnsafePointer<Int32>, count n: Int, cache kv: KVCache) {
        let p0 = kv.length, c = config.dModel
        let a = kv.layer, p = kv.capacity
        let w = params.weights, q = kv.quantized ? quantizedDecoding : nil
        embed(out: a.residIn, tokens: tokens, b: 1, t: n, firstPosition: p0)
        for l in 0..<config.nLayers {
            let b = blocks[l], shape = shapes[l], sh = shape.attention, hs = sh.hs, width = sh.width
            let kvWidth = sh.nkv * hs
            let keys = kv.keys + l * p * kvWidth, values = kv.values + l * p * kvWidth   // (P, KV)
            Block.forwardQKV(a, w: w, p: b, shape: shape, n: n, firstPosition: p0, period: nil, quantized: q)
            for i in 0..<n {
                (keys + (p0 + i) * kvWidth).update(from: a.qkv + i * width + sh.keyColumn, count: kvWidth)
                (values + (p0 + i) * kvWidth).update(from: a.qkv + i * width + sh.valueColumn, count: kvWidth)
            }
            let total = p0 + n
            // One new token against a short context is less work than handing heads to threads.
            let headsInParallel = n * total * hs * sh.nh >= 1 << 18
            let selfOnly = attentionPattern == .selfOnly
            let attend = { (h: Int) in
                Transformer.attendToCache(z: a.z, qkv: a.qkv, rows: n, firstPosition: p0, head: h, keys: keys,
                                          values: values, scores: kv.scores + h * kv.chunk * p, shape: sh,
                                          selfOnly: selfOnly)
            }
            if headsInParallel { Parallel.forEach(sh.nh, attend) } else { for h in 0..<sh.nh { attend(h) } }
            Block.forwardAfterAttention(w: w, p: b, shape: shape, a, residOut: a.residIn, n: n, quantized: q)
        }
        finalNorm.forward(w: w, out: kv.ln, mean: kv.mean, rstd: kv.rstd, inp: a.residIn, n: n, c: c, eps: eps)
        logits(kv.logits, from: kv.ln, rows: n, quantized: q)
        kv.length += n
    }
}

extension Transformer {
    /// Head h of attention for n query rows of [q | k | v] (row stride W) at positions p0 … p0+n−1,
    /// against the cached keys and values (P, KV) of positions 0 … p0+n−1 (within the layer's
    /// window): z's head-h columns (row stride A). `scores` holds n·(p0+n) floats. Each row's sums
    /// depend only on its own position, never on n or on other rows, so a token decoded in a batch
    /// of sequences gets the bits it gets decoded alone (BatchedDecoding.swift).
    static func attendToCache(z: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>, rows n: Int,
                              firstPosition p0: Int, head h: Int, keys: UnsafePointer<Float>,
                              values: UnsafePointer<Float>, scores s: UnsafeMutablePointer<Float>,
                              shape sh: AttentionShape, selfOnly: Bool) {
        let hs = sh.hs, width = sh.width, out = sh.out, kvWidth = sh.nkv * hs, kvh = h / sh.group
        if selfOnly {
            for i in 0..<n {
                (z + i * out + h * hs).update(from: qkv + i * width + sh.valueColumn + kvh * hs, count: hs)
            }
            return
        }
        let total = p0 + n                                                    // s: (n, total)
        GEMM.multiply(m: n, n: total, k: hs, a: qkv + h * hs, lda: width, transA: false,
                      b: keys + kvh * hs, ldb: kvWidth, transB: true, c: s, ldc: total, accumulate: false,
                      parallel: false)
        for i in 0..<n {
            let row = s + i * total, visible = p0 + i + 1
            sh.softmaxRow(row, query: p0 + i, keys: visible)
            if visible < total { (row + visible).update(repeating: 0, count: total - visible) }
        }
        GEMM.multiply(m: n, n: hs, k: total, a: s, lda: total, transA: false, b: values + kvh * hs,
                      ldb: kvWidth, transB: false, c: z + h * hs, ldc: out, accumulate: false, parallel: false)
    }
}
