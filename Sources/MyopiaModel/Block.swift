import MyopiaKernels

// Dimensions: B batch, T time, C d_model, F MLP width, N = B·T, W = (NH + 2·NKV)·HS the width of
// one position's [q | k | v], A = NH·HS the attention output (GPT-2: W = 3C, A = C).

/// Where one block's parameters sit in the flat parameter buffer, read from the family's
/// `Architecture` (its key map names each one). A trunk block's keys start with the family's layer
/// prefix (`h.{l}.`, `model.layers.{l}.`, `gpt_neox.layers.{l}.`); an extra prediction head's block
/// (docs/DESIGN.md §3) has the same keys under `mtp.{j}.`. Every projection writes its slice of one
/// row of [q | k | v]: GPT-2's c_attn all of it, Llama's q/k/v_proj a third each, GPT-NeoX's fused
/// query_key_value one (head, q/k/v) block of HS rows at a time, since its rows run head by head.
struct BlockParameters {
    /// The norm before attention (nil: OLMo 2, whose attention reads the residual stream).
    let norm1: NormParameters?
    /// The projections that fill each row of [q | k | v], with the column each starts at.
    let qkv: [(dense: Dense, column: Int)]
    let qkNorm: QKNormParameters?
    let attnOut: Dense
    /// Norms on attention's and the MLP's outputs before the residual add (Gemma 2, OLMo 2).
    let postAttentionNorm: NormParameters?
    /// The norm before the MLP (nil: OLMo 2).
    let norm2: NormParameters?
    let postMLPNorm: NormParameters?
    /// c_fc, dense_h_to_4h or gate_proj (its output is cached as fcPre).
    let mlpIn: Dense
    /// up_proj (gated MLPs only).
    let up: Dense?
    let mlpOut: Dense

    /// The key prefix of the block of extra prediction head j (2…N): `mtp.{j}.`.
    static func prefix(predictionHead j: Int) -> String { "mtp.\(j)." }

    /// The block whose keys start with `p` (`Architecture.prefix(layer:)` or `prefix(predictionHead:)`).
    init(_ store: ParameterStore, config: ModelConfig, prefix p: String) {
        let arch = config.architecture, keys = arch.keys, sh = AttentionShape(config)
        let c = config.dModel, f = config.dMLP, hs = sh.hs
        func o(_ name: String) -> Int { store.offset(p + name) }
        func norm(_ name: String?) -> NormParameters? {
            name.map { NormParameters(weight: o($0 + ".weight"), bias: arch.norm == .layerNorm ? o($0 + ".bias") : nil,
                                      offset: arch.normWeightOffset) }
        }
        func dense(_ name: String, _ inC: Int, _ outC: Int, bias: Bool) -> Dense {
            Dense(weight: o(name + ".weight"), bias: bias ? o(name + ".bias") : nil, inC: inC, outC: outC, outIn: !arch.conv1D)
        }
        norm1 = norm(keys.norm1)
        switch arch.qkvLayout {
        case .fusedConv1D:
            qkv = [(dense(keys.qkv!, c, sh.width, bias: arch.qkvBias), 0)]
        case .fusedPerHead:
            let weight = o(keys.qkv! + ".weight"), bias = arch.qkvBias ? o(keys.qkv! + ".bias") : nil
            qkv = (0..<sh.nh).flatMap { h in
                [h * hs, sh.keyColumn + h * hs, sh.valueColumn + h * hs].enumerated().map { j, column in
                    let block = (3 * h + j) * hs
                    return (Dense(weight: weight + block * c, bias: bias.map { $0 + block }, inC: c, outC: hs, outIn: true), column)
                }
            }
        case .separate:
            qkv = [(dense(keys.q!, c, sh.out, bias: arch.qkvBias), 0),
                   (dense(keys.k!, c, sh.nkv * hs, bias: arch.qkvBias), sh.keyColumn),
                   (dense(keys.v!, c, sh.nkv * hs, bias: arch.qkvBias), sh.valueColumn)]
        }
        qkNorm = arch.qkNorm == .none ? nil
            : QKNormParameters(wholeProjection: arch.qkNorm == .wholeProjection, q: o(keys.qNorm! + ".weight"),
                               k: o(keys.kNorm! + ".weight"), nh: sh.nh, nkv: sh.nkv, hs: hs)
        attnOut = dense(keys.attnOut, sh.out, c, bias: arch.outputBias)
        postAttentionNorm = norm(keys.postAttentionNorm)
        norm2 = norm(keys.norm2)
        postMLPNorm = norm(keys.postMLPNorm)
        mlpIn = dense(keys.mlpIn, c, f, bias: arch.mlpBias)
        up = keys.up.map { dense($0, c, f, bias: arch.mlpBias) }
        mlpOut = dense(keys.mlpOut, f, c, bias: arch.mlpBias)
    }

