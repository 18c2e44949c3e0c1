import MyopiaKernels

// Dimensions: N rows (B·T), C d_model, F MLP width (GPT-2: 4C).

/// GPT-2 MLP: c_fc (C → F), GELU (tanh form), c_proj (F → C).
enum MLP {
    /// fcPre (N, F) = x · Wfc + bfc ; act (N, F) = gelu(fcPre). (c_proj is applied by the block.)
    static func forward(fcPre: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>,
                        x: UnsafePointer<Float>, fcWeight: UnsafePointer<Float>, fcBias: UnsafePointer<Float>,
                        n: Int, c: Int, f: Int) {
        Linear.forward(out: fcPre, inp: x, weight: fcWeight, bias: fcBias, n: n, inC: c, outC: f)
        RowOps.geluForward(out: act, input: fcPre, count: n * f)
    }

    /// From dAct (N, F) (overwritten with dfcPre): dx (N, C) written; Wfc, bfc gradients accumulated.
    static func backward(dx: UnsafeMutablePointer<Float>, dFcWeight: UnsafeMutablePointer<Float>,
                         dFcBias: UnsafeMutablePointer<Float>, dAct: UnsafeMutablePointer<Float>,
                         fcPre: UnsafePointer<Float>, x: UnsafePointer<Float>, fcWeight: UnsafePointer<Float>,
                         n: Int, c: Int, f: Int) {
        RowOps.geluBackward(dInput: dAct, input: fcPre, dOut: dAct, count: n * f)
        Linear.backward(dInp: dx, dWeight: dFcWeight, dBias: dFcBias, dOut: dAct, inp: x,
                        weight: fcWeight, n: n, inC: c, outC: f)
    }
}
