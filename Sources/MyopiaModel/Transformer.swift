import Foundation
import MyopiaKernels
import MyopiaSupport

// Dimensions: B batch, T time, C d_model, NH heads, HS head size, F MLP width, V vocab, L layers,
// N = B·T; FI input features and O outputs for continuous heads. Parameters (checkpoint keys, from
// the family's Architecture.Keys):
//   GPT-2: wte.weight (V, C)  wpe.weight (maxT, C)  h.{l}.*  ln_f.{weight,bias} (C); the head is tied:
//          logits = ln_f(x) · wteᵀ.
//   Llama and the families read like it: model.embed_tokens.weight (V, C)  model.layers.{l}.*
//          model.norm.weight (C)  lm_head.weight (V, C) unless tied; logits = norm(x) · lm_headᵀ
//          (Gemma 2: soft-capped). Positions enter by RoPE.
//   GPT-NeoX: gpt_neox.embed_in.weight  gpt_neox.layers.{l}.*  gpt_neox.final_layer_norm.{weight,bias}
//          embed_out.weight unless tied.
// (Architecture.blockLayout lists each block's parameters.)
// With N prediction heads (docs/DESIGN.md §3), after every key above: mtp.{j}.* for j = 2…N, one block
// each with the family's block keys (Transformer+PredictionHeads.swift).
// With continuous heads (GPT-2 only, docs/DESIGN.md §3) wte and the tied head give way to two Conv1D-style
// projections:
//   input_proj.weight (FI, C)  input_proj.bias (C)     x_0 = features · W + b + wpe[t]
//   output_proj.weight (C, O)  output_proj.bias (O)    predictions = ln_f(x) · W + b, Huber or MSE loss

/// A decoder-only transformer of any family Myopia reads, with an explicit backward pass; what it
/// computes is its config's `Architecture`.
public final class Transformer {
    public let config: ModelConfig
    public let params: ParameterStore
    /// How backward treats the gradient through attention (and, for `bigram` and `localMyopic`, how
    /// forward attends). Starts as the checkpoint's own pattern: `bigram` for a model saved as a
    /// transformer bigram.
    public var flow: GradientFlow
    /// Under the `localMyopic` flow: the frozen model whose keys and values every layer attends to
    /// for earlier positions (see LocalMyopic.swift). Never written to: its parameters get no
    /// gradient. Must have this model's attention shape (`checkReference`).
    public var reference: Transformer?
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
    /// Weights that generation reads quantised (a GGUF's blocks, `GGUFModel.quantizedWeights`):
    /// a `KVCache` or `DecodeBatch` made with `quantized: true` decodes from them; everything else
    /// (training, the analyses, scoring) reads the fp32 parameters.
    public var quantizedDecoding: QuantizedWeights?
    /// Called as backward goes down the model with an offset o: from here to the end of this pass,
    /// backward writes no gradient at or after o (params.grads[o...] is final). It comes after the
    /// head (o: the first parameter after the last block), after each block l (o: block l's first
    /// parameter) and after the embeddings (0). The data-parallel step sends those gradients on
    /// while backward computes the rest.
    public var gradientsComplete: ((Int) -> Void)?
    /// Where each block's parameters start in the flat buffer, then where the parameters after the
    /// last block start (L + 1 offsets, increasing).
    public let blockStarts: [Int]
    public let architecture: Architecture
    let blocks: [BlockParameters]
    /// The blocks of extra prediction heads j = 2…N, at index j − 2 (empty when N = 1).
    let predictionBlocks: [BlockParameters]
    /// Each trunk layer's shape (its attention window may differ: Gemma 2 alternates).
    let shapes: [BlockShape]
    /// The shape the extra prediction heads' blocks use: the last trunk layer's.
    let headShape: BlockShape
    /// The norms' epsilon.
    let eps: Float
    /// GPT-2's learned positions (the rotary families: none).
    let wpe: Int?
    let finalNorm: NormParameters
    let heads: Heads
    /// Gemma's √C on the token embedding (1 elsewhere), rounded to fp32 as Hugging Face does.
    let embeddingScale: Float
    /// Gemma 2's final-logit soft-cap.
    let finalSoftcap: Float?

    /// Where the input and output heads sit in the parameter buffer.
    enum Heads {
        /// Token embedding in, logits out through `head` (V, C): the embedding itself when tied.
        case tokens(embedding: Int, head: Int)
        /// Features in through input_proj, numbers out through output_proj.
        case continuous(inWeight: Int, inBias: Int, outWeight: Int, outBias: Int)
    }