    /// One block's parameters in checkpoint order (Hugging Face's state-dict order), keys starting with `p`.
    static func layout(_ config: ModelConfig, prefix p: String) -> [(String, [Int])] {
        config.architecture.blockLayout(config, prefix: p)
    }
}

/// What a block computes beyond its parameters: its dimensions, its layer's attention (scale,
/// soft-cap, window), the rotary table, the MLP's activation and the residual wiring.
struct BlockShape {
    let c: Int, f: Int, eps: Float
    let attention: AttentionShape
    /// Rotates q and k after projection (and q/k norms); nil with learned positions (GPT-2).
    let rope: RotaryEmbedding?
    let mlp: Architecture.MLP
    /// x + attn(norm₁(x)) + mlp(norm₂(x)) (GPT-NeoX).
    let parallelResidual: Bool

    /// Layer l's shape in a model of `config`, sharing `rope`.
    init(_ config: ModelConfig, layer l: Int, rope: RotaryEmbedding?) {
        c = config.dModel
        f = config.dMLP
        eps = Float(config.layerNormEps)
        attention = AttentionShape(config, layer: l)
        self.rope = rope
        let arch = config.architecture
        mlp = arch.mlp
        parallelResidual = arch.parallelResidual
    }
}

/// A block, as its family's description wires it: h = norm₁(x) (or x), [q | k | v] = projections
/// of h (q/k norms, RoPE), attention, its output projection (and post-norm) added to x; then the MLP
/// on norm₂ of that (or of x, in parallel), its output (post-normed) added.
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
        let n = b * t
        forwardQKV(a, w: w, p: p, shape: s, n: n, firstPosition: 0, period: t)
        if let past {
            precondition(pattern == .causal, "local-myopic attention is causal")
            guard let probs else { preconditionFailure("local-myopic attention keeps its pattern") }
            Attention.forwardLocalMyopic(z: a.z, probs: probs, statistics: a.attnStats, qkv: a.qkv, past: past,
                                         b: b, t: t, shape: s.attention)
        } else {
            Attention.forward(z: a.z, statistics: a.attnStats, probs: probs, qkv: a.qkv, b: b, t: t,
                              shape: s.attention, pattern: pattern)
        }
        forwardAfterAttention(w: w, p: p, shape: s, a, residOut: residOut, n: n)
    }

    /// The block up to attention, on n rows: h = norm₁(residIn) (a.ln1; without a norm a.ln1 is
    /// residIn itself), [q | k | v] = the projections of h into a.qkv, the q/k norms (keeping the
    /// unnormalised values in a.qkRaw), then RoPE with row r at position firstPosition + r, or
    /// firstPosition + r mod `period` when rows hold sequences of `period` positions each.
    static func forwardQKV(_ a: ActivationCache.Layer, w: UnsafeMutablePointer<Float>, p: BlockParameters,
                           shape s: BlockShape, n: Int, firstPosition: Int, period: Int?, parallel: Bool = true,
                           rotating: Bool = true, quantized: QuantizedWeights? = nil) {
        let width = s.attention.width
        p.norm1?.forward(w: w, out: a.ln1, mean: a.ln1Mean, rstd: a.ln1Rstd, inp: a.residIn, n: n, c: s.c, eps: s.eps)
        for (dense, column) in p.qkv {
            dense.forward(w: w, out: a.qkv + column, ld: width, inp: a.ln1, n: n, parallel: parallel, quantized: quantized)
        }
        p.qkNorm?.forward(w: w, qkv: a.qkv, ld: width, n: n, raw: a.qkRaw, rstd: a.qkRstd, eps: s.eps)
        guard rotating, let rope = s.rope else { return }
        // q and k are the first NH + NKV heads of each row.
        let heads = s.attention.nh + s.attention.nkv
        if parallel {
            Elementwise.forEachRowChunk(n, (rope, a.qkv, width, heads, firstPosition, period)) { args, r0, r1 in
                let (rope, qkv, width, heads, base, period) = args
                rope.rotate(qkv + r0 * width, ld: width, rows: r1 - r0, heads: heads, firstPosition: r0, period: period,
                            base: base)
            }
        } else {
            rope.rotate(a.qkv, ld: width, rows: n, heads: heads, period: period, base: firstPosition)
        }
    }

    /// The block after attention, on n rows of `a`: residMid = residIn + (post-norm of) z (n, A) · W_O
    /// (+ b_O), then residOut = residMid + (post-norm of) mlp(norm₂(residMid or, in parallel,
    /// residIn)). Writes norm₂'s output and statistics, the MLP's pre-activation (n, F; gated: the
    /// gate), up_proj's output (gated only), the activation, and the post-norms' inputs and
    /// statistics. residOut may be residIn. The forward pass, cached decoding and the continuation
    /// passes all run it.
    static func forwardAfterAttention(w: UnsafeMutablePointer<Float>, p: BlockParameters, shape s: BlockShape,
                                      _ a: ActivationCache.Layer, residOut: UnsafeMutablePointer<Float>, n: Int,
                                      parallel: Bool = true, quantized q: QuantizedWeights? = nil) {
        let c = s.c, f = s.f
        if let post = p.postAttentionNorm {
            p.attnOut.forward(w: w, out: a.attnRaw, ld: c, inp: a.z, n: n, parallel: parallel, quantized: q)
            post.forward(w: w, out: a.residMid, mean: a.attnMean, rstd: a.attnRstd, inp: a.attnRaw, n: n, c: c, eps: s.eps)
            Elementwise.add(into: a.residMid, a.residIn, count: n * c)
        } else {
            p.attnOut.forwardResidual(w: w, out: a.residMid, residual: a.residIn, inp: a.z, n: n, parallel: parallel, quantized: q)
        }
        let mlpInput = s.parallelResidual ? a.residIn : a.residMid
        p.norm2?.forward(w: w, out: a.ln2, mean: a.ln2Mean, rstd: a.ln2Rstd, inp: mlpInput, n: n, c: c, eps: s.eps)
        p.mlpIn.forward(w: w, out: a.fcPre, ld: f, inp: a.ln2, n: n, parallel: parallel, quantized: q)
        p.up?.forward(w: w, out: a.up, ld: f, inp: a.ln2, n: n, parallel: parallel, quantized: q)
        s.mlp.forward(act: a.act, fcPre: a.fcPre, up: a.up, count: n * f)
        if let post = p.postMLPNorm {
            p.mlpOut.forward(w: w, out: a.mlpRaw, ld: c, inp: a.act, n: n, parallel: parallel, quantized: q)
            post.forward(w: w, out: residOut, mean: a.mlpMean, rstd: a.mlpRstd, inp: a.mlpRaw, n: n, c: c, eps: s.eps)
            Elementwise.add(into: residOut, a.residMid, count: n * c)
        } else {
            p.mlpOut.forwardResidual(w: w, out: residOut, residual: a.residMid, inp: a.act, n: n, parallel: parallel, quantized: q)
        }
    }

    /// On entry `s.dResid` holds dL/d residOut; on exit dL/d residIn. Parameter gradients accumulate.
    /// `inputShare` is the flow's share of the off-diagonal key/value gradient that reaches the input.
    /// `probs` is the pattern the forward kept, if it did; then the scores' gradients are left in
    /// `s.scoreGradients`. `past` is the forward's: with it, attention's backward is local-myopic (and
    /// there is no off-diagonal key/value gradient to share).
    /// `normalizedQKGradient` (N·W floats), for a q/k-norm block, receives dQkv between RoPE's backward
    /// and the norms' (∂L/∂ the normed, unrotated q and k; named activations read it).
    static func backward(_ a: ActivationCache.Layer, scratch s: ActivationCache,
                         w: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, p: BlockParameters,
                         shape: BlockShape, b: Int, t: Int, inputShare: Float, probs: UnsafePointer<Float>?,
                         past: UnsafePointer<Float>? = nil, normalizedQKGradient: UnsafeMutablePointer<Float>? = nil) {
        let n = b * t
        let rows = BlockRows(a, first: 0, count: n)
        backwardMLP(rows, dR: s.dResid, dAct: s.dAct, dUp: s.dUp, dLn: s.dLn, dPost: s.dPost, dParallel: s.dParallel,
                    w: w, g: g, p: p, shape: shape)
        // Attention: dZ = d(attention output) · Woᵀ, then through the heads into dQkv.
        backwardAttentionOutput(rows, dR: s.dResid, dPost: s.dPost, dZ: s.dZ, w: w, g: g, p: p, shape: shape)
        let split = inputShare < 1 && past == nil
        if let past {
            guard let probs, let scores = s.scoreGradients else { preconditionFailure("local-myopic attention keeps its pattern") }
            Attention.backwardLocalMyopic(dqkv: s.dQkv, scratch: scores, dz: s.dZ, qkv: a.qkv, past: past,
                                          probs: probs, statistics: a.attnStats, b: b, t: t, shape: shape.attention)
        } else {
            Attention.backward(dqkv: s.dQkv, dz: s.dZ, qkv: a.qkv, statistics: a.attnStats, probs: probs,
                               scoreGradients: probs == nil ? nil : s.scoreGradients, b: b, t: t, shape: shape.attention,
                               dqkvInput: split ? s.dQkvInput : nil, inputShare: inputShare)
        }
        backwardQKV(rows, dQkv: s.dQkv, dQkvInput: split ? s.dQkvInput : nil, dLn: s.dLn, dR: s.dResid,
                    dParallel: s.dParallel, w: w, g: g, p: p, shape: shape, firstPosition: 0, period: t,
                    normalizedQKGradient: normalizedQKGradient)
    }

    /// From dR = dL/d residMid (r.count rows): the attention output's gradient — through the
    /// post-attention norm into dPost when there is one — and then dZ (rows, A) = that · Woᵀ. W_O's
    /// gradients accumulate at `g` (nil: not formed, GEMMs on the calling thread, norm gradients to
    /// `sink`).
    static func backwardAttentionOutput(_ r: BlockRows, dR: UnsafePointer<Float>, dPost: UnsafeMutablePointer<Float>,
                                        dZ: UnsafeMutablePointer<Float>, w: UnsafeMutablePointer<Float>,
                                        g: UnsafeMutablePointer<Float>?, p: BlockParameters, shape s: BlockShape,
                                        sink: UnsafeMutablePointer<Float>? = nil) {
        let n = r.count, c = s.c, parallel = g != nil
        var dOut = dR
        if let post = p.postAttentionNorm {
            dPost.update(repeating: 0, count: n * c)
            post.backward(w: w, g: g, sink: sink, dInp: dPost, dOut: dR, inp: r.attnRaw, mean: r.attnMean,
                          rstd: r.attnRstd, n: n, c: c)
            dOut = UnsafePointer(dPost)
        }
        p.attnOut.backwardInput(w: w, dInp: dZ, dOut: dOut, ld: c, n: n, accumulate: false, parallel: parallel)
        if let g { p.attnOut.backwardParameters(g: g, dOut: dOut, ld: c, inp: r.z, n: n) }
    }

    /// RoPE backwards on the q and k heads of n rows of d (row stride width): the inverse rotation.
    private static func rotateBack(_ d: UnsafeMutablePointer<Float>, rope: RotaryEmbedding, width: Int, heads: Int, n: Int,
                                   firstPosition: Int, period: Int?, parallel: Bool) {
        guard parallel else {
            return rope.rotate(d, ld: width, rows: n, heads: heads, period: period, base: firstPosition, inverse: true)
        }
        Elementwise.forEachRowChunk(n, (rope, d, width, heads, firstPosition, period)) { args, r0, r1 in
            let (rope, d, width, heads, base, period) = args
            rope.rotate(d + r0 * width, ld: width, rows: r1 - r0, heads: heads, firstPosition: r0, period: period,
                        base: base, inverse: true)
        }
    }

    /// From dQkv (rows, W) = dL/d(q, k after RoPE, v) to the block's input: RoPE backwards, the q/k
    /// norms, the projections into dLn = dL/d norm₁'s output, then norm₁, whose input gradient is
    /// added to dR (which holds dL/d residMid, the residual path); in parallel, the MLP's input
    /// gradient waiting in dParallel is added too. With `dQkvInput` (a myopic flow), the projections'
    /// input gets that instead (their weights still get dQkv). Row r sits at position
    /// firstPosition + r (modulo `period`). With g nil: no parameter gradients, one thread.
    static func backwardQKV(_ r: BlockRows, dQkv: UnsafeMutablePointer<Float>, dQkvInput: UnsafeMutablePointer<Float>?,
                            dLn: UnsafeMutablePointer<Float>, dR: UnsafeMutablePointer<Float>,
                            dParallel: UnsafePointer<Float>, w: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>?,
                            p: BlockParameters, shape s: BlockShape, firstPosition: Int, period: Int?,
                            sink: UnsafeMutablePointer<Float>? = nil, normalizedQKGradient: UnsafeMutablePointer<Float>? = nil) {
        let n = r.count, width = s.attention.width, parallel = g != nil
        if let rope = s.rope {
            let heads = s.attention.nh + s.attention.nkv
            rotateBack(dQkv, rope: rope, width: width, heads: heads, n: n, firstPosition: firstPosition, period: period,
                       parallel: parallel)
            if let dQkvInput {
                rotateBack(dQkvInput, rope: rope, width: width, heads: heads, n: n, firstPosition: firstPosition,
                           period: period, parallel: parallel)
            }
        }
        if let qk = p.qkNorm {
            normalizedQKGradient?.update(from: dQkv, count: n * width)
            qk.backward(w: w, g: g, dqkv: dQkv, ld: width, n: n, raw: r.qkRaw, rstd: r.qkRstd)
            if let dQkvInput { qk.backward(w: w, g: nil, dqkv: dQkvInput, ld: width, n: n, raw: r.qkRaw, rstd: r.qkRstd) }
        }
        for (i, (dense, column)) in p.qkv.enumerated() {
            dense.backwardInput(w: w, dInp: dLn, dOut: (dQkvInput ?? dQkv) + column, ld: width, n: n,
                                accumulate: i > 0, parallel: parallel)
            if let g { dense.backwardParameters(g: g, dOut: dQkv + column, ld: width, inp: r.ln1, n: n) }
        }
        if let norm1 = p.norm1 {
            norm1.backward(w: w, g: g, sink: sink, dInp: dR, dOut: dLn, inp: r.residIn, mean: r.ln1Mean, rstd: r.ln1Rstd,
                           n: n, c: s.c)
        } else {
            Elementwise.add(into: dR, dLn, count: n * s.c)
        }
        if s.parallelResidual { Elementwise.add(into: dR, dParallel, count: n * s.c) }
    }

