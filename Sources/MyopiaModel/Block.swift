import MyopiaKernels

// Dimensions: B batch, T time, C d_model, F MLP width, N = B·T, W = (NH + 2·NKV)·HS the width of
// one position's [q | k | v], A = NH·HS the attention output (GPT-2: W = 3C, A = C).

/// Where one block's parameters sit in the flat parameter buffer, for either family. A trunk block's
/// keys start with `h.{l}.` / `model.layers.{l}.`; an extra prediction head's block (docs/DESIGN.md §3)
/// has the same keys under `mtp.{j}.`:
///
///   GPT-2 (h.{l}.*)                       Llama (model.layers.{l}.*)
///   ln_1 (LayerNorm)                      input_layernorm (RMSNorm)
///   attn.c_attn → [q | k | v]             self_attn.q_proj, k_proj, v_proj → [q | k | v], then RoPE
///   attn.c_proj                           self_attn.o_proj
///   ln_2                                  post_attention_layernorm
///   mlp.c_fc → GELU                       mlp.gate_proj, up_proj → silu(gate) ⊙ up
///   mlp.c_proj                            mlp.down_proj
struct BlockParameters {
    let norm1: NormParameters
    /// The projections that fill each row of [q | k | v], with the column each starts at.
    let qkv: [(dense: Dense, column: Int)]
    let attnOut: Dense
    let norm2: NormParameters
    /// c_fc or gate_proj (its output is cached as fcPre).
    let mlpIn: Dense
    /// up_proj (SwiGLU only).
    let up: Dense?
    let mlpOut: Dense

    /// The key prefix of trunk block l: `h.{l}.` (GPT-2) or `model.layers.{l}.` (Llama).
    static func prefix(_ family: ModelConfig.Family, layer l: Int) -> String {
        switch family {
        case .gpt2: return "h.\(l)."
        case .llama: return "model.layers.\(l)."
        }
    }

    /// The key prefix of the block of extra prediction head j (2…N): `mtp.{j}.`.
    static func prefix(predictionHead j: Int) -> String { "mtp.\(j)." }

    /// The block whose keys start with `p` (`prefix(_:layer:)` or `prefix(predictionHead:)`).
    init(_ store: ParameterStore, config: ModelConfig, prefix p: String) {
        let c = config.dModel, f = config.dMLP
        func o(_ name: String) -> Int { store.offset(name) }
        switch config.family {
        case .gpt2:
            norm1 = NormParameters(weight: o(p + "ln_1.weight"), bias: o(p + "ln_1.bias"))
            qkv = [(Dense(weight: o(p + "attn.c_attn.weight"), bias: o(p + "attn.c_attn.bias"), inC: c, outC: 3 * c,
                          outIn: false), 0)]
            attnOut = Dense(weight: o(p + "attn.c_proj.weight"), bias: o(p + "attn.c_proj.bias"), inC: c, outC: c, outIn: false)
            norm2 = NormParameters(weight: o(p + "ln_2.weight"), bias: o(p + "ln_2.bias"))
            mlpIn = Dense(weight: o(p + "mlp.c_fc.weight"), bias: o(p + "mlp.c_fc.bias"), inC: c, outC: f, outIn: false)
            up = nil
            mlpOut = Dense(weight: o(p + "mlp.c_proj.weight"), bias: o(p + "mlp.c_proj.bias"), inC: f, outC: c, outIn: false)
        case .llama:
            let sh = AttentionShape(config)
            func linear(_ name: String, _ inC: Int, _ outC: Int) -> Dense {
                Dense(weight: o(p + name + ".weight"), bias: nil, inC: inC, outC: outC, outIn: true)
            }
            norm1 = NormParameters(weight: o(p + "input_layernorm.weight"), bias: nil)
            qkv = [(linear("self_attn.q_proj", c, sh.out), 0),
                   (linear("self_attn.k_proj", c, sh.nkv * sh.hs), sh.keyColumn),
                   (linear("self_attn.v_proj", c, sh.nkv * sh.hs), sh.valueColumn)]
            attnOut = linear("self_attn.o_proj", sh.out, c)
            norm2 = NormParameters(weight: o(p + "post_attention_layernorm.weight"), bias: nil)
            mlpIn = linear("mlp.gate_proj", c, f)
            up = linear("mlp.up_proj", c, f)
            mlpOut = linear("mlp.down_proj", f, c)
        }
    }

