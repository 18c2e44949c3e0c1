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
