// Transformer: the residual streams alone, and the head applied to any of them — what probes and
// the logit lens read (docs/analyses.md).

import MyopiaKernels
import MyopiaSupport

extension Transformer {
    /// Forward through the embedding and blocks 0..<`blocks` (all if nil) only: fills the residual
    /// streams h_0…h_blocks (`cache.withResidual(layer:)`) and those blocks' activations; no final
    /// norm, no logits, no loss. For analyses that read hidden states.
    public func forwardResiduals(tokens: UnsafePointer<Int32>, batch b: Int, seqLen t: Int, blocks count: Int? = nil,
                                 cache: ActivationCache) {
        precondition(!config.isContinuous, "a model with continuous heads reads features")
        precondition(b <= cache.capacityB && t <= cache.capacityT && t <= config.maxPositions)
        startResidualPass(cache, b: b, t: t)
        cache.tokens.update(from: tokens, count: b * t)
        embed(out: cache.layers.first?.residIn ?? cache.residFinal, tokens: tokens, b: b, t: t)
        forwardBlocks(upTo: count ?? config.nLayers, cache: cache)
    }

    /// `forwardResiduals` for a model with continuous heads: features (B, T, FI).
    public func forwardResiduals(features: UnsafePointer<Float>, batch b: Int, seqLen t: Int, blocks count: Int? = nil,
                                 cache: ActivationCache) {
        guard case .continuous(let inWeight, let inBias, _, _) = heads else { preconditionFailure("a language model reads tokens") }
        precondition(b <= cache.capacityB && t <= cache.capacityT && t <= config.maxPositions)
        let fi = config.inputFeatures ?? 0, w = params.weights
        startResidualPass(cache, b: b, t: t)
        cache.features.update(from: features, count: b * t * fi)
        FeatureEmbedding.forward(out: cache.layers.first?.residIn ?? cache.residFinal, features: features,
                                 weight: w + inWeight, bias: w + inBias, wpe: w + wpe!, b: b, t: t, c: config.dModel, fi: fi)
        forwardBlocks(upTo: count ?? config.nLayers, cache: cache)
    }

    private func startResidualPass(_ cache: ActivationCache, b: Int, t: Int) {
        cache.batch = b
        cache.seqLen = t
        cache.hasTargets = false
        cache.countedTargets = 0
    }

    /// The model's own head applied to any residual stream (the logit lens): logits (rows, V) =
    /// norm_f(h) · headᵀ for h (rows, C) (soft-capped where the family caps its logits), with the
    /// same kernels as `forward`, so on the final residual it reproduces the model's logits.
    public func unembed(_ h: UnsafePointer<Float>, rows n: Int, logits: UnsafeMutablePointer<Float>) {
        precondition(!config.isContinuous, "a model with continuous heads has no unembedding")
        let c = config.dModel
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: n * c + 2 * n)
        defer { scratch.deallocate() }
        finalNorm.forward(w: params.weights, out: scratch, mean: scratch + n * c, rstd: scratch + n * c + n, inp: h,
                          n: n, c: c, eps: eps)
        self.logits(logits, from: scratch, rows: n)
    }
}
