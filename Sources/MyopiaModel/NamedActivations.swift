import Foundation
import MyopiaKernels
import MyopiaSupport

// Dimensions: B batch, T time, C d_model, NH query heads, NKV key/value heads, HS head size,
// W = (NH + 2·NKV)·HS one row of [q | k | v], A = NH·HS, F MLP width, V vocab, N = B·T.
//
// Named activations (HookPoint.swift lists the names and shapes). The activation cache already
// holds what backward needs; a named activation is copied out of it, or recomputed from it when the
// cache keeps an equivalent form instead (attn_out and mlp_out from z and the MLP activation with
// one GEMM, Llama's pre-RoPE q and k by rotating back, the attention scores from q and k). Nothing is
// copied that was not asked for.
//
// Gradients come from `backward(cache:lossScale:recording:)`, which runs the ordinary backward
// block by block (the same kernels, the same parameter gradients) and reads each requested
// gradient out of the backward scratch while it is live.

extension Transformer {
    /// Runs tokens (B, T) (with targets (B, T) for a loss) and returns the named activations asked for.
    /// A name ending in `.grad` asks for ∂L/∂NAME of the mean loss × `lossScale`: that needs targets,
    /// and runs backward, which **accumulates** into `params.grads` like `backward` (under `flow`).
    /// Under a myopic or β flow `.grad` is what that backward sends: past keys and values pass only
    /// their share back to the attention input, so ln1.hook_normalized.grad and everything upstream
    /// are the flow's gradients; attn.hook_q/k/v.grad are what the projection weights receive.
    public func runWithCache(tokens: [Int32], targets: [Int32]? = nil, batch: Int, seqLen: Int, names: [String],
                             cache: ActivationCache? = nil, lossScale: Float = 1) throws -> ActivationRecord {
        guard !config.isContinuous else {
            throw InputError.unsupported(file: "activation names", field: "tokens",
                                          value: "a model with continuous heads reads features: runWithCache(features:...)")
        }
        try checkShape(batch: batch, seqLen: seqLen)
        guard tokens.count == batch * seqLen, targets.map({ $0.count == batch * seqLen }) ?? true else {
            throw InputError.invalidValue(file: "activation names", field: "tokens", expected: "B·T = \(batch * seqLen) tokens (and targets)",
                                           found: "\(tokens.count) and \(targets.map { String($0.count) } ?? "none")")
        }
        for token in tokens where token < 0 || Int(token) >= config.vocabSize {
            throw InputError.invalidValue(file: "activation names", field: "tokens", expected: "ids below \(config.vocabSize)", found: "\(token)")
        }
        return try record(names: names, hasTargets: targets != nil, batch: batch, seqLen: seqLen, cache: cache,
                          lossScale: lossScale) { cache in
            forward(tokens: tokens, targets: targets, batch: batch, seqLen: seqLen, cache: cache)
        }
    }

    /// `runWithCache` for a model with continuous heads: features (B, T, FI), targets (B, T, O).
    public func runWithCache(features: [Float], targets: [Float]? = nil, batch: Int, seqLen: Int, names: [String],
                             cache: ActivationCache? = nil, lossScale: Float = 1) throws -> ActivationRecord {
        guard let fi = config.inputFeatures, let o = config.outputs else {
            throw InputError.unsupported(file: "activation names", field: "features", value: "a language model reads tokens: runWithCache(tokens:...)")
        }
        try checkShape(batch: batch, seqLen: seqLen)
        guard features.count == batch * seqLen * fi, targets.map({ $0.count == batch * seqLen * o }) ?? true else {
            throw InputError.invalidValue(file: "activation names", field: "features", expected: "B·T·\(fi) features and B·T·\(o) targets", found: "\(features.count) and \(targets?.count ?? 0)")
        }
        return try record(names: names, hasTargets: targets != nil, batch: batch, seqLen: seqLen, cache: cache,
                          lossScale: lossScale) { cache in
            forward(features: features, targets: targets, batch: batch, seqLen: seqLen, cache: cache)
        }
    }

    private func checkShape(batch: Int, seqLen: Int) throws {
        guard batch > 0, seqLen > 0, seqLen <= config.maxPositions else {
            throw InputError.invalidValue(file: "activation names", field: "batch, seqLen", expected: "B ≥ 1 and 1 ≤ T ≤ \(config.maxPositions)", found: "\(batch), \(seqLen)")
        }
    }

