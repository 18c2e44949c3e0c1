// Dimensions: B batch, T time, C d_model, NH heads, F MLP width, V vocab, L layers, N = B·T;
// for a model with continuous heads, FI input features and O outputs per position.

/// The activations one forward pass keeps for backward, and the scratch backward works in.
/// Allocated once for a capacity (B, T) and reused every step: nothing is allocated in the step.
public final class ActivationCache {
    /// What each block keeps. Widths: W = (NH + 2·NKV)·HS for [q | k | v], A = NH·HS for z
    /// (GPT-2: 3C and C).
    /// Norms a family does not have leave their outputs aliased to their inputs (OLMo 2: ln1 is
    /// residIn, ln2 is residMid) and their statistics empty; so do the post-norms' buffers and
    /// qkRaw without those parts.
    struct Layer {
        let c: Int, f: Int
        /// A (NH·HS), the q/k segments' raw width (NH + NKV)·HS and count per row (qkRstd).
        let attentionWidth: Int, qkRawWidth: Int, qkSegments: Int
        let residIn: UnsafeMutablePointer<Float>   // (N, C)   blocks.l.hook_resid_pre
        let ln1: UnsafeMutablePointer<Float>       // (N, C)   blocks.l.ln1.hook_normalized
        let ln1Mean: UnsafeMutablePointer<Float>   // (N)
        let ln1Rstd: UnsafeMutablePointer<Float>   // (N)
        let qkv: UnsafeMutablePointer<Float>       // (N, W)   hook_q | hook_k | hook_v (Llama: after RoPE)
        let attnStats: UnsafeMutablePointer<Float> // (B, NH, T, 2) each attention row's softmax max and 1/Σ
        let z: UnsafeMutablePointer<Float>         // (N, A)   blocks.l.attn.hook_z
        let residMid: UnsafeMutablePointer<Float>  // (N, C)   blocks.l.hook_resid_mid
        let ln2: UnsafeMutablePointer<Float>       // (N, C)
        let ln2Mean: UnsafeMutablePointer<Float>   // (N)
        let ln2Rstd: UnsafeMutablePointer<Float>   // (N)
        let fcPre: UnsafeMutablePointer<Float>     // (N, F)   blocks.l.mlp.hook_pre (Llama: the gate)
        let up: UnsafeMutablePointer<Float>        // (N, F)   Llama's up_proj output (GPT-2: empty)
        let act: UnsafeMutablePointer<Float>       // (N, F)   blocks.l.mlp.hook_post
        let qkRaw: UnsafeMutablePointer<Float>     // (N, (NH + NKV)·HS) q and k before their norms
        let qkRstd: UnsafeMutablePointer<Float>    // (N, segments) the q/k norms' rstd
        let attnRaw: UnsafeMutablePointer<Float>   // (N, C)   attention output before its post-norm
        let attnMean: UnsafeMutablePointer<Float>  // (N)
        let attnRstd: UnsafeMutablePointer<Float>  // (N)
        let mlpRaw: UnsafeMutablePointer<Float>    // (N, C)   MLP output before its post-norm
        let mlpMean: UnsafeMutablePointer<Float>   // (N)
        let mlpRstd: UnsafeMutablePointer<Float>   // (N)