    /// Offset of the token embedding (wte / embed_tokens): a language model's (a model with
    /// continuous heads has none).
    var wte: Int {
        guard case .tokens(let embedding, _) = heads else { preconditionFailure("a model with continuous heads has no wte") }
        return embedding
    }

    /// Offset of the output head (V, C): wte when tied.
    var lmHead: Int {
        guard case .tokens(_, let head) = heads else { preconditionFailure("a model with continuous heads has no lm_head") }
        return head
    }

    public init(config: ModelConfig) {
        self.config = config
        let arch = config.architecture
        architecture = arch
        flow = config.attention == .selfOnly ? .bigram : .vanilla
        let params = ParameterStore(layout: Transformer.layout(config))
        self.params = params
        blocks = (0..<config.nLayers).map {
            BlockParameters(params, config: config, prefix: arch.prefix(layer: $0))
        }
        blockStarts = (0..<config.nLayers).map { l in
            params.entries.first { $0.name.hasPrefix(arch.prefix(layer: l)) }!.offset
        } + [params.offset(arch.keys.finalNorm + ".weight")]
        predictionBlocks = stride(from: 2, through: config.predictionHeads, by: 1).map {
            BlockParameters(params, config: config, prefix: BlockParameters.prefix(predictionHead: $0))
        }
        let keys = arch.keys
        if config.isContinuous {
            heads = .continuous(inWeight: params.offset("input_proj.weight"), inBias: params.offset("input_proj.bias"),
                                outWeight: params.offset("output_proj.weight"), outBias: params.offset("output_proj.bias"))
        } else {
            let embedding = params.offset(keys.embedding)
            heads = .tokens(embedding: embedding, head: config.tiedEmbeddings ? embedding : params.offset(keys.head))
        }
        wpe = keys.positions.map { params.offset($0) }
        finalNorm = NormParameters(weight: params.offset(keys.finalNorm + ".weight"),
                                   bias: arch.norm == .layerNorm ? params.offset(keys.finalNorm + ".bias") : nil,
                                   offset: arch.normWeightOffset)
        let rope = arch.learnedPositions ? nil
            : RotaryEmbedding(headSize: config.headSize, rotaryDims: config.rotaryDims, positions: config.maxPositions,
                              theta: config.ropeTheta, interleaved: config.ropeInterleaved)
        shapes = (0..<config.nLayers).map { BlockShape(config, layer: $0, rope: rope) }
        headShape = BlockShape(config, layer: max(0, config.nLayers - 1), rope: rope)
        eps = Float(config.layerNormEps)
        embeddingScale = arch.scalesEmbedding ? Float(Double(config.dModel).squareRoot()) : 1
        finalSoftcap = config.finalSoftcap.map { Float($0) }
    }

    /// The parameter layout in checkpoint order: the embedding (GPT-2 with continuous heads:
    /// input_proj in its place), GPT-2's wpe, the blocks, the final norm (continuous heads:
    /// output_proj after it), the head unless tied (GPT-2 always ties it). Then, after every
    /// standard key, the blocks of extra prediction heads j = 2…N under `mtp.{j}.`.
    public static func layout(_ config: ModelConfig) -> [(String, [Int])] {
        let c = config.dModel, arch = config.architecture, keys = arch.keys
        var layout: [(String, [Int])]
        if let fi = config.inputFeatures {
            layout = [("input_proj.weight", [fi, c]), ("input_proj.bias", [c])]
        } else {
            layout = [(keys.embedding, [config.vocabSize, c])]
        }
        if let positions = keys.positions { layout.append((positions, [config.maxPositions, c])) }
        for l in 0..<config.nLayers {
            layout += BlockParameters.layout(config, prefix: arch.prefix(layer: l))
        }
        layout.append((keys.finalNorm + ".weight", [c]))
        if arch.norm == .layerNorm { layout.append((keys.finalNorm + ".bias", [c])) }
        if let o = config.outputs {
            layout += [("output_proj.weight", [c, o]), ("output_proj.bias", [o])]
        }
        if config.family != .gpt2 && !config.tiedEmbeddings { layout.append((keys.head, [config.vocabSize, c])) }
        for j in stride(from: 2, through: config.predictionHeads, by: 1) {
            layout += BlockParameters.layout(config, prefix: BlockParameters.prefix(predictionHead: j))
        }
        return layout
    }