    private func record(names: [String], hasTargets: Bool, batch: Int, seqLen: Int, cache reuse: ActivationCache?,
                        lossScale: Float, forward: (ActivationCache) -> Float?) throws -> ActivationRecord {
        let parsed = try names.map { try ActivationName(parsing: $0, config: config) }
        if flow == .localMyopic, let name = parsed.first(where: { $0.hook.kind == .attnScores || ($0.hook.kind == .pattern && $0.isGradient) }) {
            // Earlier positions' keys and values are the reference model's: the model's own q·k and
            // dz·v do not describe what it attends to (hook_pattern itself does).
            throw InputError.unsupported(file: "activation names", field: name.description, value: "under the local-myopic flow")
        }
        if let name = parsed.first(where: { $0.isGradient && $0.hook.predictionHead != nil }) {
            throw InputError.unsupported(file: "activation names", field: name.description,
                                          value: "a gradient of a prediction head's activation (only the trunk's are recorded)")
        }
        let readsPredictionHeads = parsed.contains { $0.hook.predictionHead != nil }
        if readsPredictionHeads, flow == .localMyopic, let name = parsed.first(where: { $0.hook.predictionHead != nil }) {
            throw InputError.unsupported(file: "activation names", field: name.description, value: "under the local-myopic flow")
        }
        if let first = parsed.first(where: \.isGradient), !hasTargets {
            throw InputError.invalidValue(file: "activation names", field: first.description,
                                           expected: "targets (a gradient is of the loss)", found: "no targets")
        }
        let cache = reuse.flatMap { $0.capacityB >= batch && $0.capacityT >= seqLen ? $0 : nil }
            ?? makeCache(batch: batch, seqLen: seqLen)
        let loss = forward(cache)
        if readsPredictionHeads { forwardPredictionBlocks(cache: cache) }
        var tensors: [String: NamedTensor] = [:]
        for name in parsed where !name.isGradient {
            tensors[name.description] = activation(name.hook, in: cache)
        }
        let gradientHooks = parsed.filter(\.isGradient).map(\.hook)
        if !gradientHooks.isEmpty {
            for (hook, values) in backward(cache: cache, lossScale: lossScale, recording: gradientHooks) {
                let name = ActivationName(hook, gradient: true).description
                tensors[name] = NamedTensor(name: name, shape: hook.shape(config, batch: batch, seqLen: seqLen), values: values)
            }
        }
        return ActivationRecord(loss: loss, tensors: tensors)
    }

    /// The named activation of the last forward pass through `cache` (a full forward: after
    /// `forwardResiduals` only the residual streams and the blocks it ran are current).
    public func activation(_ hook: HookPoint, in cache: ActivationCache) -> NamedTensor {
        precondition(hook.exists(in: config), "\(hook) does not exist in a \(config.family) model")
        precondition(hook.kind != .attnScores || cache.referencePast?.isCurrent != true,
                     "under the local-myopic flow earlier positions' keys are the reference's: no hook_attn_scores")
        precondition(hook.predictionHead == nil || cache.predictionBlocksAreCurrent,
                     "\(hook) is read after forwardPredictionHeads (or through runWithCache)")
        let b = cache.batch, t = cache.seqLen
        return NamedTensor(name: hook.description, shape: hook.shape(config, batch: b, seqLen: t),
                           values: activationValues(hook, cache: cache))
    }