    /// One block's parameters in checkpoint order (Hugging Face's state-dict order), keys starting with `p`.
    static func layout(_ config: ModelConfig, prefix p: String) -> [(String, [Int])] {
        let c = config.dModel, f = config.dMLP
        switch config.family {
        case .gpt2:
            return [
                (p + "ln_1.weight", [c]), (p + "ln_1.bias", [c]),
                (p + "attn.c_attn.weight", [c, 3 * c]), (p + "attn.c_attn.bias", [3 * c]),
                (p + "attn.c_proj.weight", [c, c]), (p + "attn.c_proj.bias", [c]),
                (p + "ln_2.weight", [c]), (p + "ln_2.bias", [c]),
                (p + "mlp.c_fc.weight", [c, f]), (p + "mlp.c_fc.bias", [f]),
                (p + "mlp.c_proj.weight", [f, c]), (p + "mlp.c_proj.bias", [c]),
            ]
        case .llama:
            let sh = AttentionShape(config)
            return [
                (p + "self_attn.q_proj.weight", [sh.out, c]),
                (p + "self_attn.k_proj.weight", [sh.nkv * sh.hs, c]),
                (p + "self_attn.v_proj.weight", [sh.nkv * sh.hs, c]),
                (p + "self_attn.o_proj.weight", [c, sh.out]),
                (p + "mlp.gate_proj.weight", [f, c]),
                (p + "mlp.up_proj.weight", [f, c]),
                (p + "mlp.down_proj.weight", [c, f]),
                (p + "input_layernorm.weight", [c]),
                (p + "post_attention_layernorm.weight", [c]),
            ]
        }
    }
}

/// What every block of a model shares: its dimensions and the rotary table.
struct BlockShape {
    let c: Int, f: Int, eps: Float
    let attention: AttentionShape
    /// Llama: rotates q and k after projection. GPT-2: nil (positions come from wpe).
    let rope: RotaryEmbedding?
}

/// A pre-norm block: x + attn(norm_1(x)), then + mlp(norm_2(·)).
enum Block {
    /// Reads a.residIn (N, C), writes every cached activation of the block and `residOut` (N, C).
    /// `probs` (B, NH, T, T), if given, receives the attention pattern (which self-only and
    /// local-myopic attention need). With `past` (N, W), a reference model's [q | k | v] rows for
    /// this layer, attention is local-myopic: earlier positions' keys and values come from `past`
    /// (LocalMyopic.swift).
    static func forward(_ a: ActivationCache.Layer, residOut: UnsafeMutablePointer<Float>,
                        w: UnsafeMutablePointer<Float>, p: BlockParameters, shape s: BlockShape,
                        b: Int, t: Int, pattern: AttentionPattern, probs: UnsafeMutablePointer<Float>?,
                        past: UnsafePointer<Float>? = nil) {
        let n = b * t, c = s.c, width = s.attention.width
        p.norm1.forward(w: w, out: a.ln1, mean: a.ln1Mean, rstd: a.ln1Rstd, inp: a.residIn, n: n, c: c, eps: s.eps)
        for (dense, column) in p.qkv { dense.forward(w: w, out: a.qkv + column, ld: width, inp: a.ln1, n: n) }
        if let rope = s.rope {
            // q and k are the first NH + NKV heads of each row.
            Elementwise.forEachRowChunk(n, (rope, a.qkv, width, s.attention.nh + s.attention.nkv, t)) { args, r0, r1 in
                let (rope, qkv, width, heads, t) = args
                rope.rotate(qkv + r0 * width, ld: width, rows: r1 - r0, heads: heads, firstPosition: r0, period: t)
            }
        }
        if let past {
            precondition(pattern == .causal, "local-myopic attention is causal")
            guard let probs else { preconditionFailure("local-myopic attention keeps its pattern") }
            Attention.forwardLocalMyopic(z: a.z, probs: probs, qkv: a.qkv, past: past, b: b, t: t, shape: s.attention)
        } else {
            Attention.forward(z: a.z, statistics: a.attnStats, probs: probs, qkv: a.qkv, b: b, t: t,
                              shape: s.attention, pattern: pattern)
        }
        forwardAfterAttention(w: w, p: p, shape: s, z: a.z, residIn: a.residIn, residMid: a.residMid, ln2: a.ln2,
                              mean: a.ln2Mean, rstd: a.ln2Rstd, fcPre: a.fcPre, up: a.up, act: a.act, residOut: residOut, n: n)
    }