        /// Buffers for n rows of one block of `config`'s model, from `arena`; `residIn` is given
        /// when it is shared (a prediction head reads the last block's input), else allocated.
        /// `attentionRows` (B·NH·T) sizes the softmax statistics.
        static func allocate(_ config: ModelConfig, rows n: Int, attentionRows: Int, arena: BufferArena,
                             residIn shared: UnsafeMutablePointer<Float>? = nil) -> Layer {
            func floats(_ count: Int) -> UnsafeMutablePointer<Float> { arena.floats(count) }
            let arch = config.architecture, c = config.dModel, f = config.dMLP
            let qkSegments = arch.qkNorm == .none ? 0 : arch.qkNorm == .perHead ? config.nHeads + config.kvHeads : 2
            let qkRawWidth = arch.qkNorm == .none ? 0 : (config.nHeads + config.kvHeads) * config.headSize
            let residIn = shared ?? floats(n * c)
            let ln1 = arch.preAttentionNorm ? floats(n * c) : residIn
            let residMid = floats(n * c)
            let ln2 = arch.preMLPNorm ? floats(n * c) : residMid
            let postAttention = arch.postAttentionNorm ? n : 0, postMLP = arch.postMLPNorm ? n : 0
            return Layer(c: c, f: f, attentionWidth: config.attentionWidth, qkRawWidth: qkRawWidth, qkSegments: qkSegments,
                         residIn: residIn, ln1: ln1, ln1Mean: floats(n), ln1Rstd: floats(n),
                         qkv: floats(n * config.qkvWidth), attnStats: floats(attentionRows * 2),
                         z: floats(n * config.attentionWidth), residMid: residMid, ln2: ln2, ln2Mean: floats(n),
                         ln2Rstd: floats(n), fcPre: floats(n * f), up: floats(arch.mlp.isGated ? n * f : 0),
                         act: floats(n * f), qkRaw: floats(n * qkRawWidth), qkRstd: floats(n * qkSegments),
                         attnRaw: floats(postAttention * c), attnMean: floats(postAttention), attnRstd: floats(postAttention),
                         mlpRaw: floats(postMLP * c), mlpMean: floats(postMLP), mlpRstd: floats(postMLP))
        }

        /// These buffers with another residual input and [q | k | v] (a norm₁ that is absent keeps
        /// aliasing the input).
        func with(residIn: UnsafeMutablePointer<Float>, qkv: UnsafeMutablePointer<Float>) -> Layer {
            Layer(c: c, f: f, attentionWidth: attentionWidth, qkRawWidth: qkRawWidth, qkSegments: qkSegments,
                  residIn: residIn, ln1: ln1 == self.residIn ? residIn : ln1, ln1Mean: ln1Mean, ln1Rstd: ln1Rstd,
                  qkv: qkv, attnStats: attnStats, z: z, residMid: residMid, ln2: ln2, ln2Mean: ln2Mean, ln2Rstd: ln2Rstd,
                  fcPre: fcPre, up: up, act: act, qkRaw: qkRaw, qkRstd: qkRstd, attnRaw: attnRaw, attnMean: attnMean,
                  attnRstd: attnRstd, mlpRaw: mlpRaw, mlpMean: mlpMean, mlpRstd: mlpRstd)
        }
    }

    /// What `Transformer.forwardPredictionHeads` keeps of extra prediction head j (2…N): its block's
    /// activations (whose residIn is the trunk's last block's: the stream both read), its output,
    /// the final norm of it, and its loss per position. Its logits are not kept (backward rebuilds
    /// them in `headLogits`).
    struct PredictionHead {
        let layer: Layer                            //          mtp.j.* (residIn: blocks.{L−1}.hook_resid_pre)
        let residOut: UnsafeMutablePointer<Float>   // (N, C)   mtp.j.hook_resid_post
        let lnf: UnsafeMutablePointer<Float>        // (N, C)   mtp.j.ln_final.hook_normalized
        let lnfMean: UnsafeMutablePointer<Float>    // (N)
        let lnfRstd: UnsafeMutablePointer<Float>    // (N)
        let targets: UnsafeMutablePointer<Int32>    // (N)      x_{t+j}, or −1 past the window
        let rowLoss: UnsafeMutablePointer<Float>    // (N)
        let logZ: UnsafeMutablePointer<Float>       // (N)
    }

    public let config: ModelConfig
    public let capacityB: Int
    public let capacityT: Int
    /// The (B, T) of the last forward pass.
    public internal(set) var batch = 0
    public internal(set) var seqLen = 0

