import MyopiaKernels

// Dimensions: B sequences, T time, C d_model, NH heads, HS head size, F MLP width, L layers,
// K max offset, W = K + 1 window rows.
//
// The gradient horizon (docs/DESIGN.md §4): g_{l,i,t} = ∂ℓ_t/∂h_{l,i} for the residual stream h_{l,i}
// entering block l (l = L: after the last block), every target t and every i in t−K…t.
//
// Backward is linear in its incoming gradient, so instead of T backward passes this runs one
// "channel" per target t. Channel t starts from ∂ℓ_t/∂h_{L,t} at position t alone and only ever
// needs positions t−K…t: gradient flows from later positions to earlier ones, so every path from
// ℓ_t to h_{l,i} stays inside i…t, and positions before t−K never feed back into the window. Each
// channel is therefore a backward pass over W rows (whose activations are contiguous rows of the
// forward cache), with attention reading keys and values 0…t. Parameter gradients are not formed.

/// One channel's gradients at one layer: rows i0…t (W' = t − i0 + 1 rows of C floats).
public struct HorizonRows {
    public let sequence: Int
    public let target: Int      // t
    public let layer: Int       // l = 0…L
    public let firstPosition: Int  // i0 = max(0, t − K)
    public let rows: UnsafePointer<Float>  // (t − i0 + 1, C); row r is ∂ℓ_t/∂h_{l, i0 + r}
}