/// The MLP half of backward over `rows.count` rows: dR (rows, C) holds dL/d residOut on entry and
    /// dL/d residMid on exit — in parallel, dL/d residOut still, with the MLP's gradient of the
    /// block input in dParallel (rows, C) for `backwardQKV` to add. dAct, dUp (rows, F), dLn and dPost
    /// (rows, C) are scratch. Parameter gradients accumulate at `g`; with g nil (the horizon's
    /// channels) they are not formed and every GEMM runs on the calling thread, with `sink` (2C
    /// floats) taking the norms' discarded gradients.
    static func backwardMLP(_ r: BlockRows, dR: UnsafeMutablePointer<Float>, dAct: UnsafeMutablePointer<Float>,
                            dUp: UnsafeMutablePointer<Float>, dLn: UnsafeMutablePointer<Float>,
                            dPost: UnsafeMutablePointer<Float>, dParallel: UnsafeMutablePointer<Float>,
                            w: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>?, p: BlockParameters,
                            shape s: BlockShape, sink: UnsafeMutablePointer<Float>? = nil) {
        let n = r.count, c = s.c, f = s.f, parallel = g != nil
        var dOut = UnsafePointer(dR)
        if let post = p.postMLPNorm {
            dPost.update(repeating: 0, count: n * c)
            post.backward(w: w, g: g, sink: sink, dInp: dPost, dOut: dR, inp: r.mlpRaw, mean: r.mlpMean, rstd: r.mlpRstd,
                          n: n, c: c)
            dOut = UnsafePointer(dPost)
        }
        p.mlpOut.backwardInput(w: w, dInp: dAct, dOut: dOut, ld: c, n: n, accumulate: false, parallel: parallel)
        if let g { p.mlpOut.backwardParameters(g: g, dOut: dOut, ld: c, inp: r.act, n: n) }
        s.mlp.backward(dAct: dAct, dUp: dUp, fcPre: r.fcPre, up: r.up, count: n * f)
        p.mlpIn.backwardInput(w: w, dInp: dLn, dOut: dAct, ld: f, n: n, accumulate: false, parallel: parallel)
        if let up = p.up {
            up.backwardInput(w: w, dInp: dLn, dOut: dUp, ld: f, n: n, accumulate: true, parallel: parallel)
            if let g { up.backwardParameters(g: g, dOut: dUp, ld: f, inp: r.ln2, n: n) }
        }
        if let g { p.mlpIn.backwardParameters(g: g, dOut: dAct, ld: f, inp: r.ln2, n: n) }
        // Into the stream the MLP read: residMid, or in parallel the block input (kept apart).
        let target = s.parallelResidual ? dParallel : dR
        if s.parallelResidual { dParallel.update(repeating: 0, count: n * c) }
        if let norm2 = p.norm2 {
            norm2.backward(w: w, g: g, sink: sink, dInp: target, dOut: dLn, inp: s.parallelResidual ? r.residIn : r.residMid,
                           mean: r.ln2Mean, rstd: r.ln2Rstd, n: n, c: c)
        } else {
            Elementwise.add(into: target, dLn, count: n * c)
        }
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
    var ln1: UnsafeMutablePointer<Float> { a.ln1 + first * c }
    var z: UnsafeMutablePointer<Float> { a.z + first * a.attentionWidth }
    var qkRaw: UnsafeMutablePointer<Float> { a.qkRaw + first * a.qkRawWidth }
    var qkRstd: UnsafeMutablePointer<Float> { a.qkRstd + first * a.qkSegments }
    var attnRaw: UnsafeMutablePointer<Float> { a.attnRaw + first * c }
    var attnMean: UnsafeMutablePointer<Float> { a.attnMean + first }
    var attnRstd: UnsafeMutablePointer<Float> { a.attnRstd + first }
    var mlpRaw: UnsafeMutablePointer<Float> { a.mlpRaw + first * c }
    var mlpMean: UnsafeMutablePointer<Float> { a.mlpMean + first }
    var mlpRstd: UnsafeMutablePointer<Float> { a.mlpRstd + first }
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
