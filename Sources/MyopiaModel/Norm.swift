import MyopiaKernels

// Dimensions: N rows (B·T), C features.

/// LayerNorm over the last dimension (PyTorch semantics: biased variance, eps inside the root).
enum LayerNorm {
    /// out (N, C), mean (N), rstd (N) from inp (N, C).
    static func forward(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                        rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, n: Int, c: Int, eps: Float) {
        RowOps.layerNormForward(out: out, mean: mean, rstd: rstd, input: inp, weight: weight, bias: bias,
                                rows: n, cols: c, eps: eps)
    }

    /// dInp (N, C) += ..., dWeight (C) += ..., dBias (C) += ...
    static func backward(dInp: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                         dBias: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                         inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                         mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, c: Int) {
        RowOps.layerNormBackward(dInput: dInp, dWeight: dWeight, dBias: dBias, dOut: dOut, input: inp,
                                 weight: weight, mean: mean, rstd: rstd, rows: n, cols: c)
    }
}

/// RMSNorm over the last dimension (Hugging Face Llama): out = x · rstd · (offset + weight) with
/// rstd = 1/√(mean(x²) + eps), computed in fp32 as `LlamaRMSNorm` does for fp32 models. The offset
/// is 0 except for Gemma, whose stored weight is the scale less 1.
enum RMSNorm {
    /// out (N, C) and rstd (N) from inp (N, C).
    static func forward(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, n: Int, c: Int, eps: Float,
                        offset: Float = 0) {
        Elementwise.forEachRowChunk(n, (out, rstd, inp, weight, c, eps, offset)) { args, r0, r1 in
            let (out, rstd, inp, weight, c, eps, offset) = args
            for r in r0..<r1 {
                let x = inp + r * c, o = out + r * c
                let s = Float(RowOps.sumOfSquares(x, count: c))
                let inv = 1 / (s / Float(c) + eps).squareRoot()
                rstd[r] = inv
                for j in 0..<c { o[j] = (offset + weight[j]) * (x[j] * inv) }
            }
        }
    }

    /// dInp (N, C) += ..., dWeight (C) += Σ_rows dOut ⊙ x ⊙ rstd. With y = x·r and r = (mean x² + eps)^−½,
    /// dx = r·(w⊙dOut) − x·r³·Σ_j(w⊙dOut⊙x)_j / C. dWeight is summed over rows in a fixed order
    /// (parallel over columns), so it does not depend on the thread count.
    static func backward(dInp: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                         dOut: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                         rstd: UnsafePointer<Float>, n: Int, c: Int, offset: Float = 0) {
        Elementwise.forEachRowChunk(n, (dInp, dOut, inp, weight, rstd, c, offset)) { args, r0, r1 in
            let (dInp, dOut, inp, weight, rstd, c, offset) = args
            for r in r0..<r1 {
                let x = inp + r * c, d = dOut + r * c, dx = dInp + r * c
                var dot: Float = 0
                for j in 0..<c { dot += (offset + weight[j]) * d[j] * x[j] }
                let inv = rstd[r], k = dot * inv * inv * inv / Float(c)
                for j in 0..<c { dx[j] += inv * (offset + weight[j]) * d[j] - k * x[j] }
            }
        }
        let block = 64
        // The body captures nothing (its inputs travel as the args tuple), so the parallel-for allocates nothing.
        Parallel.forEach((c + block - 1) / block, (dWeight, dOut, inp, rstd, n, c, block)) { args, chunk in
            let (dWeight, dOut, inp, rstd, n, c, block) = args
            let j0 = chunk * block, j1 = min(c, j0 + block)
            for r in 0..<n {
                let x = inp + r * c, d = dOut + r * c, inv = rstd[r]
                for j in j0..<j1 { dWeight[j] += d[j] * x[j] * inv }
            }
        }
    }
}

/// Which norm a model uses, and where its parameters sit: LayerNorm (GPT-2: weight and bias) or
/// RMSNorm (Llama: weight only, scaled as offset + weight). `mean` is unused by RMSNorm.
struct NormParameters {
    let weight: Int
    let bias: Int?
    var offset: Float = 0

    /// Forward over n rows of c; for RMSNorm `bias` is nil and `mean` untouched.
    func forward(w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                 rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, n: Int, c: Int, eps: Float) {
        if let bias {
            LayerNorm.forward(out: out, mean: mean, rstd: rstd, inp: inp, weight: w + weight, bias: w + bias,
                              n: n, c: c, eps: eps)
        } else {
            RMSNorm.forward(out: out, rstd: rstd, inp: inp, weight: w + weight, n: n, c: c, eps: eps, offset: offset)
        }
    }

