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

/// Llama's gated MLP: act = silu(gate) ⊙ up, with silu(x) = x·σ(x); down_proj is applied by the block.
enum SwiGLU {
    /// act (N·F) from gate and up (N·F).
    static func forward(act: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                        count: Int) {
        Elementwise.forEachRowChunk(count, rowsPerChunk: 1 << 14, (act, gate, up)) { args, i0, i1 in
            let (act, gate, up) = args
            let e = act + i0
            for i in i0..<i1 { act[i] = -gate[i] }
            RowOps.exp(e, e, count: i1 - i0)                         // e^(−gate)
            for i in i0..<i1 { act[i] = gate[i] / (1 + act[i]) * up[i] }
        }
    }

    /// From dAct: dGate and dUp (N·F, written). dGate may alias dAct.
    /// silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
    static func backward(dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>,
                         dAct: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        Elementwise.forEachRowChunk(count, rowsPerChunk: 1 << 14, (dGate, dUp, dAct, gate, up)) { args, i0, i1 in
            let (dGate, dUp, dAct, gate, up) = args
            let e = dUp + i0
            for i in i0..<i1 { dUp[i] = -gate[i] }
            RowOps.exp(e, e, count: i1 - i0)
            for i in i0..<i1 {
                let sigma = 1 / (1 + dUp[i]), x = gate[i], d = dAct[i]
                dUp[i] = d * x * sigma
                dGate[i] = d * up[i] * sigma * (1 + x * (1 - sigma))
            }
        }
    }
}