    /// The block after attention, on n rows: residMid (n, C) = residIn + z (n, A) · W_O (+ b_O), then
    /// residOut (n, C) = residMid + mlp(norm_2(residMid)). Writes norm_2's output and statistics (n),
    /// the MLP's pre-activation (n, F; Llama: the gate), up_proj's output (n, F; Llama only) and the
    /// activation (n, F). The forward pass, cached decoding and the continuation passes all run it.
    static func forwardAfterAttention(w: UnsafeMutablePointer<Float>, p: BlockParameters, shape s: BlockShape,
                                      z: UnsafePointer<Float>, residIn: UnsafePointer<Float>,
                                      residMid: UnsafeMutablePointer<Float>, ln2: UnsafeMutablePointer<Float>,
                                      mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                                      fcPre: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>,
                                      act: UnsafeMutablePointer<Float>, residOut: UnsafeMutablePointer<Float>, n: Int) {
        let c = s.c, f = s.f
        p.attnOut.forwardResidual(w: w, out: residMid, residual: residIn, inp: z, n: n)
        p.norm2.forward(w: w, out: ln2, mean: mean, rstd: rstd, inp: residMid, n: n, c: c, eps: s.eps)
        p.mlpIn.forward(w: w, out: fcPre, ld: f, inp: ln2, n: n)
        if let upProj = p.up {
            upProj.forward(w: w, out: up, ld: f, inp: ln2, n: n)
            SwiGLU.forward(act: act, gate: fcPre, up: up, count: n * f)
        } else {
            RowOps.geluForward(out: act, input: fcPre, count: n * f)
        }
        p.mlpOut.forwardResidual(w: w, out: residOut, residual: residMid, inp: act, n: n)
    }

    /// On entry `s.dResid` holds dL/d residOut; on exit dL/d residIn. Parameter gradients accumulate.
    /// `inputShare` is the flow's share of the off-diagonal key/value gradient that reaches the input.
    /// `probs` is the pattern the forward kept, if it did; then the scores' gradients are left in
    /// `s.scoreGradients`. `past` is the forward's: with it, attention's backward is local-myopic (and
    /// there is no off-diagonal key/value gradient to share).
    static func backward(_ a: ActivationCache.Layer, scratch s: ActivationCache,
                         w: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, p: BlockParameters,
                         shape: BlockShape, b: Int, t: Int, inputShare: Float, probs: UnsafePointer<Float>?,
                         past: UnsafePointer<Float>? = nil) {
        let n = b * t, width = shape.attention.width
        let rows = BlockRows(a, first: 0, count: n)
        backwardMLP(rows, dR: s.dResid, dAct: s.dAct, dUp: s.dUp, dLn: s.dLn, w: w, g: g, p: p, shape: shape)
        // Attention: dZ = dResid · Woᵀ, then through the heads, RoPE and the q/k/v projections into dLn.
        p.attnOut.backwardInput(w: w, dInp: s.dZ, dOut: s.dResid, ld: shape.c, n: n, accumulate: false)
        p.attnOut.backwardParameters(g: g, dOut: s.dResid, ld: shape.c, inp: a.z, n: n)
        let split = inputShare < 1 && past == nil
        if let past {
            guard let probs, let scores = s.scoreGradients else { preconditionFailure("local-myopic attention keeps its pattern") }
            Attention.backwardLocalMyopic(dqkv: s.dQkv, scratch: scores, dz: s.dZ, qkv: a.qkv, past: past,
                                          probs: probs, b: b, t: t, shape: shape.attention)
        } else {
            Attention.backward(dqkv: s.dQkv, dz: s.dZ, qkv: a.qkv, statistics: a.attnStats, probs: probs,
                               scoreGradients: probs == nil ? nil : s.scoreGradients, b: b, t: t, shape: shape.attention,
                               dqkvInput: split ? s.dQkvInput : nil, inputShare: inputShare)
        }
        if let rope = shape.rope {
            let heads = shape.attention.nh + shape.attention.nkv
            Elementwise.forEachRowChunk(n, (rope, s.dQkv, s.dQkvInput, width, heads, t, split)) { args, r0, r1 in
                let (rope, dQkv, dQkvInput, width, heads, t, split) = args
                rope.rotate(dQkv + r0 * width, ld: width, rows: r1 - r0, heads: heads, firstPosition: r0,
                            period: t, inverse: true)
                if split {
                    rope.rotate(dQkvInput + r0 * width, ld: width, rows: r1 - r0, heads: heads, firstPosition: r0,
                                period: t, inverse: true)
                }
            }
        }
        for (i, (dense, column)) in p.qkv.enumerated() {
            dense.backwardInput(w: w, dInp: s.dLn, dOut: (split ? s.dQkvInput : s.dQkv) + column, ld: width, n: n,
                                accumulate: i > 0)
            dense.backwardParameters(g: g, dOut: s.dQkv + column, ld: width, inp: a.ln1, n: n)
        }
        p.norm1.backward(w: w, g: g, dInp: s.dResid, dOut: s.dLn, inp: a.residIn, mean: a.ln1Mean, rstd: a.ln1Rstd,
                         n: n, c: shape.c)
    }