    let tokens: UnsafeMutablePointer<Int32>        // (N)
    let targets: UnsafeMutablePointer<Int32>       // (N)
    var hasTargets = false
    /// Positions of the last forward whose target counts (not the ignore index).
    var countedTargets = 0
    /// What backward divides the summed loss by, when not the forward's own `countedTargets`: the
    /// counted targets of the whole global batch, when this forward is one shard of it (the
    /// data-parallel step), so that the shards' gradients add up to the batch's mean loss.
    public var lossDenominator: Int?
    /// The same for each extra prediction head (index j − 2): that head's counted targets in the
    /// whole global batch, when not this forward's own (`predictionCountedTargets`).
    public var predictionLossDenominators: [Int]?
    let layers: [Layer]
    let residFinal: UnsafeMutablePointer<Float>    // (N, C)   the residual after the last block
    let lnf: UnsafeMutablePointer<Float>           // (N, C)   ln_final.hook_normalized
    let lnfMean: UnsafeMutablePointer<Float>       // (N)
    let lnfRstd: UnsafeMutablePointer<Float>       // (N)
    let logits: UnsafeMutablePointer<Float>        // (N, V)   overwritten by dlogits in backward
    public let rowLoss: UnsafeMutablePointer<Float>       // (N)      ℓ_t per position
    let logZ: UnsafeMutablePointer<Float>          // (N)      log-partition of each row of logits
    let lossScratch: UnsafeMutablePointer<Float>   // (CrossEntropy.chunks, V)
    // Continuous heads only (a language model's cache holds them empty, and its logits are empty
    // for a continuous model).
    let features: UnsafeMutablePointer<Float>      // (N, FI)  the inputs, which input_proj's backward reads
    let regressionTargets: UnsafeMutablePointer<Float> // (N, O)
    let predictions: UnsafeMutablePointer<Float>   // (N, O)   output_proj(ln_f(x)); kept through backward

    // Backward scratch, shared by all layers.
    let dResid: UnsafeMutablePointer<Float>        // (N, C)
    let dLn: UnsafeMutablePointer<Float>           // (N, C)
    let dQkv: UnsafeMutablePointer<Float>          // (N, W)
    let dQkvInput: UnsafeMutablePointer<Float>     // (N, W) what myopic flows send to the q/k/v projections' input
    let dZ: UnsafeMutablePointer<Float>            // (N, A)
    let dAct: UnsafeMutablePointer<Float>          // (N, F)
    let dUp: UnsafeMutablePointer<Float>           // (N, F) gated MLPs only
    let dPost: UnsafeMutablePointer<Float>         // (N, C) a post-norm's input gradient (post-norms only)
    let dParallel: UnsafeMutablePointer<Float>     // (N, C) the MLP's input gradient (parallel residual only)
    let dPredictions: UnsafeMutablePointer<Float>  // (N, O)
    /// Whether forward keeps every layer's attention pattern (B, NH, T, T), and backward the scores'
    /// gradients, in memory. Off (the default), attention keeps only each row's softmax statistics
    /// and rebuilds what it needs strip by strip (Attention); `pattern(layer:)` rebuilds a layer's
    /// pattern on demand. The results are bitwise the same either way. Forced on where the pattern
    /// is an input of its own: the local-myopic flow and self-only (bigram) attention.
    public var keepsPattern = false
    /// The attention patterns, (B, NH, T, T) per layer, and the scores' gradients of one layer,
    /// (B, NH, T, T): allocated on first use.
    private(set) var patterns: [UnsafeMutablePointer<Float>] = []
    private(set) var scoreGradients: UnsafeMutablePointer<Float>?
    /// Per layer: `patterns[l]` holds the last forward pass's (kept by it, or rebuilt since).
    var patternIsCurrent: [Bool]
    /// Extra prediction heads j = 2…N at index j − 2 (empty unless the config has N > 1).
    let predictionHeads: [PredictionHead]
    /// Positions of each extra head whose target counts, at index j − 2.
    var predictionCountedTargets: [Int]
    /// One head's logits (N, V) at a time, then its dlogits: shared by the extra heads (N > 1 only).
    let headLogits: UnsafeMutablePointer<Float>
    /// dL/d(residual entering the last block) through the extra heads (N, C) (N > 1 only).
    let dPredictionResid: UnsafeMutablePointer<Float>
    /// The extra heads' blocks ran on the last forward pass (`predictionHeads[·].layer` and what
    /// follows it are current), and their losses too.
    var predictionBlocksAreCurrent = false
    var predictionLossesAreCurrent = false
    /// The extra heads' attention patterns (B, NH, T, T), allocated on first use, at index j − 2.
    private(set) var predictionPatterns: [UnsafeMutablePointer<Float>] = []
    var predictionPatternIsCurrent: [Bool]
    /// Local-myopic flow only: the reference model's keys and values for the last forward pass
    /// (LocalMyopic.swift), allocated on first use.
    var referencePast: ReferencePast?

