import MyopiaKernels
import MyopiaSupport

// Dimensions: B batch, T time, NH query heads, NKV key/value heads (NH = G·NKV), HS head size,
// W = (NH + 2·NKV)·HS the width of one position's [q | k | v], A = NH·HS, N = B·T, L layers.
//
// Local-myopic attention (the local myopia bonus, Wu, Morris & Levine 2024). A frozen reference
// model runs on the same tokens; in every layer l the trained model's query at t reads
//
//     scores_ts = q_t·k^ref_s / √HS  (s < t),   q_t·k_t / √HS  (s = t)
//     z_t       = Σ_{s<t} p_ts v^ref_s + p_tt v_t
//
// where k^ref, v^ref are the reference's keys and values in layer l, computed from the reference's
// own hidden states (Llama: after RoPE). Each position is then trained purely for its own next
// token given the reference's pre-cached past: the loss at t reaches position t's own computation
// and the shared weights, never positions s < t (their keys and values are the reference's
// constants), and never the reference's parameters.
//
// Backward, per query head:  dp = dz·v^refᵀ with the diagonal moved to the own value,
// ds = softmax'(dp), dq = ds·k^ref with the diagonal moved to the own key, and only diagonal terms
// for the own key and value: dk_t = ds_tt q_t, dv_t = p_tt dz_t (summed over the G query heads of a
// key/value head).
//
// The diagonal is moved, not replaced: the GEMMs run on the reference's rows exactly as the
// vanilla forward runs on the model's own, and the diagonal then gets q_t·(k_t − k^ref_t) and
// p_tt (v_t − v^ref_t). When the trained model is the reference (zero fine-tuning steps), both
// differences are exactly zero, every operation is the vanilla one, and the local-myopic loss is
// the reference's own loss bit for bit.

extension Attention {
    /// Local-myopic forward: z (B, T, A) and probs (B, NH, T, T) from the model's qkv (B, T, W) and the
    /// reference's `past` (B, T, W), whose key and value columns are read. Entries above the diagonal are 0.
    /// `statistics` (B, NH, T, 2), if given, keeps each row's softmax maximum and 1/Σ, as the vanilla
    /// forward does: a soft-capped row's backward reads them.
    static func forwardLocalMyopic(z: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                                   statistics: UnsafeMutablePointer<Float>? = nil,
                                   qkv: UnsafePointer<Float>, past: UnsafePointer<Float>,
                                   b: Int, t: Int, shape sh: AttentionShape) {
        let hs = sh.hs, w = sh.width, a = sh.out, nh = sh.nh
        // The body captures nothing (its inputs travel as the args tuple), so the parallel-for allocates nothing.
        Parallel.forEach(b * nh, (z, probs, statistics, qkv, past, t, sh, hs, w, a, nh)) { args, item in
            let (z, probs, statistics, qkv, past, t, sh, hs, w, a, nh) = args
            let bi = item / nh, h = item % nh, kvh = h / sh.group
            let base = qkv + bi * t * w, pastBase = past + bi * t * w
            let q = base + h * hs, k = base + sh.keyColumn + kvh * hs, v = base + sh.valueColumn + kvh * hs
            let pk = pastBase + sh.keyColumn + kvh * hs, pv = pastBase + sh.valueColumn + kvh * hs
            let p = probs + item * t * t                                    // (T, T)
            let zh = z + bi * t * a + h * hs                                // (T, HS), row stride A
            // scores (T, T) = q (T, HS) · k_refᵀ, the diagonal moved to the own key
            GEMM.multiply(m: t, n: t, k: hs, a: q, lda: w, transA: false,
                          b: pk, ldb: w, transB: true, c: p, ldc: t, accumulate: false, parallel: false)
            for row in 0..<t {
                let r = p + row * t
                r[row] += differenceDot(q + row * w, k + row * w, pk + row * w, count: hs)
                sh.softmaxRow(r, query: row, keys: row + 1, statistics: statistics.map { $0 + (item * t + row) * 2 })
                if row + 1 < t { (r + row + 1).update(repeating: 0, count: t - row - 1) }
            }
            // z (T, HS) = probs (T, T) · v_ref (T, HS), the diagonal moved to the own value
            GEMM.multiply(m: t, n: hs, k: t, a: p, lda: t, transA: false,
                          b: pv, ldb: w, transB: false, c: zh, ldc: a, accumulate: false, parallel: false)
            for row in 0..<t {
                let d = p[row * t + row], zr = zh + row * a, vr = v + row * w, pvr = pv + row * w
                for j in 0..<hs { zr[j] += d * (vr[j] - pvr[j]) }
            }
        }
    }

