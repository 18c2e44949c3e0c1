import Foundation
import MyopiaKernels

// Dimensions: B batch, T time, C d_model, NH heads, HS head size, F MLP width, V vocab, L layers,
// N = B·T. Parameters (GPT-2 checkpoint keys):
//   wte.weight (V, C)   wpe.weight (maxT, C)   h.{l}.* (see BlockParameters)   ln_f.{weight,bias} (C)
// The head is tied: logits = ln_f(x) · wteᵀ.

/// A GPT-2-family decoder-only transformer with an explicit backward pass.
public final class Transformer {
    public let config: ModelConfig
    public let params: ParameterStore
    /// How backward treats the gradient through attention (and, for `bigram`, how forward attends).
    /// Starts as the checkpoint's own pattern: `bigram` for a model saved as a transformer bigram.
    public var flow: GradientFlow
    /// The pattern forward uses: `bigram` flow or a bigram checkpoint means self-only attention.
    public var attentionPattern: AttentionPattern { flow == .bigram ? .selfOnly : config.attention }
    /// The config as it should be saved: it records a bigram flow, which changes the forward pass.
    public var savedConfig: ModelConfig {
        var c = config
        c.attention = attentionPattern
        return c
    }
    /// The key each parameter had in the file it was loaded from (e.g. with a `transformer.`
    /// prefix), so results can be saved under the checkpoint's own names.
    public var checkpointKeys: [String: String] = [:]
    let blocks: [BlockParameters]
    let wte: Int, wpe: Int, lnfWeight: Int, lnfBias: Int

    public init(config: ModelConfig) {
        self.config = config
        flow = config.attention == .selfOnly ? .bigram : .vanilla
        let params = ParameterStore(layout: Transformer.layout(config))
        self.params = params
        blocks = (0..<config.nLayers).map { BlockParameters(params, layer: $0) }
        wte = params.offset("wte.weight")
        wpe = params.offset("wpe.weight")
        lnfWeight = params.offset("ln_f.weight")
        lnfBias = params.offset("ln_f.bias")
    }

    /// The GPT-2 parameter layout in checkpoint order.
    public static func layout(_ config: ModelConfig) -> [(String, [Int])] {
        let c = config.dModel
        var layout: [(String, [Int])] = [("wte.weight", [config.vocabSize, c]), ("wpe.weight", [config.maxPositions, c])]
        for l in 0..<config.nLayers { layout += BlockParameters.layout(layer: l, c: c, f: config.dMLP) }
        layout += [("ln_f.weight", [c]), ("ln_f.bias", [c])]
        return layout
    }

    /// GPT-2 initialisation: weights and embeddings N(0, 0.02²), residual projections (attn.c_proj,
    /// mlp.c_proj) N(0, (0.02/√(2L))²), biases 0, LayerNorm weights 1.
    public func initialize(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let residualStd = Float(0.02 / (2.0 * Double(config.nLayers)).squareRoot())
        for e in params.entries {
            let p = params.weights + e.offset
            if e.name.hasSuffix(".bias") {
                p.update(repeating: 0, count: e.count)
            } else if e.name.hasPrefix("ln_f.") || e.name.contains(".ln_") {
                p.update(repeating: 1, count: e.count)
            } else if e.name.hasSuffix("c_proj.weight") {
                rng.fillNormal(p, count: e.count, std: residualStd)
            } else {
                rng.fillNormal(p, count: e.count, std: 0.02)
            }
        }
    }

    public func makeCache(batch: Int, seqLen: Int) -> ActivationCache {
        ActivationCache(config: config, batch: batch, seqLen: seqLen)
    }