    private func activationValues(_ hook: HookPoint, cache: ActivationCache) -> [Float] {
        let b = cache.batch, t = cache.seqLen, n = b * t, c = config.dModel, f = config.dMLP
        let w = params.weights
        // The shape of the block the hook sits in (an extra prediction head uses the last layer's).
        let shape = hook.layer.map { shapes[$0] } ?? headShape, sh = shape.attention
        func copy(_ p: UnsafePointer<Float>, _ count: Int) -> [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
        func filled(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
            [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                body(buffer.baseAddress!)
                initialized = count
            }
        }
        // The block the hook sits in: trunk block l, or extra prediction head j's (index j − 2).
        let head = hook.predictionHead.map { cache.predictionHeads[$0 - 2] }
        let a = hook.layer.map { cache.layers[$0] } ?? head?.layer
        let block = hook.layer.map { blocks[$0] } ?? hook.predictionHead.map { predictionBlocks[$0 - 2] }
        switch hook.kind {
        case .embed:
            return filled(n * c) { out in
                switch heads {
                case .tokens(let embedding, _):
                    // What enters the residual stream: Gemma's scaled by √C.
                    for r in 0..<n {
                        let row = out + r * c, e = w + embedding + Int(cache.tokens[r]) * c
                        if embeddingScale == 1 { row.update(from: e, count: c) } else { for j in 0..<c { row[j] = e[j] * embeddingScale } }
                    }
                case .continuous(let inWeight, let inBias, _, _):
                    Linear.forward(out: out, inp: cache.features, weight: w + inWeight, bias: w + inBias,
                                   n: n, inC: config.inputFeatures ?? 0, outC: c)
                }
            }
        case .posEmbed:
            return filled(n * c) { out in
                for r in 0..<n { (out + r * c).update(from: w + wpe! + (r % t) * c, count: c) }
            }
        case .residPre: return copy(a!.residIn, n * c)
        case .ln1: return copy(a!.ln1, n * c)
        case .q, .qNorm, .rotQ, .k, .kNorm, .rotK, .v:
            let (column, heads) = [.q, .qNorm, .rotQ].contains(hook.kind) ? (0, sh.nh)
                : hook.kind == .v ? (sh.valueColumn, sh.nkv) : (sh.keyColumn, sh.nkv)
            let unrotate = [.q, .qNorm, .k, .kNorm].contains(hook.kind)
            return filled(n * heads * sh.hs) { out in
                if hook.kind == .q || hook.kind == .k, block!.qkNorm != nil {
                    // q/k-norm families: hook_q/hook_k are the projections before their norms.
                    Self.copyColumns(from: a!.qkRaw + column, ld: a!.qkRawWidth, to: out, width: heads * sh.hs, rows: n)
                    return
                }
                Self.copyColumns(from: a!.qkv + column, ld: sh.width, to: out, width: heads * sh.hs, rows: n)
                if unrotate, let rope = shape.rope {
                    rope.rotate(out, ld: heads * sh.hs, rows: n, heads: heads, period: t, inverse: true)
                }
            }
        case .attnScores:
            return filled(b * sh.nh * t * t) { out in attentionScores(out, layer: a!, shape: sh, b: b, t: t) }
        case .pattern:
            if let j = hook.predictionHead {
                if let kept = cache.keptPredictionPattern(head: j - 2) { return copy(kept, b * sh.nh * t * t) }
                return filled(b * sh.nh * t * t) { out in
                    Attention.rebuildPattern(out, statistics: a!.attnStats, qkv: a!.qkv, b: b, t: t, shape: sh)
                }
            }
            return copy(cache.pattern(layer: hook.layer!, shape: sh), b * sh.nh * t * t)
        case .z: return copy(a!.z, n * sh.out)
        case .attnPostIn: return copy(a!.attnRaw, n * c)
        case .mlpPostIn: return copy(a!.mlpRaw, n * c)
        case .attnOut:
            if block!.postAttentionNorm != nil {
                // What is added to the residual stream: the post-normed output.
                return filled(n * c) { out in for i in 0..<(n * c) { out[i] = a!.residMid[i] - a!.residIn[i] } }
            }
            return filled(n * c) { out in block!.attnOut.forward(w: w, out: out, ld: c, inp: a!.z, n: n) }
        case .residMid: return copy(a!.residMid, n * c)
        case .ln2: return copy(a!.ln2, n * c)
        case .mlpPre: return copy(a!.fcPre, n * f)
        case .mlpPreLinear: return copy(a!.up, n * f)
        case .mlpPost: return copy(a!.act, n * f)
        case .mlpOut:
            if let post = block!.postMLPNorm {
                return filled(n * c) { out in
                    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 2 * n)
                    defer { scratch.deallocate() }
                    post.forward(w: w, out: out, mean: scratch, rstd: scratch + n, inp: a!.mlpRaw, n: n, c: c, eps: eps)
                }
            }
            return filled(n * c) { out in block!.mlpOut.forward(w: w, out: out, ld: c, inp: a!.act, n: n) }
        case .residPost:
            if let head { return copy(head.residOut, n * c) }
            let l = hook.layer!
            return copy(l + 1 < config.nLayers ? cache.layers[l + 1].residIn : cache.residFinal, n * c)
        case .lnFinal: return copy(head?.lnf ?? cache.lnf, n * c)
        }
    }