    /// Local-myopic backward: dqkv (B, T, W) (written) from dz (B, T, A); `scratch` holds B·NH·T·T
    /// floats. The reference's `past` gets nothing. A key/value row gets only its own query's
    /// (diagonal) terms, summed over the G query heads that read it. A soft-capped model (Gemma 2)
    /// needs the `statistics` its forward kept.
    static func backwardLocalMyopic(dqkv: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                                    dz: UnsafePointer<Float>, qkv: UnsafePointer<Float>, past: UnsafePointer<Float>,
                                    probs: UnsafePointer<Float>, statistics: UnsafePointer<Float>? = nil,
                                    b: Int, t: Int, shape sh: AttentionShape) {
        let hs = sh.hs, w = sh.width, a = sh.out, nh = sh.nh
        Parallel.forEach(b * sh.nkv, (dqkv, scratch, dz, qkv, past, probs, statistics, t, sh, hs, w, a, nh)) { args, item in
            let (dqkv, scratch, dz, qkv, past, probs, statistics, t, sh, hs, w, a, nh) = args
            let bi = item / sh.nkv, kvh = item % sh.nkv
            let base = qkv + bi * t * w, pastBase = past + bi * t * w, dbase = dqkv + bi * t * w
            let k = base + sh.keyColumn + kvh * hs, v = base + sh.valueColumn + kvh * hs
            let pk = pastBase + sh.keyColumn + kvh * hs, pv = pastBase + sh.valueColumn + kvh * hs
            let dk = dbase + sh.keyColumn + kvh * hs, dv = dbase + sh.valueColumn + kvh * hs
            for g in 0..<sh.group {
                let h = kvh * sh.group + g, first = g == 0
                let q = base + h * hs, dq = dbase + h * hs
                let p = probs + (bi * nh + h) * t * t                      // (T, T)
                let ds = scratch + (bi * nh + h) * t * t                   // (T, T)
                let dzh = dz + bi * t * a + h * hs                         // (T, HS), row stride A
                // dprobs (T, T) = dz · v_refᵀ, the diagonal moved to the own value; dv_t (+)= p_tt dz_t
                GEMM.multiply(m: t, n: t, k: hs, a: dzh, lda: a, transA: false,
                              b: pv, ldb: w, transB: true, c: ds, ldc: t, accumulate: false, parallel: false)
                for row in 0..<t {
                    let dzr = dzh + row * a, dvr = dv + row * w, d = p[row * t + row]
                    ds[row * t + row] += differenceDot(dzr, v + row * w, pv + row * w, count: hs)
                    for j in 0..<hs { dvr[j] = (first ? 0 : dvr[j]) + d * dzr[j] }
                }
                softmaxBackward(ds, probs: p, rows: t, firstQuery: 0, keys: t, probsStride: t, shape: sh,
                                statistics: statistics.map { $0 + (bi * nh + h) * t * 2 })
                // dq (T, HS) = dscores · k_ref, the diagonal moved to the own key; dk_t (+)= ds_tt q_t
                GEMM.multiply(m: t, n: hs, k: t, a: ds, lda: t, transA: false,
                              b: pk, ldb: w, transB: false, c: dq, ldc: w, accumulate: false, parallel: false)
                for row in 0..<t {
                    let d = ds[row * t + row], dqr = dq + row * w, dkr = dk + row * w, qr = q + row * w
                    let kr = k + row * w, pkr = pk + row * w
                    for j in 0..<hs {
                        dqr[j] += d * (kr[j] - pkr[j])
                        dkr[j] = (first ? 0 : dkr[j]) + d * qr[j]
                    }
                }
            }
        }
    }

    /// Σ_j x_j (y_j − z_j): exactly 0 when y = z.
    @inline(__always)
    static func differenceDot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ z: UnsafePointer<Float>,
                              count: Int) -> Float {
        var s: Float = 0
        for j in 0..<count { s += x[j] * (y[j] - z[j]) }
        return s
    }
}

/// The reference model's [q | k | v] rows in every layer for one forward pass (B, T), and the
/// scratch its forward runs in: a local-myopic forward fills it, its backward reads it. Lives in
/// the trained model's `ActivationCache`, sized for the cache's capacity.
final class ReferencePast {
    let capacityB: Int, capacityT: Int
    /// The reference's config (its shape decides the scratch sizes).
    let config: ModelConfig
    /// Per layer, (N, W): q | k | v of the reference (Llama: after RoPE).
    let qkv: [UnsafeMutablePointer<Float>]
    /// Whether `qkv` belongs to the cache's last forward pass (false after a forward under another flow).
    var isCurrent = false
    /// Per layer: the block activations the reference's forward writes, all shared between layers
    /// except `qkv`; the residual stream alternates between two buffers.
    private let layers: [ActivationCache.Layer]
    private let resid: [UnsafeMutablePointer<Float>]
    private let arena = BufferArena()

