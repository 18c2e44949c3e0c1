import MyopiaKernels

// Dimensions: B batch, T time, C d_model, NH heads, F MLP width, N = B·T.

/// Where one block's parameters sit in the flat parameter buffer.
struct BlockParameters {
    let ln1Weight, ln1Bias: Int          // (C)
    let attnWeight, attnBias: Int        // (C, 3C), (3C)   attn.c_attn
    let projWeight, projBias: Int        // (C, C), (C)     attn.c_proj
    let ln2Weight, ln2Bias: Int          // (C)
    let fcWeight, fcBias: Int            // (C, F), (F)     mlp.c_fc
    let fcProjWeight, fcProjBias: Int    // (F, C), (C)     mlp.c_proj

    init(_ store: ParameterStore, layer l: Int) {
        let p = "h.\(l)."
        ln1Weight = store.offset(p + "ln_1.weight"); ln1Bias = store.offset(p + "ln_1.bias")
        attnWeight = store.offset(p + "attn.c_attn.weight"); attnBias = store.offset(p + "attn.c_attn.bias")
        projWeight = store.offset(p + "attn.c_proj.weight"); projBias = store.offset(p + "attn.c_proj.bias")
        ln2Weight = store.offset(p + "ln_2.weight"); ln2Bias = store.offset(p + "ln_2.bias")
        fcWeight = store.offset(p + "mlp.c_fc.weight"); fcBias = store.offset(p + "mlp.c_fc.bias")
        fcProjWeight = store.offset(p + "mlp.c_proj.weight"); fcProjBias = store.offset(p + "mlp.c_proj.bias")
    }

    /// GPT-2 layout of one block, in checkpoint order.
    static func layout(layer l: Int, c: Int, f: Int) -> [(String, [Int])] {
        let p = "h.\(l)."
        return [
            (p + "ln_1.weight", [c]), (p + "ln_1.bias", [c]),
            (p + "attn.c_attn.weight", [c, 3 * c]), (p + "attn.c_attn.bias", [3 * c]),
            (p + "attn.c_proj.weight", [c, c]), (p + "attn.c_proj.bias", [c]),
            (p + "ln_2.weight", [c]), (p + "ln_2.bias", [c]),
            (p + "mlp.c_fc.weight", [c, f]), (p + "mlp.c_fc.bias", [f]),
            (p + "mlp.c_proj.weight", [f, c]), (p + "mlp.c_proj.bias", [c]),
        ]
    }
}

/// A pre-norm GPT-2 block: x + attn(ln_1(x)), then + mlp(ln_2(·)).
enum Block {
    /// Reads cache.residIn, writes every cached activation of the block and `residOut` (N, C).
    static func forward(_ a: ActivationCache.Layer, residOut: UnsafeMutablePointer<Float>,
                        w: UnsafeMutablePointer<Float>, p: BlockParameters,
                        b: Int, t: Int, c: Int, nh: Int, f: Int, eps: Float, pattern: AttentionPattern) {
        let n = b * t
        LayerNorm.forward(out: a.ln1, mean: a.ln1Mean, rstd: a.ln1Rstd, inp: a.residIn,
                          weight: w + p.ln1Weight, bias: w + p.ln1Bias, n: n, c: c, eps: eps)
        Linear.forward(out: a.qkv, inp: a.ln1, weight: w + p.attnWeight, bias: w + p.attnBias,
                       n: n, inC: c, outC: 3 * c)
        Attention.forward(z: a.z, probs: a.probs, qkv: a.qkv, b: b, t: t, c: c, nh: nh, pattern: pattern)
        Linear.forwardResidual(out: a.residMid, residual: a.residIn, inp: a.z, weight: w + p.projWeight,
                               bias: w + p.projBias, n: n, inC: c, outC: c)
        LayerNorm.forward(out: a.ln2, mean: a.ln2Mean, rstd: a.ln2Rstd, inp: a.residMid,
                          weight: w + p.ln2Weight, bias: w + p.ln2Bias, n: n, c: c, eps: eps)
        MLP.forward(fcPre: a.fcPre, act: a.act, x: a.ln2, fcWeight: w + p.fcWeight, fcBias: w + p.fcBias,
                    n: n, c: c, f: f)
        Linear.forwardResidual(out: residOut, residual: a.residMid, inp: a.act, weight: w + p.fcProjWeight,
                               bias: w + p.fcProjBias, n: n, inC: f, outC: c)
    }

    /// On entry `s.dResid` holds dL/d residOut; on exit dL/d residIn. Parameter gradients accumulate.
    /// `inputShare` is the flow's share of the off-diagonal key/value gradient that reaches the input.
    static func backward(_ a: ActivationCache.Layer, scratch s: ActivationCache,
                         w: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, p: BlockParameters,
                         b: Int, t: Int, c: Int, nh: Int, f: Int, inputShare: Float) {
        let n = b * t
        // MLP: dAct = dResid · Wprojᵀ, then through GELU and c_fc into dLn.
        Linear.backward(dInp: s.dAct, dWeight: g + p.fcProjWeight, dBias: g + p.fcProjBias, dOut: s.dResid,
                        inp: a.act, weight: w + p.fcProjWeight, n: n, inC: f, outC: c)
        MLP.backward(dx: s.dLn, dFcWeight: g + p.fcWeight, dFcBias: g + p.fcBias, dAct: s.dAct,
                     fcPre: a.fcPre, x: a.ln2, fcWeight: w + p.fcWeight, n: n, c: c, f: f)
        LayerNorm.backward(dInp: s.dResid, dWeight: g + p.ln2Weight, dBias: g + p.ln2Bias, dOut: s.dLn,
                           inp: a.residMid, weight: w + p.ln2Weight, mean: a.ln2Mean, rstd: a.ln2Rstd, n: n, c: c)
        // Attention: dZ = dResid · Wprojᵀ, then through attention and c_attn into dLn.
        Linear.backward(dInp: s.dZ, dWeight: g + p.projWeight, dBias: g + p.projBias, dOut: s.dResid,
                        inp: a.z, weight: w + p.projWeight, n: n, inC: c, outC: c)
        let split = inputShare < 1
        Attention.backward(dqkv: s.dQkv, scratch: s.dScores, dz: s.dZ, qkv: a.qkv, probs: a.probs,
                           b: b, t: t, c: c, nh: nh, dqkvInput: split ? s.dQkvInput : nil, inputShare: inputShare)
        Linear.backward(dInp: s.dLn, dWeight: g + p.attnWeight, dBias: g + p.attnBias, dOut: s.dQkv,
                        inp: a.ln1, weight: w + p.attnWeight, n: n, inC: c, outC: 3 * c,
                        dOutForInput: split ? s.dQkvInput : nil)
        LayerNorm.backward(dInp: s.dResid, dWeight: g + p.ln1Weight, dBias: g + p.ln1Bias, dOut: s.dLn,
                           inp: a.residIn, weight: w + p.ln1Weight, mean: a.ln1Mean, rstd: a.ln1Rstd, n: n, c: c)
    }
}
