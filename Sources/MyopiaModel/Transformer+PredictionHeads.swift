// Transformer: multi-token prediction heads (Gloeckle et al. 2024; docs/DESIGN.md §3).
//
// Dimensions: B batch, T time, C d_model, V vocab, L layers, N = B·T rows; H the number of heads
// (config.predictionHeads), j = 1…H a head. Head 1 is the model itself: the last block, ln_f and the
// unembedding predict x_{t+1}. Head j ≥ 2 is one more block, `mtp.{j}.*`, reading h_{L−1} (the residual
// stream entering the last block; for L = 1 the embedding output) and predicting x_{t+j} through the
// same ln_f and unembedding:
//
//   u_j = block_j(h_{L−1})            (N, C)   mtp.{j}.hook_resid_post
//   logits_j = ln_f(u_j) · headᵀ      (N, V)   not kept: one buffer serves every head
//   ℓ_{j,t} = CE(logits_j[t], x_{t+j}), masked where t + j − 1 ≥ T or the source target is negative
//   L = (1/H) Σ_j mean_t ℓ_{j,t}
//
// forward(tokens:targets:…) and backward(cache:) are the t+1 model and stay untouched; the heads'
// forward and backward wrap them.

import MyopiaKernels

extension Transformer {
    /// After `forward(tokens:targets:…)` on the same cache: runs every extra head's block, the shared
    /// final norm and unembedding, and its cross-entropy against x_{t+j} (position t's target is
    /// `targets[t + j − 1]`, masked past the window or where that target is negative). Returns the
    /// mean over the H heads of each head's mean loss (head 1's is the forward's). With H = 1 it is
    /// the forward's loss. Leaves the t+1 logits as the forward wrote them.
    public func forwardPredictionHeads(cache: ActivationCache) -> Float {
        precondition(cache.hasTargets, "the prediction heads' loss needs a forward pass with targets")
        precondition(!config.isContinuous, "a model with continuous heads has no prediction heads")
        let b = cache.batch, t = cache.seqLen, n = b * t, v = config.vocabSize
        let first = Self.meanLoss(rowLoss: cache.rowLoss, targets: cache.targets, rows: n).mean
        guard config.predictionHeads > 1 else { return first }
        forwardPredictionBlocks(cache: cache)
        var total = Double(first)
        for (i, head) in cache.predictionHeads.enumerated() {
            let j = i + 2
            // targets_j[b, t] = targets[b, t + j − 1]: x_{t+j}.
            for bi in 0..<b {
                for ti in 0..<t {
                    let source = ti + j - 1
                    let target = source < t ? cache.targets[bi * t + source] : CrossEntropy.ignoreIndex
                    head.targets[bi * t + ti] = target < 0 ? CrossEntropy.ignoreIndex : target
                }
            }
            // logits_j (N, V) = ln_f(u_j) (N, C) · headᵀ
            logits(cache.headLogits, from: head.lnf, rows: n)
            CrossEntropy.forward(rowLoss: head.rowLoss, logZ: head.logZ, logits: cache.headLogits, targets: head.targets,
                                 rows: n, v: v, scratch: cache.lossScratch)
            let (mean, counted) = Self.meanLoss(rowLoss: head.rowLoss, targets: head.targets, rows: n)
            cache.predictionCountedTargets[i] = counted
            total += Double(mean)
        }
        cache.predictionLossesAreCurrent = true
        return Float(total / Double(config.predictionHeads))
    }

    /// The gradient of `forwardPredictionHeads`'s loss for every parameter (trunk, extra blocks, the
    /// shared final norm and head), accumulated into `params.grads` under `flow`. Each extra head's
    /// logits are rebuilt, differentiated and sent back through its block to h_{L−1}, where the sum
    /// joins the trunk's gradient after the last block's backward. With H = 1 this is exactly
    /// `backward(cache:)`. Overwrites the logits.
    public func backwardPredictionHeads(cache: ActivationCache) {
        backwardPredictionHeads(cache: cache, observing: nil)
    }