    /// The MLP half of backward over `rows.count` rows: dR (rows, C) holds dL/d residOut on entry and
    /// dL/d residMid on exit. dAct, dUp (rows, F) and dLn (rows, C) are scratch. Parameter gradients
    /// accumulate at `g`; with g nil (the horizon's channels) they are not formed and every GEMM runs
    /// on the calling thread, with `sink` (2C floats) taking the norm's discarded gradients.
    static func backwardMLP(_ r: BlockRows, dR: UnsafeMutablePointer<Float>, dAct: UnsafeMutablePointer<Float>,
                            dUp: UnsafeMutablePointer<Float>, dLn: UnsafeMutablePointer<Float>,
                            w: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>?, p: BlockParameters,
                            shape s: BlockShape, sink: UnsafeMutablePointer<Float>? = nil) {
        let n = r.count, c = s.c, f = s.f, parallel = g != nil
        p.mlpOut.backwardInput(w: w, dInp: dAct, dOut: dR, ld: c, n: n, accumulate: false, parallel: parallel)
        if let g { p.mlpOut.backwardParameters(g: g, dOut: dR, ld: c, inp: r.act, n: n) }
        if let up = p.up {
            SwiGLU.backward(dGate: dAct, dUp: dUp, dAct: dAct, gate: r.fcPre, up: r.up, count: n * f)
            p.mlpIn.backwardInput(w: w, dInp: dLn, dOut: dAct, ld: f, n: n, accumulate: false, parallel: parallel)
            up.backwardInput(w: w, dInp: dLn, dOut: dUp, ld: f, n: n, accumulate: true, parallel: parallel)
            if let g { up.backwardParameters(g: g, dOut: dUp, ld: f, inp: r.ln2, n: n) }
        } else {
            RowOps.geluBackward(dInput: dAct, input: r.fcPre, dOut: dAct, count: n * f)
            p.mlpIn.backwardInput(w: w, dInp: dLn, dOut: dAct, ld: f, n: n, accumulate: false, parallel: parallel)
        }
        if let g { p.mlpIn.backwardParameters(g: g, dOut: dAct, ld: f, inp: r.ln2, n: n) }
        p.norm2.backward(w: w, g: g, sink: sink, dInp: dR, dOut: dLn, inp: r.residMid, mean: r.ln2Mean, rstd: r.ln2Rstd,
                         n: n, c: c)
    }
}

/// Rows first…first + count − 1 of one layer's cached activations (N-row buffers).
struct BlockRows {
    let a: ActivationCache.Layer
    let first: Int, count: Int
    let c: Int, f: Int

    init(_ a: ActivationCache.Layer, first: Int, count: Int) {
        self.a = a; self.first = first; self.count = count
        c = a.c; f = a.f
    }

    var residIn: UnsafeMutablePointer<Float> { a.residIn + first * c }
    var residMid: UnsafeMutablePointer<Float> { a.residMid + first * c }
    var ln1Mean: UnsafeMutablePointer<Float> { a.ln1Mean + first }
    var ln1Rstd: UnsafeMutablePointer<Float> { a.ln1Rstd + first }
    var ln2: UnsafeMutablePointer<Float> { a.ln2 + first * c }
    var ln2Mean: UnsafeMutablePointer<Float> { a.ln2Mean + first }
    var ln2Rstd: UnsafeMutablePointer<Float> { a.ln2Rstd + first }
    var fcPre: UnsafeMutablePointer<Float> { a.fcPre + first * f }
    var up: UnsafeMutablePointer<Float> { a.up + first * f }
    var act: UnsafeMutablePointer<Float> { a.act + first * f }
}
