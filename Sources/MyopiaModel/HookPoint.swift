// Dimensions: B batch, T time, C d_model, NH query heads, NKV key/value heads (GPT-2: NKV = NH),
// HS head size, F MLP width, L layers.

import MyopiaSupport

/// A named activation of the forward pass, with TransformerLens's name (docs/DESIGN.md §3), so that what a
/// researcher knows about `blocks.3.attn.hook_pattern` carries over. Shapes are TransformerLens's:
///
///     hook_embed                          [B, T, C]       wte[token] (continuous heads: features · W_in + b_in)
///     hook_pos_embed                      [B, T, C]       GPT-2 only: wpe[t]
///     blocks.{l}.hook_resid_pre           [B, T, C]       the residual stream entering block l
///     blocks.{l}.ln1.hook_normalized      [B, T, C]       ln_1 / input_layernorm output (weight and bias applied)
///     blocks.{l}.attn.hook_q              [B, T, NH, HS]  queries (rotary: before RoPE; q/k-norm families: before the norm)
///     blocks.{l}.attn.hook_k              [B, T, NKV, HS] keys, one per key/value head (as hook_q)
///     blocks.{l}.attn.hook_v              [B, T, NKV, HS] values
///     blocks.{l}.attn.q_norm.hook_normalized [B, T, NH, HS]  q/k-norm families (Qwen3, OLMo 2): q after its norm, before RoPE
///     blocks.{l}.attn.k_norm.hook_normalized [B, T, NKV, HS] the same for k
///     blocks.{l}.attn.hook_rot_q          [B, T, NH, HS]  rotary families: queries after RoPE (and the q norm)
///     blocks.{l}.attn.hook_rot_k          [B, T, NKV, HS] rotary families: keys after RoPE (and the k norm)
///     blocks.{l}.attn.hook_attn_scores    [B, NH, T, T]   q·k/√HS, −inf where attention may not look
///     blocks.{l}.attn.hook_pattern        [B, NH, T, T]   attention probabilities a_ts (0 where masked)
///     blocks.{l}.attn.hook_z              [B, T, NH, HS]  Σ_s a_ts v_s, before the output projection
///     blocks.{l}.ln1_post.hook_in         [B, T, C]       post-norm families (Gemma 2, OLMo 2): z · W_O, what the post-attention norm reads
///     blocks.{l}.hook_attn_out            [B, T, C]       z · W_O (+ b_O); post-norm families: after the post-attention norm
///     blocks.{l}.hook_resid_mid           [B, T, C]       resid_pre + attn_out
///     blocks.{l}.ln2.hook_normalized      [B, T, C]       ln_2 / post_attention_layernorm output
///     blocks.{l}.mlp.hook_pre             [B, T, F]       GPT-2: c_fc output (before GELU); Llama: gate_proj output
///     blocks.{l}.mlp.hook_pre_linear      [B, T, F]       Llama only: up_proj output
///     blocks.{l}.mlp.hook_post            [B, T, F]       GELU(pre); Llama: silu(pre) ⊙ pre_linear
///     blocks.{l}.ln2_post.hook_in         [B, T, C]       post-norm families: post · W_out, what the post-MLP norm reads
///     blocks.{l}.hook_mlp_out             [B, T, C]       post · W_out (+ b_out); post-norm families: after the post-MLP norm
///     blocks.{l}.hook_resid_post          [B, T, C]       resid_mid + mlp_out (= blocks.{l+1}.hook_resid_pre)
///     ln_final.hook_normalized            [B, T, C]       ln_f / model.norm output, what the head reads
///
/// A model with N > 1 prediction heads (docs/DESIGN.md §3) also has, for each extra head j = 2…N, its
/// block's activations under `mtp.{j}.` with the block names above (`mtp.{j}.hook_resid_pre` is the
/// stream it reads, blocks.{L−1}.hook_resid_pre; `mtp.{j}.hook_resid_post` is its output), and
/// `mtp.{j}.ln_final.hook_normalized`, the shared final norm of that output. They are read after
/// `Transformer.forwardPredictionHeads` (or through `runWithCache`, which runs the extra blocks).
///
/// `NAME.grad` names ∂L/∂NAME, the same shape (`ActivationName`); trunk names only.
public struct HookPoint: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, CaseIterable, Sendable {
        case embed = "hook_embed"
        case posEmbed = "hook_pos_embed"
        case residPre = "hook_resid_pre"
        case ln1 = "ln1.hook_normalized"
        case q = "attn.hook_q"
        case k = "attn.hook_k"
        case v = "attn.hook_v"
        case qNorm = "attn.q_norm.hook_normalized"
        case kNorm = "attn.k_norm.hook_normalized"
        case rotQ = "attn.hook_rot_q"
        case rotK = "attn.hook_rot_k"
        case attnScores = "attn.hook_attn_scores"
        case pattern = "attn.hook_pattern"
        case z = "attn.hook_z"
        case attnPostIn = "ln1_post.hook_in"
        case attnOut = "hook_attn_out"
        case residMid = "hook_resid_mid"
        case ln2 = "ln2.hook_normalized"
        case mlpPre = "mlp.hook_pre"
        case mlpPreLinear = "mlp.hook_pre_linear"
        case mlpPost = "mlp.hook_post"
        case mlpPostIn = "ln2_post.hook_in"
        case mlpOut = "hook_mlp_out"
        case residPost = "hook_resid_post"
        case lnFinal = "ln_final.hook_normalized"

