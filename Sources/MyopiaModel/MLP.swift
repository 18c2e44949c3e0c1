import Foundation
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

/// The exact GELU (GPT-NeoX `gelu`): x·Φ(x) = ½x(1 + erf(x/√2)).
enum GELUErf {
    static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        Elementwise.forEachRowChunk(count, rowsPerChunk: 1 << 14, (out, input)) { args, i0, i1 in
            let (out, input) = args
            for i in i0..<i1 {
                let x = input[i]
                out[i] = 0.5 * x * (1 + Foundation.erf(x * Float(0.5).squareRoot()))
            }
        }
    }

    /// dInput = dOut · (Φ(x) + x·φ(x)); dInput may alias dOut.
    static func backward(dInput: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, dOut: UnsafePointer<Float>,
                         count: Int) {
        Elementwise.forEachRowChunk(count, rowsPerChunk: 1 << 14, (dInput, input, dOut)) { args, i0, i1 in
            let (dInput, input, dOut) = args
            let invSqrt2 = Float(0.5).squareRoot(), invSqrt2Pi = 1 / Float(2 * Double.pi).squareRoot()
            for i in i0..<i1 {
                let x = input[i]
                let cdf = 0.5 * (1 + Foundation.erf(x * invSqrt2))
                dInput[i] = dOut[i] * (cdf + x * invSqrt2Pi * Foundation.exp(-0.5 * x * x))
            }
        }
    }
}

/// Gemma's gated MLP: act = gelu(gate) ⊙ up with the tanh GELU (`gelu_pytorch_tanh`).
enum GeGLU {
    /// act (N·F) from gate and up (N·F).
    static func forward(act: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                        count: Int) {
        RowOps.geluForward(out: act, input: gate, count: count)
        Elementwise.forEachRowChunk(count, rowsPerChunk: 1 << 14, (act, up)) { args, i0, i1 in
            let (act, up) = args
            for i in i0..<i1 { act[i] *= up[i] }
        }
    }

    /// From dAct: dGate = dAct·up·gelu'(gate) and dUp = dAct·gelu(gate) (N·F, written). dGate may
    /// alias dAct.
    static func backward(dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>,
                         dAct: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        RowOps.geluForward(out: dUp, input: gate, count: count)
        Elementwise.forEachRowChunk(count, rowsPerChunk: 1 << 14, (dGate, dUp, dAct, up)) { args, i0, i1 in
            let (dGate, dUp, dAct, up) = args
            for i in i0..<i1 {
                let d = dAct[i]
                dUp[i] *= d
                dGate[i] = d * up[i]
            }
        }
        RowOps.geluBackward(dInput: dGate, input: gate, dOut: dGate, count: count)
    }
}

extension Architecture.MLP {
    /// act (N·F) from fcPre (the gate) and, gated, up.
    func forward(act: UnsafeMutablePointer<Float>, fcPre: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        switch self {
        case .geluTanh: RowOps.geluForward(out: act, input: fcPre, count: count)
        case .geluErf: GELUErf.forward(out: act, input: fcPre, count: count)
        case .swiGLU: SwiGLU.forward(act: act, gate: fcPre, up: up, count: count)
        case .geGLU: GeGLU.forward(act: act, gate: fcPre, up: up, count: count)
        }
    }

    /// dAct (N·F) becomes ∂L/∂fcPre in place; gated, dUp (N·F) receives ∂L/∂up.
    func backward(dAct: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, fcPre: UnsafePointer<Float>,
                  up: UnsafePointer<Float>, count: Int) {
        switch self {
        case .geluTanh: RowOps.geluBackward(dInput: dAct, input: fcPre, dOut: dAct, count: count)
        case .geluErf: GELUErf.backward(dInput: dAct, input: fcPre, dOut: dAct, count: count)
        case .swiGLU: SwiGLU.backward(dGate: dAct, dUp: dUp, dAct: dAct, gate: fcPre, up: up, count: count)
        case .geGLU: GeGLU.backward(dGate: dAct, dUp: dUp, dAct: dAct, gate: fcPre, up: up, count: count)
        }
    }
}