    private let arena = BufferArena()

    public init(config: ModelConfig, batch: Int, seqLen: Int) {
        precondition(batch > 0 && seqLen > 0 && seqLen <= config.maxPositions)
        self.config = config
        capacityB = batch
        capacityT = seqLen
        let n = batch * seqLen, c = config.dModel, f = config.dMLP
        let width = config.qkvWidth, a = config.attentionWidth, gated = config.architecture.mlp.isGated
        let v = config.isContinuous ? 0 : config.vocabSize
        let fi = config.inputFeatures ?? 0, o = config.outputs ?? 0
        let arena = self.arena
        func floats(_ count: Int) -> UnsafeMutablePointer<Float> { arena.floats(count) }
        func ints(_ count: Int) -> UnsafeMutablePointer<Int32> { arena.ints(count) }
        tokens = ints(n)
        targets = ints(n)
        let rowsOfAttention = batch * config.nHeads * seqLen
        layers = (0..<config.nLayers).map { _ in
            Layer.allocate(config, rows: n, attentionRows: rowsOfAttention, arena: arena)
        }
        patternIsCurrent = Array(repeating: false, count: config.nLayers)
        let extraHeads = max(0, config.predictionHeads - 1)
        let lastInput = layers.last?.residIn
        predictionHeads = (0..<extraHeads).map { _ in
            guard let lastInput else { preconditionFailure("prediction heads read the input of the last block: L ≥ 1") }
            let layer = Layer.allocate(config, rows: n, attentionRows: rowsOfAttention, arena: arena, residIn: lastInput)
            return PredictionHead(layer: layer, residOut: floats(n * c), lnf: floats(n * c), lnfMean: floats(n),
                                  lnfRstd: floats(n), targets: ints(n), rowLoss: floats(n), logZ: floats(n))
        }
        predictionCountedTargets = Array(repeating: 0, count: extraHeads)
        predictionPatternIsCurrent = Array(repeating: false, count: extraHeads)
        headLogits = floats(extraHeads > 0 ? n * v : 0)
        dPredictionResid = floats(extraHeads > 0 ? n * c : 0)
        residFinal = floats(n * c)
        lnf = floats(n * c)
        lnfMean = floats(n)
        lnfRstd = floats(n)
        logits = floats(n * v)
        rowLoss = floats(n)
        logZ = floats(n)
        lossScratch = floats(CrossEntropy.chunks * v)
        features = floats(n * fi)
        regressionTargets = floats(n * o)
        predictions = floats(n * o)
        dResid = floats(n * c)
        dLn = floats(n * c)
        dQkv = floats(n * width)
        dQkvInput = floats(n * width)
        dZ = floats(n * a)
        dAct = floats(n * f)
        dUp = floats(gated ? n * f : 0)
        let arch = config.architecture
        dPost = floats(arch.postAttentionNorm || arch.postMLPNorm ? n * c : 0)
        dParallel = floats(arch.parallelResidual ? n * c : 0)
        dPredictions = floats(n * o)
    }