        /// Whether the name sits under `blocks.{l}.`.
        public var isPerBlock: Bool { !(self == .embed || self == .posEmbed || self == .lnFinal) }
    }

    public let kind: Kind
    /// The block of a per-block hook; nil for hook_embed, hook_pos_embed and ln_final, and for the
    /// hooks of an extra prediction head.
    public let layer: Int?
    /// The extra prediction head j (2…N) of an `mtp.{j}.` hook; nil for the trunk's hooks.
    public let predictionHead: Int?

    /// A model-level hook (hook_embed, hook_pos_embed, ln_final.hook_normalized).
    public init(_ kind: Kind) {
        precondition(!kind.isPerBlock, "\(kind.rawValue) needs a block: HookPoint(\(kind), layer:)")
        self.kind = kind
        layer = nil
        predictionHead = nil
    }

    /// A hook of block `layer`.
    public init(_ kind: Kind, layer: Int) {
        precondition(kind.isPerBlock, "\(kind.rawValue) is not inside a block")
        self.kind = kind
        self.layer = layer
        predictionHead = nil
    }

    /// A hook of extra prediction head j's block (a per-block kind) or of the final norm of its
    /// output (`lnFinal`): `mtp.{j}.NAME`.
    public init(_ kind: Kind, predictionHead j: Int) {
        precondition(kind.isPerBlock || kind == .lnFinal, "\(kind.rawValue) is not part of a prediction head")
        self.kind = kind
        layer = nil
        predictionHead = j
    }

    public var description: String {
        if let predictionHead { return "mtp.\(predictionHead).\(kind.rawValue)" }
        return layer.map { "blocks.\($0).\(kind.rawValue)" } ?? kind.rawValue
    }

    /// Parses a TransformerLens name and checks that `config`'s model has it.
    public init(parsing text: String, config: ModelConfig) throws {
        func reject(_ expected: String) -> InputError {
            InputError.invalidValue(file: "activation names", field: text, expected: expected, found: "no such activation")
        }
        let parts = text.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        if parts.count == 3, parts[0] == "blocks" {
            guard let l = Int(parts[1]), l >= 0, l < config.nLayers else {
                throw reject("a block 0…\(config.nLayers - 1)")
            }
            guard let kind = Kind(rawValue: String(parts[2])), kind.isPerBlock else {
                throw reject("blocks.\(parts[1]).NAME with NAME one of \(Kind.allCases.filter(\.isPerBlock).map(\.rawValue).joined(separator: ", "))")
            }
            self.init(kind, layer: l)
        } else if parts.count == 3, parts[0] == "mtp" {
            guard let j = Int(parts[1]), j >= 2, j <= config.predictionHeads else {
                throw reject(config.predictionHeads > 1 ? "a prediction head 2…\(config.predictionHeads)"
                             : "a model with prediction heads (myopia_prediction_heads > 1)")
            }
            guard let kind = Kind(rawValue: String(parts[2])), kind.isPerBlock || kind == .lnFinal else {
                throw reject("mtp.\(parts[1]).NAME with NAME one of \(Kind.allCases.filter { $0.isPerBlock || $0 == .lnFinal }.map(\.rawValue).joined(separator: ", "))")
            }
            self.init(kind, predictionHead: j)
        } else {
            guard let kind = Kind(rawValue: text), !kind.isPerBlock else {
                throw reject("hook_embed, hook_pos_embed, ln_final.hook_normalized or blocks.{l}.NAME (see README, “Activation names”)")
            }
            self.init(kind)
        }
        guard exists(in: config) else {
            let family = config.family.rawValue
            let expected: String
            switch kind {
            case .posEmbed: expected = "a model with learned positions (gpt2): \(family) has no position embedding (positions enter by RoPE: attn.hook_rot_q/k)"
            case .mlpPreLinear: expected = "a model with a gated MLP (\(family)'s MLP has no up_proj)"
            case .qNorm, .kNorm: expected = "a model with q/k norms (qwen3, olmo2): \(family) has none"
            case .attnPostIn, .mlpPostIn: expected = "a model with norms after attention and the MLP (gemma2, olmo2): \(family) has none"
            default: expected = "a rotary model (gpt2 has no RoPE: use attn.hook_q/k)"
            }
            throw reject(expected)
        }
    }

    /// Whether a model of `config` has this activation: the block exists, hook_pos_embed needs learned
    /// positions (GPT-2), hook_rot_q/k RoPE, and mlp.hook_pre_linear a gated MLP.
    public func exists(in config: ModelConfig) -> Bool {
        if let layer, !(0..<config.nLayers).contains(layer) { return false }
        if let predictionHead {
            guard config.predictionHeads > 1, (2...config.predictionHeads).contains(predictionHead),
                  kind.isPerBlock || kind == .lnFinal else { return false }
        }
        switch kind {
        case .posEmbed: return config.architecture.learnedPositions
        case .rotQ, .rotK: return !config.architecture.learnedPositions
        case .mlpPreLinear: return config.architecture.mlp.isGated
        case .qNorm, .kNorm: return config.architecture.qkNorm != .none
        case .attnPostIn: return config.architecture.postAttentionNorm
        case .mlpPostIn: return config.architecture.postMLPNorm
        default: return true
        }
    }

    /// The shape of this activation for a batch of B sequences of T positions.
    public func shape(_ config: ModelConfig, batch b: Int, seqLen t: Int) -> [Int] {
        switch kind {
        case .q, .qNorm, .rotQ, .z: return [b, t, config.nHeads, config.headSize]
        case .k, .kNorm, .v, .rotK: return [b, t, config.kvHeads, config.headSize]
        case .attnScores, .pattern: return [b, config.nHeads, t, t]
        case .mlpPre, .mlpPreLinear, .mlpPost: return [b, t, config.dMLP]
        default: return [b, t, config.dModel]
        }
    }

    /// Every hook of a model, in forward order: the trunk's, then each extra prediction head's.
    public static func all(_ config: ModelConfig) -> [HookPoint] {
        var hooks = [HookPoint(.embed)]
        if config.architecture.learnedPositions { hooks.append(HookPoint(.posEmbed)) }
        for l in 0..<config.nLayers {
            hooks += Kind.allCases.filter(\.isPerBlock).map { HookPoint($0, layer: l) }.filter { $0.exists(in: config) }
        }
        hooks.append(HookPoint(.lnFinal))
        for j in stride(from: 2, through: config.predictionHeads, by: 1) {
            hooks += Kind.allCases.filter { $0.isPerBlock || $0 == .lnFinal }.map { HookPoint($0, predictionHead: j) }
                .filter { $0.exists(in: config) }
        }
        return hooks
    }
}

/// An activation or, with `.grad`, its gradient: `blocks.0.hook_resid_pre.grad`.
public struct ActivationName: Hashable, Sendable, CustomStringConvertible {
    public let hook: HookPoint
    public let isGradient: Bool

    public init(_ hook: HookPoint, gradient: Bool = false) {
        self.hook = hook
        isGradient = gradient
    }

    public init(parsing text: String, config: ModelConfig) throws {
        let gradient = text.hasSuffix(".grad")
        self.init(try HookPoint(parsing: gradient ? String(text.dropLast(5)) : text, config: config), gradient: gradient)
    }

    public var description: String { hook.description + (isGradient ? ".grad" : "") }
}

/// One named activation: values in row-major order of `shape`.
public struct NamedTensor: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    public var values: [Float]

    public init(name: String, shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "\(name): \(values.count) values for shape \(shape)")
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// What `Transformer.runWithCache` returns: the mean loss (when there were targets) and the named
/// activations asked for, by name.
public struct ActivationRecord: Sendable {
    public var loss: Float?
    public var tensors: [String: NamedTensor]

    public subscript(name: String) -> NamedTensor? { tensors[name] }
}
