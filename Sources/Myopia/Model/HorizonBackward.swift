import MyopiaKernels

// Dimensions: B sequences, T time, C d_model, NH heads, HS head size, F MLP width, L layers,
// K max offset, W = K + 1 window rows.
//
// The gradient horizon (DESIGN §4): g_{l,i,t} = ∂ℓ_t/∂h_{l,i} for the residual stream h_{l,i}
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
        let b = cache.batch, t = cache.seqLen
        let c = config.dModel, f = config.dMLP, nh = config.nHeads, hs = c / nh
        let k = min(max(0, maxOffset), t - 1), width = k + 1
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

        // Fixed slots, each with its own scratch; channel j goes to slot j % slots. Every channel is
        // computed alone, so the results do not depend on the thread count.
        let slots = 16
        let perSlot = width * (3 * c + c + c + c + f) + width * t + 2 * c
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: slots * perSlot)
        defer { scratch.deallocate() }
        let channels = b * t
        Parallel.forEach(slots) { slot in
            let base = scratch + slot * perSlot
            let dR = base                                   // (W, C)    ∂ℓ_t/∂h at the window rows
            let dLn = dR + width * c                        // (W, C)
            let dZ = dLn + width * c                        // (W, C)
            let dQKV = dZ + width * c                       // (W, 3C)
            let dAct = dQKV + width * 3 * c                 // (W, F)
            let dP = dAct + width * f                       // (W, T)    scores gradient of one head
            let sink = dP + width * t                       // (2C)      norm-parameter gradients, discarded
            var channel = slot
            while channel < channels {
                let bi = channel / t, target = channel % t
                let i0 = max(0, target - k), rows = target - i0 + 1
                let r0 = bi * t + i0                        // first window row in (B·T) buffers
                dR.update(repeating: 0, count: rows * c)
                (dR + (rows - 1) * c).update(from: seeds + (bi * t + target) * c, count: c)
                visit(HorizonRows(sequence: bi, target: target, layer: config.nLayers, firstPosition: i0, rows: dR))
                for l in stride(from: config.nLayers - 1, through: 0, by: -1) {
                    let a = cache.layers[l], p = blocks[l]
                    // MLP, row by row: dAct = dR · Wprojᵀ → GELU' → dLn = dAct · Wfcᵀ → ln_2.
                    GEMM.multiply(m: rows, n: f, k: c, a: dR, lda: c, transA: false, b: w + p.fcProjWeight, ldb: c,
                                  transB: true, c: dAct, ldc: f, accumulate: false, parallel: false)
                    RowOps.geluBackward(dInput: dAct, input: a.fcPre + r0 * f, dOut: dAct, count: rows * f)
                    GEMM.multiply(m: rows, n: c, k: f, a: dAct, lda: f, transA: false, b: w + p.fcWeight, ldb: f,
                                  transB: true, c: dLn, ldc: c, accumulate: false, parallel: false)
                    sink.update(repeating: 0, count: 2 * c)
                    RowOps.layerNormBackward(dInput: dR, dWeight: sink, dBias: sink + c, dOut: dLn,
                                             input: a.residMid + r0 * c, weight: w + p.ln2Weight,
                                             mean: a.ln2Mean + r0, rstd: a.ln2Rstd + r0, rows: rows, cols: c)
                    // Attention: dZ = dR · Wprojᵀ, through the heads into dQKV, then c_attn and ln_1.
                    GEMM.multiply(m: rows, n: c, k: c, a: dR, lda: c, transA: false, b: w + p.projWeight, ldb: c,
                                  transB: true, c: dZ, ldc: c, accumulate: false, parallel: false)
                    for h in 0..<nh {
                        attentionWindowBackward(dQKV: dQKV, dP: dP, dZ: dZ, layer: a, sequence: bi, head: h,
                                                firstQuery: i0, lastQuery: target, t: t, c: c, hs: hs,
                                                inputShare: share)
                    }
                    GEMM.multiply(m: rows, n: c, k: 3 * c, a: dQKV, lda: 3 * c, transA: false, b: w + p.attnWeight,
                                  ldb: 3 * c, transB: true, c: dLn, ldc: c, accumulate: false, parallel: false)
                    RowOps.layerNormBackward(dInput: dR, dWeight: sink, dBias: sink + c, dOut: dLn,
                                             input: a.residIn + r0 * c, weight: w + p.ln1Weight,
                                             mean: a.ln1Mean + r0, rstd: a.ln1Rstd + r0, rows: rows, cols: c)
                    visit(HorizonRows(sequence: bi, target: target, layer: l, firstPosition: i0, rows: dR))
                }
                channel += slots
            }
        }
    }

    /// One head's attention backward for queries i0…t (the window) against keys 0…t, writing the
    /// window rows of dQKV (W, 3C) for this head. Keys and values before i0 get no rows: nothing
    /// flows from them back into the window. A self-only (bigram) model needs no special case: its
    /// probabilities are the identity, for which the softmax backward is exactly zero.
    private func attentionWindowBackward(dQKV: UnsafeMutablePointer<Float>, dP: UnsafeMutablePointer<Float>,
                                         dZ: UnsafePointer<Float>, layer a: ActivationCache.Layer,
                                         sequence bi: Int, head h: Int, firstQuery i0: Int, lastQuery last: Int,
                                         t: Int, c: Int, hs: Int, inputShare: Float) {
        let rows = last - i0 + 1, keys = last + 1
        let scale = 1 / Float(hs).squareRoot()
        let nh = c / hs
        let seq = a.qkv + bi * t * 3 * c
        let q = seq + h * hs, kk = seq + c + h * hs, v = seq + 2 * c + h * hs      // (T, HS), row stride 3C
        let probs = a.probs + (bi * nh + h) * t * t                                  // (T, T)
        let dq = dQKV + h * hs, dk = dQKV + c + h * hs, dv = dQKV + 2 * c + h * hs   // (W, HS), row stride 3C
        let dzh = dZ + h * hs                                                        // (W, HS), row stride C
        // dP (W, keys) = dZ · vᵀ
        GEMM.multiply(m: rows, n: keys, k: hs, a: dzh, lda: c, transA: false, b: v, ldb: 3 * c, transB: true,
                      c: dP, ldc: keys, accumulate: false, parallel: false)
        // softmax backward per query row: dS = scale · p ⊙ (dP − Σ p·dP)
        for r in 0..<rows {
            let query = i0 + r
            let pr = probs + query * t, dr = dP + r * keys
            var dot: Float = 0
            for s in 0...query { dot += pr[s] * dr[s] }
            for s in 0...query { dr[s] = scale * pr[s] * (dr[s] - dot) }
            if query + 1 < keys { (dr + query + 1).update(repeating: 0, count: keys - query - 1) }
        }
        // dq (W, HS) = dS · k[0…t] ; dk (W, HS) = dS[:, i0…t]ᵀ · q[i0…t] ; dv (W, HS) = p[i0…t, i0…t]ᵀ · dZ
        GEMM.multiply(m: rows, n: hs, k: keys, a: dP, lda: keys, transA: false, b: kk, ldb: 3 * c, transB: false,
                      c: dq, ldc: 3 * c, accumulate: false, parallel: false)
        GEMM.multiply(m: rows, n: hs, k: rows, a: dP + i0, lda: keys, transA: true, b: q + i0 * 3 * c, ldb: 3 * c,
                      transB: false, c: dk, ldc: 3 * c, accumulate: false, parallel: false)
        GEMM.multiply(m: rows, n: hs, k: rows, a: probs + i0 * t + i0, lda: t, transA: true, b: dzh, ldb: c,
                      transB: false, c: dv, ldc: 3 * c, accumulate: false, parallel: false)
        guard inputShare < 1 else { return }
        // What reaches the input under a myopic flow: the diagonal term plus a share of the rest.
        let rest = 1 - inputShare
        for r in 0..<rows {
            let s = i0 + r
            let dsDiag = dP[r * keys + s], pDiag = probs[s * t + s]
            for j in 0..<hs {
                dk[r * 3 * c + j] = inputShare * dk[r * 3 * c + j] + rest * (dsDiag * q[s * 3 * c + j])
                dv[r * 3 * c + j] = inputShare * dv[r * 3 * c + j] + rest * (pDiag * dzh[r * c + j])
            }
        }
    }
}