    /// scores (B, NH, T, T) = q·kᵀ·scale (1/√HS, or the family's query scale; soft-capped where the
    /// family caps) from the cached (post-RoPE) q and k: what the softmax reads. −inf where the
    /// pattern does not look (above the diagonal or before the window; off the diagonal for a
    /// self-only model).
    private func attentionScores(_ out: UnsafeMutablePointer<Float>, layer a: ActivationCache.Layer, shape sh: AttentionShape,
                                 b: Int, t: Int) {
        let hs = sh.hs, width = sh.width
        let scale = sh.scale, selfOnly = attentionPattern == .selfOnly
        let outP = SendableFloats(out), qkv = a.qkv
        Parallel.forEach(b * sh.nh) { item in
            let bi = item / sh.nh, h = item % sh.nh, kvh = h / sh.group
            let base = qkv + bi * t * width, s = outP.pointer + item * t * t
            GEMM.multiply(m: t, n: t, k: hs, a: base + h * hs, lda: width, transA: false,
                          b: base + sh.keyColumn + kvh * hs, ldb: width, transB: true, c: s, ldc: t,
                          accumulate: false, parallel: false)
            for row in 0..<t {
                for col in 0..<t {
                    let masked = selfOnly ? col != row : col > row || col < sh.firstKey(row)
                    let scaled = s[row * t + col] * scale
                    s[row * t + col] = masked ? -.infinity : sh.softcap.map { $0 * Foundation.tanh(scaled / $0) } ?? scaled
                }
            }
        }
    }

    static func copyColumns(from src: UnsafePointer<Float>, ld: Int, to dst: UnsafeMutablePointer<Float>, width: Int, rows: Int) {
        for r in 0..<rows { (dst + r * width).update(from: src + r * ld, count: width) }
    }
}

// MARK: - Gradients