    init(config: ModelConfig, batch: Int, seqLen: Int) {
        capacityB = batch
        capacityT = seqLen
        self.config = config
        let n = batch * seqLen, c = config.dModel
        let arena = self.arena
        func floats(_ count: Int) -> UnsafeMutablePointer<Float> { arena.floats(count) }
        qkv = (0..<config.nLayers).map { _ in floats(n * config.qkvWidth) }
        resid = [floats(n * c), floats(n * c)]
        // One block's buffers shared by every layer, each with its own [q | k | v] and one of two
        // alternating residual streams.
        let shared = ActivationCache.Layer.allocate(config, rows: n, attentionRows: batch * config.nHeads * seqLen,
                                                    arena: arena, residIn: resid[0])
        let qkv = self.qkv, resid = self.resid
        layers = (0..<config.nLayers).map { l in shared.with(residIn: resid[l % 2], qkv: qkv[l]) }
    }

    func fits(_ config: ModelConfig, batch: Int, seqLen: Int) -> Bool {
        self.config == config && batch <= capacityB && seqLen <= capacityT
    }

    /// Runs `reference` (vanilla, causal) over tokens (B, T), keeping every layer's [q | k | v].
    /// The same operations as the reference's own forward, so the rows are bitwise its own.
    func fill(from reference: Transformer, tokens: UnsafePointer<Int32>, b: Int, t: Int) {
        let w = reference.params.weights
        reference.embed(out: layers[0].residIn, tokens: tokens, b: b, t: t)
        for l in 0..<config.nLayers {
            Block.forward(layers[l], residOut: resid[(l + 1) % 2], w: w, p: reference.blocks[l],
                          shape: reference.shapes[l], b: b, t: t, pattern: .causal, probs: nil)
        }
        isCurrent = true
    }
}

extension Transformer {
    /// Under the local-myopic flow, runs the reference on the cache's tokens and returns its keys and
    /// values (allocating them in the cache on first use); under any other flow, nil.
    func referencePast(for cache: ActivationCache) -> ReferencePast? {
        guard flow == .localMyopic else {
            cache.referencePast?.isCurrent = false
            return nil
        }
        guard let reference else {
            preconditionFailure("the local-myopic flow needs a reference model: set Transformer.reference")
        }
        precondition(!config.isContinuous, "the local-myopic flow is for language models")
        precondition(reference !== self, "the reference must be a separate, frozen model (use copy())")
        precondition(attentionShapeMatches(reference.config) && cache.seqLen <= reference.config.maxPositions,
                     "the reference's attention shape differs from the model's (checkReference)")
        let b = cache.batch, t = cache.seqLen
        let past: ReferencePast
        if let existing = cache.referencePast, existing.fits(reference.config, batch: b, seqLen: t) {
            past = existing
        } else {
            past = ReferencePast(config: reference.config, batch: cache.capacityB, seqLen: cache.capacityT)
            cache.referencePast = past
        }
        past.fill(from: reference, tokens: cache.tokens, b: b, t: t)
        return past
    }

    func attentionShapeMatches(_ other: ModelConfig) -> Bool {
        other.family == config.family && other.nLayers == config.nLayers && other.nHeads == config.nHeads
            && other.kvHeads == config.kvHeads && other.headSize == config.headSize && other.vocabSize == config.vocabSize
            && other.attention == .causal && !other.isContinuous
    }

    /// Checks that `reference` can serve as this model's local-myopic reference over windows of
    /// `seqLen` tokens: the same family, layers, heads, key/value heads, head size and vocabulary, a
    /// causal language model, at least `seqLen` positions. `file` names the reference in errors.
    public func checkReference(_ reference: Transformer, seqLen: Int, file: String = "reference") throws {
        let r = reference.config, c = config
        func require(_ ok: Bool, _ field: String, _ expected: Any, _ found: Any) throws {
            guard ok else {
                throw InputError.invalidValue(file: file, field: field, expected: "\(expected) (the trained model's)",
                                               found: "\(found)")
            }
        }
        try require(!r.isContinuous, "myopia_input_features", "a language model", "a model with continuous heads")
        try require(r.attention == .causal, "myopia_attention", "causal attention", "a transformer bigram")
        try require(r.family == c.family, "family", c.family, r.family)
        try require(r.nLayers == c.nLayers, "layers", c.nLayers, r.nLayers)
        try require(r.nHeads == c.nHeads, "heads", c.nHeads, r.nHeads)
        try require(r.kvHeads == c.kvHeads, "kv_heads", c.kvHeads, r.kvHeads)
        try require(r.headSize == c.headSize, "head_size", c.headSize, r.headSize)
        try require(r.vocabSize == c.vocabSize, "vocab_size", c.vocabSize, r.vocabSize)
        guard seqLen <= r.maxPositions else {
            throw InputError.invalidValue(file: file, field: "max_positions", expected: "at least the window length \(seqLen)",
                                           found: "\(r.maxPositions)")
        }
    }
}