    /// `backwardPredictionHeads(cache:)` that also hands `observe` dL/dh_l (B·T, C) for every
    /// residual stream l = L … 0 as backward reaches it (the upstream table reads them).
    public func backwardPredictionHeads(cache: ActivationCache, observing observe: ((Int, UnsafePointer<Float>) -> Void)?) {
        precondition(flow != .localMyopic, "prediction heads do not train under the local-myopic flow")
        let count = config.predictionHeads
        guard count > 1 else {
            backwardHead(cache: cache)
            return backwardBlocks(cache: cache, addingToLastBlockInput: nil, observing: observe)
        }
        precondition(cache.predictionLossesAreCurrent, "backwardPredictionHeads follows forwardPredictionHeads")
        let b = cache.batch, t = cache.seqLen, n = b * t, c = config.dModel, v = config.vocabSize
        let w = params.weights, g = params.grads
        let share = 1 / Float(count)
        cache.dPredictionResid.update(repeating: 0, count: n * c)
        for (i, head) in cache.predictionHeads.enumerated() {
            logits(cache.headLogits, from: head.lnf, rows: n)
            CrossEntropy.backward(logits: cache.headLogits, logZ: head.logZ, targets: head.targets, rows: n, v: v,
                                  scale: share / Float(max(1, cache.predictionLossDenominators?[i] ?? cache.predictionCountedTargets[i])),
                                  softcap: finalSoftcap)
            // dlnf (N, C) = dlogits · head ; dhead (V, C) += dlogitsᵀ · lnf
            GEMM.multiply(m: n, n: c, k: v, a: cache.headLogits, lda: v, transA: false,
                          b: w + lmHead, ldb: c, transB: false, c: cache.dLn, ldc: c, accumulate: false)
            GEMM.multiply(m: v, n: c, k: n, a: cache.headLogits, lda: v, transA: true,
                          b: head.lnf, ldb: c, transB: false, c: g + lmHead, ldc: c, accumulate: true)
            cache.dResid.update(repeating: 0, count: n * c)
            finalNorm.backward(w: w, g: g, dInp: cache.dResid, dOut: cache.dLn, inp: head.residOut,
                               mean: head.lnfMean, rstd: head.lnfRstd, n: n, c: c)
            Block.backward(head.layer, scratch: cache, w: w, g: g, p: predictionBlocks[i], shape: headShape, b: b, t: t,
                           inputShare: flow.offDiagonalInputShare, probs: cache.keptPredictionPattern(head: i))
            Elementwise.add(into: cache.dPredictionResid, cache.dResid, count: n * c)
        }
        backwardHead(cache: cache, lossScale: share)
        backwardBlocks(cache: cache, addingToLastBlockInput: cache.dPredictionResid, observing: observe)
    }

    /// Every extra head's block and the final norm of its output, from h_{L−1} of the last forward
    /// pass (no logits, no loss): what the `mtp.{j}.*` activations need.
    func forwardPredictionBlocks(cache: ActivationCache) {
        precondition(cache.referencePast?.isCurrent != true, "prediction heads do not run under the local-myopic flow")
        let n = cache.batch * cache.seqLen, c = config.dModel, w = params.weights
        let keep = cache.keepsPattern || attentionPattern == .selfOnly
        if keep { cache.allocatePredictionPatterns() }
        for (i, head) in cache.predictionHeads.enumerated() {
            cache.predictionPatternIsCurrent[i] = keep
            Block.forward(head.layer, residOut: head.residOut, w: w, p: predictionBlocks[i], shape: headShape,
                          b: cache.batch, t: cache.seqLen, pattern: attentionPattern,
                          probs: keep ? cache.predictionPatterns[i] : nil)
            finalNorm.forward(w: w, out: head.lnf, mean: head.lnfMean, rstd: head.lnfRstd, inp: head.residOut,
                              n: n, c: c, eps: eps)
        }
        cache.predictionBlocksAreCurrent = true
    }

    /// Head j's (j ≥ 2) counted targets in windows (batch, seqLen) of `targets`: the positions t whose
    /// x_{t+j}, `targets[t + j − 1]`, lies inside the window and is not negative, as
    /// `forwardPredictionHeads` counts them.
    public static func predictionCountedTargets(head j: Int, targets: UnsafePointer<Int32>, batch b: Int, seqLen t: Int) -> Int {
        var counted = 0
        for bi in 0..<b {
            for source in max(0, j - 1)..<max(max(0, j - 1), t) where targets[bi * t + source] >= 0 { counted += 1 }
        }
        return counted
    }

    /// After `forwardPredictionHeads`: the sum of extra head j's (j ≥ 2) losses over its counted
    /// positions, in row order (the numerator of its mean).
    public func predictionHeadLossSum(head j: Int, cache: ActivationCache) -> Double {
        precondition(cache.predictionLossesAreCurrent && j >= 2 && j <= config.predictionHeads)
        let head = cache.predictionHeads[j - 2]
        var total = 0.0
        for r in 0..<(cache.batch * cache.seqLen) where head.targets[r] >= 0 { total += Double(head.rowLoss[r]) }
        return total
    }

    /// The mean of `rowLoss` over rows whose target is not negative, and how many there are (the
    /// mean is 0 when none is). The same sum, in the same order, as `forward(tokens:targets:…)`.
    static func meanLoss(rowLoss: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows: Int) -> (mean: Float, counted: Int) {
        var total = 0.0, counted = 0
        for r in 0..<rows where targets[r] >= 0 {
            total += Double(rowLoss[r])
            counted += 1
        }
        return (counted > 0 ? Float(total / Double(counted)) : 0, counted)
    }
}
