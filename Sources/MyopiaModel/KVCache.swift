import Foundation
import MyopiaKernels

// Dimensions: L layers, P positions held (≤ maxPositions), C d_model, NH query heads, NKV key/value
// heads, HS head size, F MLP width, V vocab, n new rows in one call, W = (NH + 2·NKV)·HS,
// A = NH·HS, KV = NKV·HS.

/// Keys and values of every layer for the positions decoded so far, so that each new token costs
/// one row of work instead of a forward pass over the whole context. Llama keys are kept after RoPE.
public final class KVCache {
    public let capacity: Int
    /// Positions held: the next token goes to position `length`.
    public internal(set) var length = 0
    public let chunk: Int
    let keys: UnsafeMutablePointer<Float>      // (L, P, KV)
    let values: UnsafeMutablePointer<Float>    // (L, P, KV)
    // Scratch for up to `chunk` new rows.
    let x: UnsafeMutablePointer<Float>         // (n, C) residual stream
    let ln: UnsafeMutablePointer<Float>        // (n, C)
    let mean: UnsafeMutablePointer<Float>      // (n)
    let rstd: UnsafeMutablePointer<Float>      // (n)
    let qkv: UnsafeMutablePointer<Float>       // (n, W)
    let z: UnsafeMutablePointer<Float>         // (n, A)
    let mid: UnsafeMutablePointer<Float>       // (n, C)
    let fc: UnsafeMutablePointer<Float>        // (n, F)
    let up: UnsafeMutablePointer<Float>        // (n, F) Llama only
    let act: UnsafeMutablePointer<Float>       // (n, F)
    let scores: UnsafeMutablePointer<Float>    // (NH, n, P)
    /// Logits of the last call's rows, (n, V).
    public let logits: UnsafeMutablePointer<Float>
    private let arena = BufferArena()

    /// A cache for `config`'s model holding up to `capacity` positions (default: all it has),
    /// taking new tokens `chunk` rows at a time (prompt processing).
    public init(config: ModelConfig, capacity: Int? = nil, chunk: Int = 64) {
        self.capacity = min(capacity ?? config.maxPositions, config.maxPositions)
        self.chunk = max(1, min(chunk, self.capacity))
        let arena = self.arena
        func floats(_ count: Int) -> UnsafeMutablePointer<Float> { arena.floats(count) }
        let n = self.chunk, p = self.capacity, c = config.dModel, f = config.dMLP
        let kv = config.kvHeads * config.headSize
        keys = floats(config.nLayers * p * kv)
        values = floats(config.nLayers * p * kv)
        x = floats(n * c); ln = floats(n * c); mean = floats(n); rstd = floats(n)
        qkv = floats(n * config.qkvWidth); z = floats(n * config.attentionWidth); mid = floats(n * c)
        fc = floats(n * f); up = floats(config.family == .llama ? n * f : 0); act = floats(n * f)
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

    /// Forward for n ≤ chunk new rows at positions p0 = cache.length …, attending to the cache.
    private func decodeChunk(_ tokens: UnsafePointer<Int32>, count n: Int, cache kv: KVCache) {
        let p0 = kv.length, c = config.dModel, v = config.vocabSize
        let sh = blockShape.attention, hs = sh.hs, width = sh.width, out = sh.out, p = kv.capacity
        let kvWidth = sh.nkv * hs, eps = blockShape.eps, scale = 1 / Float(hs).squareRoot()
        let w = params.weights
        Embedding.forward(out: kv.x, tokens: tokens, wte: w + wte, wpe: wpe.map { w + $0 + p0 * c }, b: 1, t: n, c: c)
        for l in 0..<config.nLayers {
            let b = blocks[l]
            let keys = kv.keys + l * p * kvWidth, values = kv.values + l * p * kvWidth   // (P, KV)
            b.norm1.forward(w: w, out: kv.ln, mean: kv.mean, rstd: kv.rstd, inp: kv.x, n: n, c: c, eps: eps)
            for (dense, column) in b.qkv { dense.forward(w: w, out: kv.qkv + column, ld: width, inp: kv.ln, n: n) }
            blockShape.rope?.rotate(kv.qkv, ld: width, rows: n, heads: sh.nh + sh.nkv, firstPosition: p0)
            for i in 0..<n {
                (keys + (p0 + i) * kvWidth).update(from: kv.qkv + i * width + sh.keyColumn, count: kvWidth)
                (values + (p0 + i) * kvWidth).update(from: kv.qkv + i * width + sh.valueColumn, count: kvWidth)
            }
            let total = p0 + n
            // One new token against a short context is less work than handing heads to threads.
            let headsInParallel = n * total * hs * sh.nh >= 1 << 18
            let selfOnly = attentionPattern == .selfOnly
            let attend = { (h: Int) in
                let kvh = h / sh.group
                if selfOnly {
                    for i in 0..<n {
                        (kv.z + i * out + h * hs).update(from: kv.qkv + i * width + sh.valueColumn + kvh * hs, count: hs)
                    }
                    return
                }
                let s = kv.scores + h * kv.chunk * p                                     // (n, total)
                GEMM.multiply(m: n, n: total, k: hs, a: kv.qkv + h * hs, lda: width, transA: false,
                              b: keys + kvh * hs, ldb: kvWidth, transB: true, c: s, ldc: total, accumulate: false,
                              parallel: false)
                for i in 0..<n {
                    let row = s + i * total, visible = p0 + i + 1
                    RowOps.softmax(row, count: visible, scale: scale)
                    if visible < total { (row + visible).update(repeating: 0, count: total - visible) }
                }
                GEMM.multiply(m: n, n: hs, k: total, a: s, lda: total, transA: false, b: values + kvh * hs,
                              ldb: kvWidth, transB: false, c: kv.z + h * hs, ldc: out, accumulate: false, parallel: false)
            }
            if headsInParallel { Parallel.forEach(sh.nh, attend) } else { for h in 0..<sh.nh { attend(h) } }
            Block.forwardAfterAttention(w: w, p: b, shape: blockShape, z: kv.z, residIn: kv.x, residMid: kv.mid,
                                        ln2: kv.ln, mean: kv.mean, rstd: kv.rstd, fcPre: kv.fc, up: kv.up,
                                        act: kv.act, residOut: kv.x, n: n)
        }
        finalNorm.forward(w: w, out: kv.ln, mean: kv.mean, rstd: kv.rstd, inp: kv.x, n: n, c: c, eps: eps)
        GEMM.multiply(m: n, n: v, k: c, a: kv.ln, lda: c, transA: false, b: w + lmHead, ldb: c, transB: true,
                      c: kv.logits, ldc: v, accumulate: false)
        kv.length += n
    }
}