extension Transformer {
    /// Runs the channel backward on the last forward pass (which must have had targets), calling
    /// `visit` for every (sequence, target, layer) — from several threads at once, each call for
    /// a different (sequence, target). `flow` decides what reaches earlier inputs through keys and
    /// values (vanilla: the true derivative). `params.grads` and the forward cache (its logits
    /// included) are left as they were, so it may run again on the same forward pass.
    public func horizonBackward(cache: ActivationCache, maxOffset: Int, flow: GradientFlow = .vanilla,
                                visit: (HorizonRows) -> Void) {
        precondition(flow != .localMyopic && cache.referencePast?.isCurrent != true,
                     "the gradient horizon does not support the local-myopic flow (its past is a reference model's)")
        let b = cache.batch, t = cache.seqLen
        let c = config.dModel, f = config.dMLP, sh = AttentionShape(config)
        let width = sh.width, k = min(max(0, maxOffset), t - 1), window = k + 1
        let w = params.weights
        let share = flow.offDiagonalInputShare

        // ∂ℓ_t/∂h_{L,t} for every row at once: the head is row-wise, and a loss scale equal to the
        // number of counted targets undoes the mean. The head's parameter gradients and the logits
        // (which the head's backward turns into dlogits) are put back.
        let savedGrads = params.gradArray()
        let savedLogits = cache.logitsArray()
        backwardHead(cache: cache, lossScale: Float(max(1, cache.countedTargets)))
        savedGrads.withUnsafeBufferPointer { params.grads.update(from: $0.baseAddress!, count: params.count) }
        savedLogits.withUnsafeBufferPointer { cache.logits.update(from: $0.baseAddress!, count: $0.count) }
        let seeds = cache.dResid                                          // (B·T, C)
        let patterns = (0..<config.nLayers).map { cache.pattern(layer: $0, shape: shapes[$0].attention) }

        // Fixed slots, each with its own scratch; channel j goes to slot j % slots. Every channel is
        // computed alone, so the results do not depend on the thread count.
        let slots = 16
        let perSlot = window * (4 * c + sh.out + width + 2 * f) + sh.group * window * t + 2 * c
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: slots * perSlot)
        defer { scratch.deallocate() }
        let channels = b * t
        Parallel.forEach(slots) { slot in
            let base = scratch + slot * perSlot
            let dR = base                                   // (W, C)    ∂ℓ_t/∂h at the window rows
            let dLn = dR + window * c                       // (W, C)
            let dZ = dLn + window * c                       // (W, A)
            let dQKV = dZ + window * sh.out                 // (W, [q | k | v])
            let dAct = dQKV + window * width                // (W, F)
            let dUp = dAct + window * f                     // (W, F)
            let dP = dUp + window * f                       // (G, W, T) scores gradients of one head group
            let dPost = dP + sh.group * window * t          // (W, C)    a post-norm's input gradient
            let dParallel = dPost + window * c              // (W, C)    the MLP's gradient of the block input (parallel)
            let sink = dParallel + window * c               // (2C)      norm-parameter gradients, discarded
            var channel = slot
            while channel < channels {
                let bi = channel / t, target = channel % t
                let i0 = max(0, target - k), rows = target - i0 + 1
                let r0 = bi * t + i0                        // first window row in (B·T) buffers
                dR.update(repeating: 0, count: rows * c)
                (dR + (rows - 1) * c).update(from: seeds + (bi * t + target) * c, count: c)
                visit(HorizonRows(sequence: bi, target: target, layer: config.nLayers, firstPosition: i0, rows: dR))
                for l in stride(from: config.nLayers - 1, through: 0, by: -1) {
                    let a = cache.layers[l], p = blocks[l], shape = shapes[l]
                    let window = BlockRows(a, first: r0, count: rows)
                    Block.backwardMLP(window, dR: dR, dAct: dAct, dUp: dUp, dLn: dLn, dPost: dPost, dParallel: dParallel,
                                      w: w, g: nil, p: p, shape: shape, sink: sink)
                    // Attention: dZ from the output projection, through the heads into dQKV, then
                    // RoPE, the q/k norms, q/k/v and norm_1.
                    Block.backwardAttentionOutput(window, dR: dR, dPost: dPost, dZ: dZ, w: w, g: nil, p: p, shape: shape,
                                                  sink: sink)
                    for kvh in 0..<sh.nkv {
                        attentionWindowBackward(dQKV: dQKV, dP: dP, dZ: dZ, layer: a, probs: patterns[l], shape: shape.attention,
                                                sequence: bi, kvHead: kvh, firstQuery: i0, lastQuery: target, t: t,
                                                inputShare: share)
                    }
                    Block.backwardQKV(window, dQkv: dQKV, dQkvInput: nil, dLn: dLn, dR: dR, dParallel: dParallel, w: w,
                                      g: nil, p: p, shape: shape, firstPosition: i0, period: nil, sink: sink)
                    visit(HorizonRows(sequence: bi, target: target, layer: l, firstPosition: i0, rows: dR))
                }
                channel += slots
            }
        }
    }

    /// One key/value head's attention backward (with the G query heads that read it) for queries
    /// i0…t (the window) against keys 0…t, writing the window rows of dQKV (W, [q | k | v]) for
    /// these heads. Keys and values before i0 get no rows: nothing flows from them back into the
    /// window. A self-only (bigram) model needs no special case: its probabilities are the
    /// identity, for which the softmax backward is exactly zero.
    private func attentionWindowBackward(dQKV: UnsafeMutablePointer<Float>, dP: UnsafeMutablePointer<Float>,
                                         dZ: UnsafePointer<Float>, layer a: ActivationCache.Layer,
                                         probs allProbs: UnsafePointer<Float>, shape sh: AttentionShape,
                                         sequence bi: Int, kvHead kvh: Int, firstQuery i0: Int, lastQuery last: Int,
                                         t: Int, inputShare: Float) {
        let hs = sh.hs, width = sh.width, out = sh.out
        let rows = last - i0 + 1, keys = last + 1
        let seq = a.qkv + bi * t * width
        let kk = seq + sh.keyColumn + kvh * hs, v = seq + sh.valueColumn + kvh * hs   // (T, HS), row stride W
        let dk = dQKV + sh.keyColumn + kvh * hs, dv = dQKV + sh.valueColumn + kvh * hs  // (rows, HS), row stride W
        for g in 0..<sh.group {
            let h = kvh * sh.group + g, first = g == 0
            let q = seq + h * hs
            let probs = allProbs + (bi * sh.nh + h) * t * t                             // (T, T)
            let dq = dQKV + h * hs                                                      // (rows, HS), row stride W
            let dzh = dZ + h * hs                                                       // (rows, HS), row stride A
            let ds = dP + g * rows * keys                                               // (rows, keys)
            // dP (rows, keys) = dZ · vᵀ, then the softmax backward per query row
            GEMM.multiply(m: rows, n: keys, k: hs, a: dzh, lda: out, transA: false, b: v, ldb: width, transB: true,
                          c: ds, ldc: keys, accumulate: false, parallel: false)
            Attention.softmaxBackward(ds, probs: probs + i0 * t, rows: rows, firstQuery: i0, keys: keys, probsStride: t,
                                      shape: sh, statistics: a.attnStats + (bi * sh.nh + h) * t * 2 + 2 * i0)
            // dq = dS · k[0…t] ; dk (+)= dS[:, i0…t]ᵀ · q[i0…t] ; dv (+)= p[i0…t, i0…t]ᵀ · dZ
            GEMM.multiply(m: rows, n: hs, k: keys, a: ds, lda: keys, transA: false, b: kk, ldb: width, transB: false,
                          c: dq, ldc: width, accumulate: false, parallel: false)
            GEMM.multiply(m: rows, n: hs, k: rows, a: ds + i0, lda: keys, transA: true, b: q + i0 * width, ldb: width,
                          transB: false, c: dk, ldc: width, accumulate: !first, parallel: false)
            GEMM.multiply(m: rows, n: hs, k: rows, a: probs + i0 * t + i0, lda: t, transA: true, b: dzh, ldb: out,
                          transB: false, c: dv, ldc: width, accumulate: !first, parallel: false)
        }
        guard inputShare < 1 else { return }
        // What reaches the input under a myopic flow: the diagonal terms plus a share of the rest.
        Attention.inputShareOfKeysAndValues(dkIn: dk, dvIn: dv, dk: dk, dv: dv, ld: width, rows: rows, hs: hs, share: inputShare,
                             group: sh.group) { g in
            let h = kvh * sh.group + g
            return Attention.HeadRows(q: seq + i0 * width + h * hs, qStride: width,
                                      ds: dP + g * rows * keys + i0, dsStride: keys,
                                      p: allProbs + (bi * sh.nh + h) * t * t + i0 * t + i0, pStride: t,
                                      dz: dZ + h * hs, dzStride: out)
        }
    }
}