    /// dInp += the input gradient; the parameter gradients are added at `g` (nil: not formed).
    func backward(w: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>?, sink: UnsafeMutablePointer<Float>? = nil,
                  dInp: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                  mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, c: Int) {
        // Without g the parameter gradients go to `sink` (2C floats), which the caller discards.
        precondition(g != nil || sink != nil, "norm backward needs somewhere to put its parameter gradients")
        let dWeight = g.map { $0 + weight } ?? sink!
        if let bias {
            let dBias = g.map { $0 + bias } ?? sink! + c
            if g == nil { sink!.update(repeating: 0, count: 2 * c) }
            LayerNorm.backward(dInp: dInp, dWeight: dWeight, dBias: dBias, dOut: dOut, inp: inp, weight: w + weight,
                               mean: mean, rstd: rstd, n: n, c: c)
        } else {
            if g == nil { sink!.update(repeating: 0, count: c) }
            RMSNorm.backward(dInp: dInp, dWeight: dWeight, dOut: dOut, inp: inp, weight: w + weight, rstd: rstd, n: n, c: c,
                             offset: offset)
        }
    }
}

/// RMSNorm on the queries and keys of each row of [q | k | v] (row stride ld), in place, after the
/// projections and before RoPE: over each head's HS values with one HS-wide weight for the query
/// heads and one for the key heads (Qwen3, `perHead`), or over the whole query projection (NH·HS)
/// and the whole key projection (NKV·HS) with weights as wide (OLMo 2, `wholeProjection`). Values
/// stay unrotated in `raw` (n, (NH + NKV)·HS) with each segment's rstd, for backward.
struct QKNormParameters {
    let wholeProjection: Bool
    let q: Int, k: Int
    let nh: Int, nkv: Int, hs: Int

    /// Normalised segments per row: NH + NKV heads, or the two projections.
    var segments: Int { wholeProjection ? 2 : nh + nkv }
    /// Floats of `raw` a row holds.
    var rawWidth: Int { (nh + nkv) * hs }

    /// Segment s of a row: its first column (raw and [q | k | v] alike: q heads then k heads), its
    /// length and its weight's offset.
    @inline(__always) func segment(_ s: Int) -> (column: Int, count: Int, weight: Int) {
        if wholeProjection { return s == 0 ? (0, nh * hs, q) : (nh * hs, nkv * hs, k) }
        return (s * hs, hs, s < nh ? q : k)
    }

    /// In place on the q and k columns of n rows of qkv; raw (n, rawWidth) and rstd (n, segments) kept.
    func forward(w: UnsafePointer<Float>, qkv: UnsafeMutablePointer<Float>, ld: Int, n: Int,
                 raw: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, eps: Float) {
        Elementwise.forEachRowChunk(n, (self, w, qkv, ld, raw, rstd, eps)) { args, r0, r1 in
            let (p, w, qkv, ld, raw, rstd, eps) = args
            for r in r0..<r1 {
                let row = qkv + r * ld, saved = raw + r * p.rawWidth
                saved.update(from: row, count: p.rawWidth)
                for s in 0..<p.segments {
                    let (column, count, weight) = p.segment(s)
                    let x = saved + column, o = row + column, wt = w + weight
                    let inv = 1 / (Float(RowOps.sumOfSquares(x, count: count)) / Float(count) + eps).squareRoot()
                    rstd[r * p.segments + s] = inv
                    for j in 0..<count { o[j] = wt[j] * (x[j] * inv) }
                }
            }
        }
    }

    /// In place on the q and k columns of n rows of dqkv: ∂L/∂(normalised) becomes ∂L/∂(raw). With
    /// `g`, the weights' gradients accumulate there (summed over rows and heads in a fixed order).
    func backward(w: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>?, dqkv: UnsafeMutablePointer<Float>,
                  ld: Int, n: Int, raw: UnsafePointer<Float>, rstd: UnsafePointer<Float>) {
        if let g {
            for r in 0..<n {
                for s in 0..<segments {
                    let (column, count, weight) = segment(s)
                    let x = raw + r * rawWidth + column, d = dqkv + r * ld + column, inv = rstd[r * segments + s]
                    let dw = g + weight
                    for j in 0..<count { dw[j] += d[j] * x[j] * inv }
                }
            }
        }
        Elementwise.forEachRowChunk(n, (self, w, dqkv, ld, raw, rstd)) { args, r0, r1 in
            let (p, w, dqkv, ld, raw, rstd) = args
            for r in r0..<r1 {
                for s in 0..<p.segments {
                    let (column, count, weight) = p.segment(s)
                    let x = raw + r * p.rawWidth + column, d = dqkv + r * ld + column, wt = w + weight
                    let inv = rstd[r * p.segments + s]
                    var dot: Float = 0
                    for j in 0..<count { dot += wt[j] * d[j] * x[j] }
                    let k = dot * inv * inv * inv / Float(count)
                    for j in 0..<count { d[j] = inv * wt[j] * d[j] - k * x[j] }
                }
            }
        }
    }
}