extension Transformer {
    /// Backward of the mean loss of the last forward pass (which must have had targets), exactly as
    /// `backward(cache:lossScale:)` — the same parameter gradients, accumulated under `flow` — and
    /// returns ∂L/∂NAME (× lossScale) for every hook in `hooks`, each in that hook's shape.
    /// Overwrites the logits, as backward does.
    public func backward(cache: ActivationCache, lossScale: Float = 1, recording hooks: [HookPoint]) -> [HookPoint: [Float]] {
        for hook in hooks { precondition(hook.exists(in: config), "\(hook) does not exist in a \(config.family) model") }
        let wanted = Set(hooks)
        let b = cache.batch, t = cache.seqLen, n = b * t, c = config.dModel, f = config.dMLP
        let w = params.weights, g = params.grads
        var out: [HookPoint: [Float]] = [:]
        func copy(_ p: UnsafePointer<Float>, _ count: Int) -> [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
        func filled(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
            [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                body(buffer.baseAddress!)
                initialized = count
            }
        }
        func wants(_ kind: HookPoint.Kind, _ l: Int) -> Bool { wanted.contains(HookPoint(kind, layer: l)) }

        // As `backwardBlocks`: a local-myopic forward is differentiated as one.
        let past = cache.referencePast.flatMap { $0.isCurrent ? $0 : nil }
        precondition(past == nil || !(wanted.contains { $0.kind == .pattern }),
                     "under the local-myopic flow earlier positions' values are the reference's: no hook_pattern.grad")
        backwardHead(cache: cache, lossScale: lossScale)
        // cache.dLn = ∂L/∂ln_final output, cache.dResid = ∂L/∂(residual after the last block).
        if wanted.contains(HookPoint(.lnFinal)) { out[HookPoint(.lnFinal)] = copy(cache.dLn, n * c) }
        let sink = UnsafeMutablePointer<Float>.allocate(capacity: 2 * c)
        defer { sink.deallocate() }
        // ∂L/∂(q, k after their norms, before RoPE) of q/k-norm families, kept from inside backward.
        let normKinds: [HookPoint.Kind] = [.qNorm, .kNorm, .rotQ, .rotK]
        let normalized = blocks.contains { $0.qkNorm != nil } && wanted.contains { normKinds.contains($0.kind) }
            ? UnsafeMutablePointer<Float>.allocate(capacity: n * config.qkvWidth) : nil
        defer { normalized?.deallocate() }
        for l in stride(from: config.nLayers - 1, through: 0, by: -1) {
            let a = cache.layers[l], p = blocks[l], shape = shapes[l], sh = shape.attention
            // Before the block: cache.dResid = ∂L/∂resid_post, which is also ∂L/∂mlp_out.
            for kind in [HookPoint.Kind.residPost, .mlpOut] where wants(kind, l) {
                out[HookPoint(kind, layer: l)] = copy(cache.dResid, n * c)
            }
            if wants(.mlpPost, l) || wants(.mlpPostIn, l) {
                // Through the post-MLP norm into cache.dPost (Block.backward forms it again).
                var dOut = UnsafePointer(cache.dResid)
                if let post = p.postMLPNorm {
                    cache.dPost.update(repeating: 0, count: n * c)
                    post.backward(w: w, g: nil, sink: sink, dInp: cache.dPost, dOut: cache.dResid, inp: a.mlpRaw,
                                  mean: a.mlpMean, rstd: a.mlpRstd, n: n, c: c)
                    dOut = UnsafePointer(cache.dPost)
                    if wants(.mlpPostIn, l) { out[HookPoint(.mlpPostIn, layer: l)] = copy(cache.dPost, n * c) }
                }
                if wants(.mlpPost, l) {
                    out[HookPoint(.mlpPost, layer: l)] = filled(n * f) { d in
                        p.mlpOut.backwardInput(w: w, dInp: d, dOut: dOut, ld: c, n: n, accumulate: false)
                    }
                }
            }
            if wants(.residMid, l) || wants(.attnOut, l) || wants(.ln2, l) {
                let (dMid, dLn2) = mlpInputGradients(layer: l, cache: cache)
                for kind in [HookPoint.Kind.residMid, .attnOut] where wants(kind, l) { out[HookPoint(kind, layer: l)] = dMid }
                if wants(.ln2, l) { out[HookPoint(.ln2, layer: l)] = dLn2 }
            }
            // The scores' gradients are left in the cache when backward runs on a pattern in memory.
            let probs = wants(.attnScores, l) ? cache.pattern(layer: l, shape: sh) : cache.keptPattern(layer: l)
            Block.backward(a, scratch: cache, w: w, g: g, p: p, shape: shape, b: b, t: t,
                           inputShare: flow.offDiagonalInputShare, probs: probs, past: past?.qkv[l],
                           normalizedQKGradient: p.qkNorm == nil ? nil : normalized)
            // After the block: dZ, dQkv (q and k rotated back to before RoPE; q/k-norm families: also
            // back through the norms, with the gradient between the two in `normalized`), dScores (of
            // the raw q·k), dLn (of ln_1's output), dAct (of the MLP's pre-activation), dUp, dPost (of
            // the post-attention norm's input) and dResid (of resid_pre).
            if wants(.attnPostIn, l) { out[HookPoint(.attnPostIn, layer: l)] = copy(cache.dPost, n * c) }
            if wants(.residPre, l) { out[HookPoint(.residPre, layer: l)] = copy(cache.dResid, n * c) }
            if wants(.ln1, l) { out[HookPoint(.ln1, layer: l)] = copy(cache.dLn, n * c) }
            if wants(.z, l) { out[HookPoint(.z, layer: l)] = copy(cache.dZ, n * sh.out) }
            if wants(.mlpPre, l) { out[HookPoint(.mlpPre, layer: l)] = copy(cache.dAct, n * f) }
            if wants(.mlpPreLinear, l) { out[HookPoint(.mlpPreLinear, layer: l)] = copy(cache.dUp, n * f) }
            let beforeNorms = p.qkNorm == nil ? UnsafePointer(cache.dQkv) : UnsafePointer(normalized ?? cache.dQkv)
            for (kind, column, heads, rotate) in [(HookPoint.Kind.q, 0, sh.nh, false), (.k, sh.keyColumn, sh.nkv, false),
                                                  (.v, sh.valueColumn, sh.nkv, false), (.qNorm, 0, sh.nh, false),
                                                  (.kNorm, sh.keyColumn, sh.nkv, false), (.rotQ, 0, sh.nh, true),
                                                  (.rotK, sh.keyColumn, sh.nkv, true)] where wants(kind, l) {
                let source = normKinds.contains(kind) ? beforeNorms : UnsafePointer(cache.dQkv)
                out[HookPoint(kind, layer: l)] = filled(n * heads * sh.hs) { d in
                    Self.copyColumns(from: source + column, ld: sh.width, to: d, width: heads * sh.hs, rows: n)
                    // q_rot = R q, so ∂L/∂q_rot = R ∂L/∂q.
                    if rotate, let rope = shape.rope { rope.rotate(d, ld: heads * sh.hs, rows: n, heads: heads, period: t) }
                }
            }
            if wants(.attnScores, l) {
                let inverseScale = 1 / sh.scale
                out[HookPoint(.attnScores, layer: l)] = filled(b * sh.nh * t * t) { d in
                    let scores = cache.scoreGradients!
                    for i in 0..<(b * sh.nh * t * t) { d[i] = scores[i] * inverseScale }
                }
            }
            if wants(.pattern, l) {
                out[HookPoint(.pattern, layer: l)] = filled(b * sh.nh * t * t) { d in
                    patternGradient(d, dZ: cache.dZ, layer: a, shape: sh, b: b, t: t)
                }
            }
        }
        // cache.dResid = ∂L/∂resid_pre of block 0 = ∂L/∂(embed + pos_embed).
        for kind in [HookPoint.Kind.embed, .posEmbed] where wanted.contains(HookPoint(kind)) {
            out[HookPoint(kind)] = copy(cache.dResid, n * c)
        }
        backwardEmbeddings(cache: cache)
        return out
    }

    /// ∂L/∂resid_mid and ∂L/∂ln_2 output of block l from cache.dResid = ∂L/∂resid_post: the MLP half
    /// of backward run on copies, without parameter gradients (backward's own run overwrites both
    /// before they can be read). Row chunks in parallel; the MLP is row-wise.
    private func mlpInputGradients(layer l: Int, cache: ActivationCache) -> (mid: [Float], ln2: [Float]) {
        let n = cache.batch * cache.seqLen, c = config.dModel, f = config.dMLP
        var mid = Array(UnsafeBufferPointer(start: cache.dResid, count: n * c))
        var ln2 = [Float](repeating: 0, count: n * c)
        let chunk = 128, chunks = (n + chunk - 1) / chunk
        let act = UnsafeMutablePointer<Float>.allocate(capacity: 2 * n * f + chunks * 2 * c + 2 * n * c)
        defer { act.deallocate() }
        let up = act + n * f, sinks = up + n * f, post = sinks + chunks * 2 * c, parallelInput = post + n * c
        let a = cache.layers[l], p = blocks[l], w = params.weights, shape = shapes[l]
        mid.withUnsafeMutableBufferPointer { midB in
            ln2.withUnsafeMutableBufferPointer { lnB in
                let dR = SendableFloats(midB.baseAddress!), dLn = SendableFloats(lnB.baseAddress!)
                Parallel.forEach(chunks) { i in
                    let r0 = i * chunk, rows = min(chunk, n - r0)
                    Block.backwardMLP(BlockRows(a, first: r0, count: rows), dR: dR.pointer + r0 * c, dAct: act + r0 * f,
                                      dUp: up + r0 * f, dLn: dLn.pointer + r0 * c, dPost: post + r0 * c,
                                      dParallel: parallelInput + r0 * c, w: w, g: nil, p: p, shape: shape,
                                      sink: sinks + i * 2 * c)
                }
            }
        }
        return (mid, ln2)
    }

    /// ∂L/∂pattern (B, NH, T, T) = dz_h · v_hᵀ for every head: z = pattern · v reads every entry,
    /// so entries above the diagonal get their (unused) gradient too, as in PyTorch.
    private func patternGradient(_ out: UnsafeMutablePointer<Float>, dZ: UnsafePointer<Float>, layer a: ActivationCache.Layer,
                                 shape sh: AttentionShape, b: Int, t: Int) {
        let hs = sh.hs, width = sh.width
        let outP = SendableFloats(out), qkv = a.qkv
        Parallel.forEach(b * sh.nh) { item in
            let bi = item / sh.nh, h = item % sh.nh, kvh = h / sh.group
            GEMM.multiply(m: t, n: t, k: hs, a: dZ + bi * t * sh.out + h * hs, lda: sh.out, transA: false,
                          b: qkv + bi * t * width + sh.valueColumn + kvh * hs, ldb: width, transB: true,
                          c: outP.pointer + item * t * t, ldc: t, accumulate: false, parallel: false)
        }
    }
}

/// A float pointer that parallel-for bodies may capture.
struct SendableFloats: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ pointer: UnsafeMutablePointer<Float>) { self.pointer = pointer }
}
