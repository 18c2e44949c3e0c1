import Foundation
import MyopiaKernels

// Dimensions: L layers, P positions held (≤ maxPositions), C d_model, NH heads, HS head size,
// F MLP width, V vocab, n new rows in one call.

/// Keys and values of every layer for the positions decoded so far, so that each new token costs
/// one row of work instead of a forward pass over the whole context.
public final class KVCache {
    public let capacity: Int
    /// Positions held: the next token goes to position `length`.
    public internal(set) var length = 0
    let c: Int, f: Int, v: Int, chunk: Int
    let keys: UnsafeMutablePointer<Float>      // (L, P, C)
    let values: UnsafeMutablePointer<Float>    // (L, P, C)
    // Scratch for up to `chunk` new rows.
    let x: UnsafeMutablePointer<Float>         // (n, C) residual stream
    let ln: UnsafeMutablePointer<Float>        // (n, C)
    let mean: UnsafeMutablePointer<Float>      // (n)
    let rstd: UnsafeMutablePointer<Float>      // (n)
    let qkv: UnsafeMutablePointer<Float>       // (n, 3C)
    let z: UnsafeMutablePointer<Float>         // (n, C)
    let mid: UnsafeMutablePointer<Float>       // (n, C)
    let fc: UnsafeMutablePointer<Float>        // (n, F)
    let act: UnsafeMutablePointer<Float>       // (n, F)
    let scores: UnsafeMutablePointer<Float>    // (NH, n, P)
    /// Logits of the last call's rows, (n, V).
    public let logits: UnsafeMutablePointer<Float>
    private let arena = BufferArena()

    /// A cache for `config`'s model holding up to `capacity` positions (default: all it has),
    /// taking new tokens `chunk` rows at a time (prompt processing).
    public init(config: ModelConfig, capacity: Int? = nil, chunk: Int = 64) {
        self.capacity = min(capacity ?? config.maxPositions, config.maxPositions)
        c = config.dModel; f = config.dMLP; v = config.vocabSize
        self.chunk = max(1, min(chunk, self.capacity))
        let arena = self.arena
        func floats(_ count: Int) -> UnsafeMutablePointer<Float> { arena.floats(count) }
        let n = self.chunk, p = self.capacity
        keys = floats(config.nLayers * p * c)
        values = floats(config.nLayers * p * c)
        x = floats(n * c); ln = floats(n * c); mean = floats(n); rstd = floats(n)
        qkv = floats(n * 3 * c); z = floats(n * c); mid = floats(n * c)
        fc = floats(n * f); act = floats(n * f)
        scores = floats(config.nHeads * n * p)
        logits = floats(n * v)
    }

    public func reset() { length = 0 }
}

extension Transformer {
    /// Appends `tokens` at positions cache.length… and returns the logits (V) of the last one.
    /// The logits equal those of a full forward pass over the whole sequence.
    @discardableResult
    public func decode(_ tokens: [Int32], cache: KVCache) -> UnsafePointer<Float> {
        precondition(!tokens.isEmpty && cache.length + tokens.count <= cache.capacity, "the KV cache is full")
        var start = 0
        while start < tokens.count {
            let n = min(cache.chunk, tokens.count - start)
            decodeChunk(Array(tokens[start..<(start + n)]), cache: cache)
            start += n
        }
        let n = (tokens.count - 1) % cache.chunk + 1
        return UnsafePointer(cache.logits + (n - 1) * config.vocabSize)
    }

    /// Forward for n ≤ chunk new rows at positions p0 = cache.length …, attending to the cache.
    private func decodeChunk(_ tokens: [Int32], cache kv: KVCache) {
        let n = tokens.count, p0 = kv.length, c = config.dModel, f = config.dMLP
        let nh = config.nHeads, hs = c / nh, p = kv.capacity, v = config.vocabSize
        let eps = Float(config.layerNormEps), scale = 1 / Float(hs).squareRoot()
        let w = params.weights
        // x (n, C) = wte[token] + wpe[p0 + i]
        for i in 0..<n {
            let e = w + wte + Int(tokens[i]) * c, pos = w + wpe + (p0 + i) * c
            for j in 0..<c { kv.x[i * c + j] = e[j] + pos[j] }
        }
        for l in 0..<config.nLayers {
            let b = blocks[l]
            let keys = kv.keys + l * p * c, values = kv.values + l * p * c   // (P, C)
            LayerNorm.forward(out: kv.ln, mean: kv.mean, rstd: kv.rstd, inp: kv.x, weight: w + b.ln1Weight,
                              bias: w + b.ln1Bias, n: n, c: c, eps: eps)
            Linear.forward(out: kv.qkv, inp: kv.ln, weight: w + b.attnWeight, bias: w + b.attnBias, n: n, inC: c, outC: 3 * c)
            for i in 0..<n {
                (keys + (p0 + i) * c).update(from: kv.qkv + i * 3 * c + c, count: c)
                (values + (p0 + i) * c).update(from: kv.qkv + i * 3 * c + 2 * c, count: c)
            }
            let total = p0 + n
            Parallel.forEach(nh) { h in
                if attentionPattern == .selfOnly {
                    for i in 0..<n { (kv.z + i * c + h * hs).update(from: kv.qkv + i * 3 * c + 2 * c + h * hs, count: hs) }
                    return
                }
                let s = kv.scores + h * kv.chunk * p                                     // (n, total)
                GEMM.multiply(m: n, n: total, k: hs, a: kv.qkv + h * hs, lda: 3 * c, transA: false,
                              b: keys + h * hs, ldb: c, transB: true, c: s, ldc: total, accumulate: false, parallel: false)
                for i in 0..<n {
                    let row = s + i * total, visible = p0 + i + 1
                    RowOps.softmax(row, count: visible, scale: scale)
                    if visible < total { (row + visible).update(repeating: 0, count: total - visible) }
                }
                GEMM.multiply(m: n, n: hs, k: total, a: s, lda: total, transA: false, b: values + h * hs, ldb: c,
                              transB: false, c: kv.z + h * hs, ldc: c, accumulate: false, parallel: false)
            }
            Linear.forwardResidual(out: kv.mid, residual: kv.x, inp: kv.z, weight: w + b.projWeight, bias: w + b.projBias,
                                   n: n, inC: c, outC: c)
            LayerNorm.forward(out: kv.ln, mean: kv.mean, rstd: kv.rstd, inp: kv.mid, weight: w + b.ln2Weight,
                              bias: w + b.ln2Bias, n: n, c: c, eps: eps)
            MLP.forward(fcPre: kv.fc, act: kv.act, x: kv.ln, fcWeight: w + b.fcWeight, fcBias: w + b.fcBias, n: n, c: c, f: f)
            Linear.forwardResidual(out: kv.x, residual: kv.mid, inp: kv.act, weight: w + b.fcProjWeight,
                                   bias: w + b.fcProjBias, n: n, inC: f, outC: c)
        }
        LayerNorm.forward(out: kv.ln, mean: kv.mean, rstd: kv.rstd, inp: kv.x, weight: w + lnfWeight, bias: w + lnfBias,
                          n: n, c: c, eps: eps)
        GEMM.multiply(m: n, n: v, k: c, a: kv.ln, lda: c, transA: false, b: w + wte, ldb: c, transB: true,
                      c: kv.logits, ldc: v, accumulate: false)
        kv.length += n
    }
}