    /// GPT-2 initialisation: weights and embeddings N(0, 0.02²), residual projections (attn.c_proj,
    /// mlp.c_proj) N(0, (0.02/√(2L))²), biases 0, norm weights 1. The continuous projections are
    /// weights like any other: N(0, 0.02²). The other families (as their `…PreTrainedModel`): every
    /// matrix N(0, 0.02²), biases 0, norm scales 1 (Gemma's stored weight 0: its scale is 1 + w).
    /// The blocks of extra prediction heads are initialised as the trunk's (GPT-2's residual
    /// projections with the trunk's L).
    public func initialize(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let residualStd = Float(0.02 / (2.0 * Double(config.nLayers)).squareRoot())
        for e in params.entries {
            let p = params.weights + e.offset
            if e.name.hasSuffix(".bias") {
                p.update(repeating: 0, count: e.count)
            } else if e.name.hasPrefix("ln_f.") || e.name.contains(".ln_") || e.name.hasSuffix("norm.weight") {
                p.update(repeating: 1 - architecture.normWeightOffset, count: e.count)
            } else if config.family == .gpt2 && e.name.hasSuffix("c_proj.weight") {
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
        precondition(!config.isContinuous, "a model with continuous heads reads features: forward(features:...)")
        precondition(b <= cache.capacityB && t <= cache.capacityT && t <= config.maxPositions)
        let c = config.dModel, n = b * t, v = config.vocabSize
        let w = params.weights
        cache.batch = b
        cache.seqLen = t
        cache.tokens.update(from: tokens, count: n)
        cache.hasTargets = targets != nil
        if let targets { cache.targets.update(from: targets, count: n) }

        embed(out: cache.layers.first?.residIn ?? cache.residFinal, tokens: tokens, b: b, t: t)
        forwardBlocks(cache: cache)
        finalNorm.forward(w: w, out: cache.lnf, mean: cache.lnfMean, rstd: cache.lnfRstd, inp: cache.residFinal,
                          n: n, c: c, eps: eps)
        logits(cache.logits, from: cache.lnf, rows: n)
        guard let targets else { return nil }
        CrossEntropy.forward(rowLoss: cache.rowLoss, logZ: cache.logZ, logits: cache.logits, targets: targets,
                             rows: n, v: v, scratch: cache.lossScratch)
        let (mean, counted) = Self.meanLoss(rowLoss: cache.rowLoss, targets: targets, rows: n)
        cache.countedTargets = counted
        return mean
    }

    /// out (b·t, C) = the embedding of tokens (b, t) at positions firstPosition + (r mod t): wte (scaled
    /// by √C for Gemma), plus wpe for learned positions.
    func embed(out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>, b: Int, t: Int, firstPosition: Int = 0) {
        let w = params.weights, c = config.dModel
        Embedding.forward(out: out, tokens: tokens, wte: w + wte, wpe: wpe.map { w + $0 + firstPosition * c }, b: b, t: t,
                          c: c, scale: embeddingScale)
    }

    /// logits (rows, V) = normalised rows (rows, C) · headᵀ, soft-capped where the family caps them.
    /// The head is read from `quantized` where it holds it.
    func logits(_ out: UnsafeMutablePointer<Float>, from normalised: UnsafePointer<Float>, rows n: Int,
                quantized: QuantizedWeights? = nil) {
        let c = config.dModel, v = config.vocabSize
        if let q = quantized?.matrices[lmHead] {
            precondition(q.rows == v && q.columns == c, "the quantised head is (V, C)")
            q.multiply(m: n, a: normalised, lda: c, c: out, ldc: v, accumulate: false)
        } else {
            GEMM.multiply(m: n, n: v, k: c, a: normalised, lda: c, transA: false,
                          b: params.weights + lmHead, ldb: c, transB: true, c: out, ldc: v, accumulate: false)
        }
        if let cap = finalSoftcap { CrossEntropy.softcap(out, count: n * v, cap: cap) }
    }

    /// Every block, from `cache.layers[0].residIn` to `cache.residFinal`. Under the local-myopic flow
    /// the reference model first runs on the same tokens, and each layer attends to its keys and values.
    func forwardBlocks(cache: ActivationCache) {
        forwardBlocks(upTo: config.nLayers, cache: cache)
    }

    /// `forwardBlocks(cache:)` stopped after `count` blocks. The attention patterns are kept when the
    /// cache asks for them or attention reads them (self-only, local-myopic).
    func forwardBlocks(upTo count: Int, cache: ActivationCache) {
        precondition((0...config.nLayers).contains(count))
        let past = referencePast(for: cache)
        let keep = cache.keepsPattern || past != nil || attentionPattern == .selfOnly
        cache.predictionBlocksAreCurrent = false
        cache.predictionLossesAreCurrent = false
        if keep { cache.allocatePatterns() }
        for l in 0..<config.nLayers { cache.patternIsCurrent[l] = keep && l < count }
        for l in 0..<count {
            let out = l + 1 < config.nLayers ? cache.layers[l + 1].residIn : cache.residFinal
            Block.forward(cache.layers[l], residOut: out, w: params.weights, p: blocks[l], shape: shapes[l],
                          b: cache.batch, t: cache.seqLen, pattern: attentionPattern,
                          probs: keep ? cache.patterns[l] : nil, past: past?.qkv[l])
        }
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

    /// `backward(cache:lossScale:)` of a loss with terms of its own on the logits: after the
    /// cross-entropy gradient is written, `adjust` receives dL/dlogits (N, V) and adds to it (a
    /// training game's policy-gradient term); the rest of backward carries both. With a final
    /// soft-cap (Gemma 2: logits ℓ = cap·tanh(z/cap)) the buffer holds dL/dz, the gradient before
    /// the cap: a term on ℓ must be multiplied by dℓ/dz = 1 − (ℓ/cap)² as it is added (the capped
    /// logits are gone by then; read them before backward).
    public func backward(cache: ActivationCache, lossScale: Float = 1,
                         adjustingLogitGradient adjust: (UnsafeMutablePointer<Float>) -> Void) {
        backwardHead(cache: cache, lossScale: lossScale, adjustingLogitGradient: adjust)
        backwardBlocks(cache: cache)
    }

    /// The head's half of backward: from the loss to `cache.dResid` = dL/d(residual after the last
    /// block) (N, C), accumulating the head's and ln_f's parameter gradients. Row-wise: with
    /// `lossScale` = N (the number of counted targets) row t holds ∂ℓ_t/∂h_{L,t}.
    public func backwardHead(cache: ActivationCache, lossScale: Float = 1) {
        backwardHead(cache: cache, lossScale: lossScale) { _ in }
    }

    /// `backwardHead(cache:lossScale:)` with `adjust` called on dL/dlogits (N, V) once the
    /// cross-entropy gradient is in it (see `backward(cache:lossScale:adjustingLogitGradient:)`).
    public func backwardHead(cache: ActivationCache, lossScale: Float = 1,
                             adjustingLogitGradient adjust: (UnsafeMutablePointer<Float>) -> Void) {
        precondition(cache.hasTargets, "backward needs a forward pass with targets")
        if case .continuous = heads { return backwardRegressionHead(cache: cache, lossScale: lossScale) }
        let b = cache.batch, t = cache.seqLen
        let c = config.dModel, n = b * t, v = config.vocabSize
        let w = params.weights, g = params.grads
        CrossEntropy.backward(logits: cache.logits, logZ: cache.logZ, targets: cache.targets,
                              rows: n, v: v, scale: lossScale / Float(max(1, cache.lossDenominator ?? cache.countedTargets)),
                              softcap: finalSoftcap)
        adjust(cache.logits)
        // dlnf (N, C) = dlogits · head ; dhead (V, C) += dlogitsᵀ · lnf
        GEMM.multiply(m: n, n: c, k: v, a: cache.logits, lda: v, transA: false,
                      b: w + lmHead, ldb: c, transB: false, c: cache.dLn, ldc: c, accumulate: false)
        GEMM.multiply(m: v, n: c, k: n, a: cache.logits, lda: v, transA: true,
                      b: cache.lnf, ldb: c, transB: false, c: g + lmHead, ldc: c, accumulate: true)
        cache.dResid.update(repeating: 0, count: n * c)
        finalNorm.backward(w: w, g: g, dInp: cache.dResid, dOut: cache.dLn, inp: cache.residFinal,
                           mean: cache.lnfMean, rstd: cache.lnfRstd, n: n, c: c)
    }

    /// The blocks' half of backward: from `cache.dResid` = dL/d(residual after the last block) down
    /// through every block and the embeddings, accumulating parameter gradients.
    public func backwardBlocks(cache: ActivationCache) {
        backwardBlocks(cache: cache, addingToLastBlockInput: nil)
    }

    /// `backwardBlocks(cache:)` with `extra` (N, C), if given, added to dL/d(residual entering the
    /// last block) once the last block's backward has written it: the gradient that reaches that
    /// residual stream through the extra prediction heads.
    /// `observe`, if given, sees dL/dh_l (N, C) for every residual stream, l = L (after the last
    /// block) down to 0, as backward reaches it.
    func backwardBlocks(cache: ActivationCache, addingToLastBlockInput extra: UnsafePointer<Float>?,
                        observing observe: ((Int, UnsafePointer<Float>) -> Void)? = nil) {
        let b = cache.batch, t = cache.seqLen, c = config.dModel
        let w = params.weights, g = params.grads
        // The forward pass decides: a local-myopic forward is differentiated as one.
        let past = cache.referencePast.flatMap { $0.isCurrent ? $0 : nil }
        observe?(config.nLayers, cache.dResid)
        gradientsComplete?(blockStarts[config.nLayers])
        for l in stride(from: config.nLayers - 1, through: 0, by: -1) {
            Block.backward(cache.layers[l], scratch: cache, w: w, g: g, p: blocks[l], shape: shapes[l], b: b, t: t,
                           inputShare: flow.offDiagonalInputShare, probs: cache.keptPattern(layer: l),
                           past: past?.qkv[l])
            if l == config.nLayers - 1, let extra { Elementwise.add(into: cache.dResid, extra, count: b * t * c) }
            observe?(l, cache.dResid)
            gradientsComplete?(blockStarts[l])
        }
        backwardEmbeddings(cache: cache)
        gradientsComplete?(0)
    }

    /// From cache.dResid = ∂L/∂(what enters block 0): the token embedding's gradient (not the
    /// padding row's lookups; GPT-2's wpe too), or the continuous input projection's.
    func backwardEmbeddings(cache: ActivationCache) {
        let b = cache.batch, t = cache.seqLen, c = config.dModel
        let w = params.weights, g = params.grads
        switch heads {
        case .tokens(let embedding, _):
            Embedding.backward(dWte: g + embedding, dWpe: wpe.map { g + $0 }, dOut: cache.dResid, tokens: cache.tokens,
                               b: b, t: t, c: c, scale: embeddingScale, paddingRow: config.paddingRow)
        case .continuous(let inWeight, let inBias, _, _):
            FeatureEmbedding.backward(dWeight: g + inWeight, dBias: g + inBias, dWpe: g + wpe!, dOut: cache.dResid,
                                      features: cache.features, weight: w + inWeight, b: b, t: t, c: c,
                                      fi: config.inputFeatures ?? 0)
        }
    }
}

// MARK: - Continuous heads

extension Transformer {
    /// Forward over features (B, T, FI) for a model with continuous heads. With targets (B, T, O),
    /// computes ℓ_t (the loss averaged over position t's O outputs) for every position and returns
    /// the mean over positions (= the mean over all B·T·O elements, as `F.huber_loss`); without,
    /// returns nil and leaves only the predictions.
    @discardableResult
    public func forward(features: UnsafePointer<Float>, targets: UnsafePointer<Float>?,
                        batch b: Int, seqLen t: Int, cache: ActivationCache) -> Float? {
        guard case .continuous(let inWeight, let inBias, _, _) = heads else {
            preconditionFailure("a language model reads tokens: forward(tokens:...)")
        }
        precondition(b <= cache.capacityB && t <= cache.capacityT && t <= config.maxPositions)
        let c = config.dModel, n = b * t, fi = config.inputFeatures ?? 0, o = config.outputs ?? 0
        let w = params.weights
        cache.batch = b
        cache.seqLen = t
        cache.features.update(from: features, count: n * fi)
        cache.hasTargets = targets != nil
        if let targets { cache.regressionTargets.update(from: targets, count: n * o) }

        FeatureEmbedding.forward(out: cache.layers.first?.residIn ?? cache.residFinal, features: features,
                                 weight: w + inWeight, bias: w + inBias, wpe: w + wpe!, b: b, t: t, c: c, fi: fi)
        forwardBlocks(cache: cache)
        return forwardRegressionHead(cache: cache)
    }

    /// Convenience forward over arrays of B·T·FI features and B·T·O targets.
    @discardableResult
    public func forward(features: [Float], targets: [Float]?, batch: Int, seqLen: Int,
                        cache: ActivationCache) -> Float? {
        precondition(features.count == batch * seqLen * (config.inputFeatures ?? 0))
        precondition(targets.map { $0.count == batch * seqLen * (config.outputs ?? 0) } ?? true)
        return features.withUnsafeBufferPointer { x in
            if let targets {
                return targets.withUnsafeBufferPointer { y in
                    forward(features: x.baseAddress!, targets: y.baseAddress!, batch: batch, seqLen: seqLen, cache: cache)
                }
            }
            return forward(features: x.baseAddress!, targets: nil, batch: batch, seqLen: seqLen, cache: cache)
        }
    }

    /// From `cache.residFinal` to the predictions (N, O) and, when the cache holds targets, the
    /// per-position losses; returns their mean. Row-wise: row t reads only h_{L,t}.
    func forwardRegressionHead(cache: ActivationCache) -> Float? {
        guard case .continuous(_, _, let outWeight, let outBias) = heads else { preconditionFailure() }
        let c = config.dModel, n = cache.batch * cache.seqLen, o = config.outputs ?? 0
        let w = params.weights
        finalNorm.forward(w: w, out: cache.lnf, mean: cache.lnfMean, rstd: cache.lnfRstd, inp: cache.residFinal,
                          n: n, c: c, eps: eps)
        // predictions (N, O) = lnf (N, C) · output_proj.weight (C, O) + output_proj.bias (O)
        Linear.forward(out: cache.predictions, inp: cache.lnf, weight: w + outWeight, bias: w + outBias,
                       n: n, inC: c, outC: o)
        guard cache.hasTargets else { return nil }
        let mean = config.regressionLoss.forward(rowLoss: cache.rowLoss, predictions: cache.predictions,
                                                 targets: cache.regressionTargets, rows: n, outputs: o)
        cache.countedTargets = n
        return Float(mean)
    }

    /// `backwardHead` for continuous heads: loss → dPredictions → output_proj → ln_f → cache.dResid.
    /// The predictions are left as they were.
    func backwardRegressionHead(cache: ActivationCache, lossScale: Float) {
        guard case .continuous(_, _, let outWeight, let outBias) = heads else { preconditionFailure() }
        let c = config.dModel, n = cache.batch * cache.seqLen, o = config.outputs ?? 0
        let w = params.weights, g = params.grads
        config.regressionLoss.backward(dPredictions: cache.dPredictions, predictions: cache.predictions,
                                       targets: cache.regressionTargets, rows: n, outputs: o,
                                       scale: lossScale / Float(max(1, cache.lossDenominator ?? cache.countedTargets)))
        // dlnf (N, C) = dPred · Woutᵀ ; dWout (C, O) += lnfᵀ · dPred ; dbout += Σ_rows dPred
        Linear.backward(dInp: cache.dLn, dWeight: g + outWeight, dBias: g + outBias, dOut: cache.dPredictions,
                        inp: cache.lnf, weight: w + outWeight, n: n, inC: c, outC: o)
        cache.dResid.update(repeating: 0, count: n * c)
        finalNorm.backward(w: w, g: g, dInp: cache.dResid, dOut: cache.dLn, inp: cache.residFinal,
                           mean: cache.lnfMean, rstd: cache.lnfRstd, n: n, c: c)
    }
}

/// The continuous input head: a projection of each position's features plus its learned position
/// embedding, in place of the token embedding.
enum FeatureEmbedding {
    /// out (B, T, C) = features (B, T, FI) · weight (FI, C) + bias (C) + wpe[t].
    static func forward(out: UnsafeMutablePointer<Float>, features: UnsafePointer<Float>,
                        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, wpe: UnsafePointer<Float>,
                        b: Int, t: Int, c: Int, fi: Int) {
        Linear.forward(out: out, inp: features, weight: weight, bias: bias, n: b * t, inC: fi, outC: c)
        Elementwise.forEachRowChunk(b * t, (out, wpe, t, c)) { args, r0, r1 in
            let (out, wpe, t, c) = args
            for r in r0..<r1 {
                let o = out + r * c, p = wpe + (r % t) * c
                for j in 0..<c { o[j] += p[j] }
            }
        }
    }

    /// dWeight (FI, C) += featuresᵀ · dOut, dBias += Σ_rows dOut, dWpe[t] += dOut. The features are
    /// data: no gradient flows to them. dWpe is summed serially, in a fixed order, as in `Embedding`.
    static func backward(dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
                         dWpe: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                         features: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                         b: Int, t: Int, c: Int, fi: Int) {
        Linear.backward(dInp: nil, dWeight: dWeight, dBias: dBias, dOut: dOut, inp: features, weight: weight,
                        n: b * t, inC: fi, outC: c)
        for r in 0..<(b * t) {
            let d = dOut + r * c, p = dWpe + (r % t) * c
            for j in 0..<c { p[j] += d[j] }
        }
    }
}
