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

/// RMSNorm over the last dimension (Hugging Face Llama): out = x · rstd · weight with
/// rstd = 1/√(mean(x²) + eps), computed in fp32 as `LlamaRMSNorm` does for fp32 models.
enum RMSNorm {
    /// out (N, C) and rstd (N) from inp (N, C).
    static func forward(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, n: Int, c: Int, eps: Float) {
        Elementwise.forEachRowChunk(n, (out, rstd, inp, weight, c, eps)) { args, r0, r1 in
            let (out, rstd, inp, weight, c, eps) = args
            for r in r0..<r1 {
                let x = inp + r * c, o = out + r * c
                let s = Float(RowOps.sumOfSquares(x, count: c))
                let inv = 1 / (s / Float(c) + eps).squareRoot()
                rstd[r] = inv
                for j in 0..<c { o[j] = weight[j] * (x[j] * inv) }
            }
        }
    }

    /// dInp (N, C) += ..., dWeight (C) += Σ_rows dOut ⊙ x ⊙ rstd. With y = x·r and r = (mean x² + eps)^−½,
    /// dx = r·(w⊙dOut) − x·r³·Σ_j(w⊙dOut⊙x)_j / C. dWeight is summed over rows in a fixed order
    /// (parallel over columns), so it does not depend on the thread count.
    static func backward(dInp: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                         dOut: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                         rstd: UnsafePointer<Float>, n: Int, c: Int) {
        Elementwise.forEachRowChunk(n, (dInp, dOut, inp, weight, rstd, c)) { args, r0, r1 in
            let (dInp, dOut, inp, weight, rstd, c) = args
            for r in r0..<r1 {
                let x = inp + r * c, d = dOut + r * c, dx = dInp + r * c
                var dot: Float = 0
                for j in 0..<c { dot += weight[j] * d[j] * x[j] }
                let inv = rstd[r], k = dot * inv * inv * inv / Float(c)
                for j in 0..<c { dx[j] += inv * weight[j] * d[j] - k * x[j] }
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
/// RMSNorm (Llama: weight only). `mean` is unused by RMSNorm.
struct NormParameters {
    let weight: Int
    let bias: Int?

    /// Forward over n rows of c; for RMSNorm `bias` is nil and `mean` untouched.
    func forward(w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                 rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, n: Int, c: Int, eps: Float) {
        if let bias {
            LayerNorm.forward(out: out, mean: mean, rstd: rstd, inp: inp, weight: w + weight, bias: w + bias,
                              n: n, c: c, eps: eps)
        } else {
            RMSNorm.forward(out: out, rstd: rstd, inp: inp, weight: w + weight, n: n, c: c, eps: eps)
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
            RMSNorm.backward(dInp: dInp, dWeight: dWeight, dOut: dOut, inp: inp, weight: w + weight, rstd: rstd, n: n, c: c)
        }
    }
}