    /// Allocates `patterns` and `scoreGradients` if they are not yet (the first step that keeps them).
    func allocatePatterns() {
        guard patterns.isEmpty else { return }
        let count = capacityB * config.nHeads * capacityT * capacityT
        patterns = (0..<config.nLayers).map { _ in arena.floats(count) }
        scoreGradients = arena.floats(count)
    }

    /// Allocates `predictionPatterns` (and what `allocatePatterns` allocates) if they are not yet.
    func allocatePredictionPatterns() {
        allocatePatterns()
        guard predictionPatterns.isEmpty else { return }
        let count = capacityB * config.nHeads * capacityT * capacityT
        predictionPatterns = predictionHeads.map { _ in arena.floats(count) }
    }

    /// Extra head i's (j = i + 2) attention pattern of the last forward pass if it kept it.
    func keptPredictionPattern(head i: Int) -> UnsafeMutablePointer<Float>? {
        predictionPatternIsCurrent[i] ? predictionPatterns[i] : nil
    }

    /// Layer l's attention pattern of the last forward pass if it is in memory (kept, or rebuilt since).
    func keptPattern(layer l: Int) -> UnsafeMutablePointer<Float>? {
        patternIsCurrent[l] ? patterns[l] : nil
    }

    /// Layer l's attention pattern (B, NH, T, T) of the last forward pass, rebuilt from the kept
    /// statistics (bitwise what a forward keeping it writes) unless the forward kept it. Valid
    /// until the next forward pass.
    func pattern(layer l: Int, shape: AttentionShape) -> UnsafeMutablePointer<Float> {
        if !patternIsCurrent[l] {
            allocatePatterns()
            Attention.rebuildPattern(patterns[l], statistics: layers[l].attnStats, qkv: layers[l].qkv, b: batch,
                                     t: seqLen, shape: shape)
            patternIsCurrent[l] = true
        }
        return patterns[l]
    }

    /// Logits (B, T, V) of the last forward pass (valid until backward overwrites them); empty for a
    /// model with continuous heads, which has none.
    public func logitsArray() -> [Float] {
        Array(UnsafeBufferPointer(start: logits, count: config.isContinuous ? 0 : batch * seqLen * config.vocabSize))
    }

    /// `logitsArray()` without the copy: the logits (B·T, V) of the last forward pass, valid until
    /// backward overwrites them or the next forward pass.
    public var logitRows: UnsafePointer<Float> { UnsafePointer(logits) }

    /// Predictions (B, T, O) of the last forward pass of a model with continuous heads.
    public func predictionsArray() -> [Float] {
        Array(UnsafeBufferPointer(start: predictions, count: batch * seqLen * (config.outputs ?? 0)))
    }

    /// ℓ_t for every position of the last forward pass with targets, (B, T).
    public func positionLosses() -> [Float] {
        Array(UnsafeBufferPointer(start: rowLoss, count: batch * seqLen))
    }

    /// The residual stream entering block l (l = 0..L−1), or after the last block (l = L), (B, T, C).
    public func residual(layer l: Int) -> [Float] {
        let p = l == config.nLayers ? residFinal : layers[l].residIn
        return Array(UnsafeBufferPointer(start: p, count: batch * seqLen * config.dModel))
    }

    /// `residual(layer:)` without the copy: the residual stream h_l (B, T, C) of the last forward
    /// pass, valid inside `body` until the next forward pass.
    public func withResidual<R>(layer l: Int, _ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        precondition((0...config.nLayers).contains(l), "residual \(l) of a \(config.nLayers)-layer model")
        let p = l == config.nLayers ? residFinal : layers[l].residIn
        return try body(UnsafeBufferPointer(start: p, count: batch * seqLen * config.dModel))
    }
}