    /// Forward over tokens (B, T). With targets (B, T), computes ℓ_t for every position and returns
    /// the mean loss over positions whose target is not negative (−1 marks a position with no
    /// loss); without, returns nil and leaves only the logits.
    @discardableResult
    public func forward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?,
                        batch b: Int, seqLen t: Int, cache: ActivationCache) -> Float? {
        precondition(b <= cache.capacityB && t <= cache.capacityT && t <= config.maxPositions)
        let c = config.dModel, n = b * t, v = config.vocabSize
        let w = params.weights
        cache.batch = b
        cache.seqLen = t
        cache.tokens.update(from: tokens, count: n)
        cache.hasTargets = targets != nil
        if let targets { cache.targets.update(from: targets, count: n) }

        Embedding.forward(out: cache.layers.first?.residIn ?? cache.residFinal, tokens: tokens,
                          wte: w + wte, wpe: w + wpe, b: b, t: t, c: c)
        for l in 0..<config.nLayers {
            let out = l + 1 < config.nLayers ? cache.layers[l + 1].residIn : cache.residFinal
            Block.forward(cache.layers[l], residOut: out, w: w, p: blocks[l], b: b, t: t, c: c,
                          nh: config.nHeads, f: config.dMLP, eps: Float(config.layerNormEps), pattern: attentionPattern)
        }
        LayerNorm.forward(out: cache.lnf, mean: cache.lnfMean, rstd: cache.lnfRstd, inp: cache.residFinal,
                          weight: w + lnfWeight, bias: w + lnfBias, n: n, c: c, eps: Float(config.layerNormEps))
        // logits (N, V) = lnf (N, C) · wteᵀ
        GEMM.multiply(m: n, n: v, k: c, a: cache.lnf, lda: c, transA: false,
                      b: w + wte, ldb: c, transB: true, c: cache.logits, ldc: v, accumulate: false)
        guard let targets else { return nil }
        CrossEntropy.forward(rowLoss: cache.rowLoss, logZ: cache.logZ, logits: cache.logits, targets: targets,
                             rows: n, v: v, scratch: cache.lossScratch)
        var total = 0.0, counted = 0
        for r in 0..<n where targets[r] >= 0 {
            total += Double(cache.rowLoss[r])
            counted += 1
        }
        cache.countedTargets = counted
        return counted > 0 ? Float(total / Double(counted)) : 0
    }

    /// Convenience forward over arrays of B·T tokens.
    @discardableResult
    public func forward(tokens: [Int32], targets: [Int32]?, batch: Int, seqLen: Int,
                        cache: ActivationCache) -> Float? {
        tokens.withUnsafeBufferPointer { tok in
            if let targets {
                return targets.withUnsafeBufferPointer { tgt in
                    forward(tokens: tok.baseAddress!, targets: tgt.baseAddress!, batch: batch, seqLen: seqLen, cache: cache)
                }
            }
            return forward(tokens: tok.baseAddress!, targets: nil, batch: batch, seqLen: seqLen, cache: cache)
        }
    }

    /// Backward of the mean loss of the last forward (which must have had targets), accumulating
    /// into `params.grads`, under `flow`. `lossScale` multiplies dL (1 for the mean loss).
    /// Overwrites the logits.
    public func backward(cache: ActivationCache, lossScale: Float = 1) {
        backwardHead(cache: cache, lossScale: lossScale)
        backwardBlocks(cache: cache)
    }

    /// The head's half of backward: from the loss to `cache.dResid` = dL/d(residual after the last
    /// block) (N, C), accumulating the head's and ln_f's parameter gradients. Row-wise: with
    /// `lossScale` = N (the number of counted targets) row t holds ∂ℓ_t/∂h_{L,t}.
    public func backwardHead(cache: ActivationCache, lossScale: Float = 1) {
        precondition(cache.hasTargets, "backward needs a forward pass with targets")
        let b = cache.batch, t = cache.seqLen
        let c = config.dModel, n = b * t, v = config.vocabSize
        let w = params.weights, g = params.grads
        CrossEntropy.backward(logits: cache.logits, logZ: cache.logZ, targets: cache.targets,
                              rows: n, v: v, scale: lossScale / Float(max(1, cache.countedTargets)))
        // dlnf (N, C) = dlogits · wte ; dwte (V, C) += dlogitsᵀ · lnf
        GEMM.multiply(m: n, n: c, k: v, a: cache.logits, lda: v, transA: false,
                      b: w + wte, ldb: c, transB: false, c: cache.dLn, ldc: c, accumulate: false)
        GEMM.multiply(m: v, n: c, k: n, a: cache.logits, lda: v, transA: true,
                      b: cache.lnf, ldb: c, transB: false, c: g + wte, ldc: c, accumulate: true)
        cache.dResid.update(repeating: 0, count: n * c)
        LayerNorm.backward(dInp: cache.dResid, dWeight: g + lnfWeight, dBias: g + lnfBias, dOut: cache.dLn,
                           inp: cache.residFinal, weight: w + lnfWeight, mean: cache.lnfMean, rstd: cache.lnfRstd,
                           n: n, c: c)
    }

    /// The blocks' half of backward: from `cache.dResid` = dL/d(residual after the last block) down
    /// through every block and the embeddings, accumulating parameter gradients.
    public func backwardBlocks(cache: ActivationCache) {
        let b = cache.batch, t = cache.seqLen, c = config.dModel
        let w = params.weights, g = params.grads
        for l in stride(from: config.nLayers - 1, through: 0, by: -1) {
            Block.backward(cache.layers[l], scratch: cache, w: w, g: g, p: blocks[l], b: b, t: t, c: c,
                           nh: config.nHeads, f: config.dMLP, inputShare: flow.offDiagonalInputShare)
        }
        Embedding.backward(dWte: g + wte, dWpe: g + wpe, dOut: cache.dResid, tokens: cache.tokens, b: b, t: t, c: c)
    }
}
