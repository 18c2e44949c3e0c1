import Foundation
import MyopiaSupport

/// The shape of a decoder-only transformer, read from and written to a Hugging Face `config.json`.
///
/// Swift names on the left, checkpoint keys in `CodingKeys`. Unknown keys in a Hugging Face file are
/// ignored; Myopia's own additions (`myopia_tokenizer`, ...) are ignored by `transformers`.
///
/// A model with continuous heads (`inputFeatures` and `outputs` set, docs/DESIGN.md §3) reads F features per
/// position through `input_proj` instead of token embeddings and predicts O numbers per position
/// through `output_proj` instead of tied logits. Its checkpoint is still config.json +
/// model.safetensors, but `transformers` cannot load it (it has no such heads); Myopia can.
///
/// Families (docs/DESIGN.md §3), told apart by `model_type`, each read and written under its own
/// Hugging Face keys; what each computes is its `Architecture` (Architecture.swift):
///   gpt2      LayerNorm, learned positions (wpe), fused c_attn, GELU MLP, head tied to wte
///   llama     RMSNorm, rotary positions, q/k/v/o projections with grouped-query attention (NKV key/value
///             heads shared by NH/NKV query heads each), SwiGLU MLP, tied or separate head
///   gpt_neox  Pythia: LayerNorm, parallel residual, partial rotary, fused per-head q/k/v, erf GELU
///   qwen2     Llama with q/k/v biases
///   qwen3     Llama with per-head RMSNorm on q and k
///   mistral   Llama with sliding-window attention
///   gemma2    (1+w) RMSNorm before and after attention and MLP, GeGLU, √C embedding scale, query
///             scale from query_pre_attn_scalar, attention and final-logit soft-capping, sliding
///             window on alternate layers
///   olmo2     RMSNorm after attention and the MLP (none before), q/k RMSNorm over the projection
public struct ModelConfig: Codable, Equatable, Sendable {
    public enum Family: String, Codable, Sendable, CaseIterable {
        case gpt2, llama, gptNeoX = "gpt_neox", qwen2, qwen3, mistral, gemma2, olmo2
        /// Families read under the Llama-style keys (hidden_size, num_hidden_layers, ...).
        var usesLlamaKeys: Bool { self != .gpt2 && self != .gptNeoX }
    }

    public var family: Family = .gpt2
    public var vocabSize: Int           // V
    public var maxPositions: Int        // rows of wpe: the longest context
    public var dModel: Int              // C
    public var nLayers: Int             // L
    public var nHeads: Int              // NH
    public var dMLP: Int                // hidden width of the MLP (GPT-2: 4C)
    /// The norm's epsilon (`layer_norm_epsilon`; Llama: `rms_norm_eps`).
    public var layerNormEps: Double = 1e-5
    public var activation: String = "gelu_new"
    public var tiedEmbeddings: Bool = true
    public var bosTokenID: Int? = nil
    public var eosTokenID: Int? = nil
    /// `pad_token_id` of a family whose Hugging Face embedding is `nn.Embedding(padding_idx:)`
    /// (`Architecture.embeddingHasPaddingRow`): that row takes no gradient from its lookups (a tied
    /// head's gradient still reaches it). Nil: every row learns. GPT-2 and GPT-NeoX have no such row.
    public var padTokenID: Int? = nil
    /// Which tokenizer produced the training ids ("byte" for the 256-symbol byte tokenizer).
    public var tokenizer: String? = "byte"
    /// Which positions attention reads (`self` for the transformer-bigram baseline).
    public var attention: AttentionPattern = .causal
    /// Continuous input: features per position (F), projected by `input_proj` instead of `wte`.
    public var inputFeatures: Int? = nil
    /// Continuous output: numbers predicted per position (O), by `output_proj` instead of the tied head.
    public var outputs: Int? = nil
    /// The loss of the continuous head (Huber unless set).
    public var loss: RegressionLoss? = nil
    /// How many tokens ahead the model predicts (N ≥ 1, docs/DESIGN.md §3): the trunk predicts t+1;
    /// heads j = 2…N each add a block (`mtp.{j}.*`) that reads the residual stream entering the last
    /// block and predicts t+j through the shared final norm and unembedding. Token models only.
    public var predictionHeads: Int = 1

    // Llama family only.
    /// Key/value heads (NKV); NH must be a multiple. GPT-2: NH.
    public var nKVHeads: Int? = nil
    /// Head size (HS) when it is not C / NH (Llama's `head_dim`).
    public var headDim: Int? = nil
    /// RoPE base θ: position p rotates pair i by p·θ^(−2i/HS).
    public var ropeTheta: Double = 10_000
    /// RoPE pairs: false (Hugging Face): dimension i with i + HS/2 (rotate_half); true: 2i with 2i+1
    /// (GPT-J, and llama.cpp on its own row order).
    public var ropeInterleaved: Bool = false
    /// The share of each head's dimensions RoPE rotates, from the first (GPT-NeoX `rotary_pct`):
    /// RD = ⌊HS · fraction⌋ dimensions, pairs (i, i + RD/2), angles θ^(−2i/RD).
    public var rotaryFraction: Double = 1
    /// GPT-NeoX: x + attn(ln₁(x)) + mlp(ln₂(x)) (`use_parallel_residual`).
    public var parallelResidual: Bool = true
    /// GPT-NeoX: biases on query_key_value and dense (`attention_bias`).
    public var attentionBias: Bool = true
    /// Sliding-window attention: a query at t sees keys t − W + 1 … t (Mistral, Gemma 2).
    public var slidingWindow: Int? = nil
    /// Which layers slide (`layer_types`); nil: every layer when `slidingWindow` is set.
    public var slidingLayers: [Bool]? = nil
    /// Attention scores become cap·tanh(score/cap) before the softmax (Gemma 2).
    public var attentionSoftcap: Double? = nil
    /// Logits become cap·tanh(logit/cap) (Gemma 2).
    public var finalSoftcap: Double? = nil
    /// Scores are scaled by this^(−½) instead of HS^(−½) (Gemma 2 `query_pre_attn_scalar`).
    public var queryPreAttentionScalar: Double? = nil

    public var headSize: Int { headDim ?? dModel / nHeads }   // HS
    public var kvHeads: Int { nKVHeads ?? nHeads }             // NKV
    /// Width of one position's [q | k | v]: (NH + 2·NKV)·HS (GPT-2: 3C).
    public var qkvWidth: Int { (nHeads + 2 * kvHeads) * headSize }
    /// Width of the attention output before o_proj / c_proj: NH·HS (GPT-2: C).
    public var attentionWidth: Int { nHeads * headSize }
    /// Dimensions of each head RoPE rotates (RD): HS unless `rotaryFraction` < 1.
    public var rotaryDims: Int { Int(Double(headSize) * rotaryFraction) }
    /// What multiplies q·k before the soft-cap and softmax.
    public var queryScale: Float {
        queryPreAttentionScalar.map { Float(1 / $0.squareRoot()) } ?? 1 / Float(headSize).squareRoot()
    }
    /// Layer l's attention window (nil: all earlier positions).
    public func window(layer l: Int) -> Int? {
        guard let slidingWindow else { return nil }
        return slidingLayers.map { l < $0.count && $0[l] ? slidingWindow : nil } ?? slidingWindow
    }

    /// The family's structure with this config's options applied.
    public var architecture: Architecture {
        var a = Architecture.base(family)
        if family == .gptNeoX {
            a.parallelResidual = parallelResidual
            a.qkvBias = attentionBias
            a.outputBias = attentionBias
        }
        return a
    }
    /// The embedding row that takes no lookup gradient: `pad_token_id` (negative: from the end, as
    /// nn.Embedding reads it) where the family's embedding has a padding row; else nil.
    public var paddingRow: Int? {
        guard architecture.embeddingHasPaddingRow, let padTokenID, padTokenID >= -vocabSize, padTokenID < vocabSize else { return nil }
        return padTokenID < 0 ? vocabSize + padTokenID : padTokenID
    }
    /// Whether positions enter by RoPE (every family but GPT-2).
    public var isRotary: Bool { !architecture.learnedPositions }

    public init(vocabSize: Int, maxPositions: Int, dModel: Int, nLayers: Int, nHeads: Int,
                dMLP: Int? = nil, tokenizer: String? = "byte") {
        self.vocabSize = vocabSize
        self.maxPositions = maxPositions
        self.dModel = dModel
        self.nLayers = nLayers
        self.nHeads = nHeads
        self.dMLP = dMLP ?? 4 * dModel
        self.tokenizer = tokenizer
    }

    /// A model with continuous heads: F features in, O numbers out per position, `loss` on them.
    /// `vocab_size` has no role there; it is kept (as 1) so the file decodes like any other.
    public static func continuous(inputFeatures: Int, outputs: Int, maxPositions: Int, dModel: Int, nLayers: Int,
                                  nHeads: Int, dMLP: Int? = nil, loss: RegressionLoss = .huber) -> ModelConfig {
        var c = ModelConfig(vocabSize: 1, maxPositions: maxPositions, dModel: dModel, nLayers: nLayers, nHeads: nHeads,
                            dMLP: dMLP, tokenizer: nil)
        c.inputFeatures = inputFeatures
        c.outputs = outputs
        c.loss = loss
        c.tiedEmbeddings = false
        return c
    }

    /// True for a model with continuous heads (input_proj/output_proj), false for a language model.
    public var isContinuous: Bool { inputFeatures != nil }
    /// The loss of the continuous head.
    public var regressionLoss: RegressionLoss { loss ?? .huber }

    enum CodingKeys: String, CodingKey {
        case family = "model_type"
        case vocabSize = "vocab_size"
        case maxPositions = "n_positions"
        case dModel = "n_embd"
        case nLayers = "n_layer"
        case nHeads = "n_head"
        case dMLP = "n_inner"
        case layerNormEps = "layer_norm_epsilon"
        case activation = "activation_function"
        case tiedEmbeddings = "tie_word_embeddings"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case padTokenID = "pad_token_id"
        case tokenizer = "myopia_tokenizer"
        case attention = "myopia_attention"
        case inputFeatures = "myopia_input_features"
        case outputs = "myopia_outputs"
        case loss = "myopia_loss"
        case predictionHeads = "myopia_prediction_heads"
        // Written for transformers' benefit, never read back.
        case architectures, resid_pdrop, embd_pdrop, attn_pdrop, n_ctx, torch_dtype
    }

    /// The keys of a Hugging Face `LlamaConfig`, and of the families read like it (Qwen2, Qwen3,
    /// Mistral, Gemma 2, OLMo 2), with each one's extras.
    enum LlamaKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case maxPositions = "max_position_embeddings"
        case dModel = "hidden_size"
        case nLayers = "num_hidden_layers"
        case nHeads = "num_attention_heads"
        case nKVHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case dMLP = "intermediate_size"
        case rmsNormEps = "rms_norm_eps"
        case activation = "hidden_act"
        case hiddenActivation = "hidden_activation"
        case ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case partialRotaryFactor = "partial_rotary_factor"
        case attentionBias = "attention_bias"
        case mlpBias = "mlp_bias"
        case slidingWindow = "sliding_window"
        case useSlidingWindow = "use_sliding_window"
        case maxWindowLayers = "max_window_layers"
        case layerTypes = "layer_types"
        case attentionSoftcap = "attn_logit_softcapping"
        case finalSoftcap = "final_logit_softcapping"
        case queryPreAttentionScalar = "query_pre_attn_scalar"
        case bidirectional = "use_bidirectional_attention"
        case ropeInterleaved = "myopia_rope_interleaved"
        case architectures, torch_dtype, attention_dropout, initializer_range, use_cache
    }

    /// The keys of a Hugging Face `GPTNeoXConfig`.
    enum NeoXKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case maxPositions = "max_position_embeddings"
        case dModel = "hidden_size"
        case nLayers = "num_hidden_layers"
        case nHeads = "num_attention_heads"
        case dMLP = "intermediate_size"
        case layerNormEps = "layer_norm_eps"
        case activation = "hidden_act"
        case rotaryPct = "rotary_pct"
        case rotaryBase = "rotary_emb_base"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case parallelResidual = "use_parallel_residual"
        case attentionBias = "attention_bias"
        case architectures, torch_dtype, initializer_range, use_cache, attention_dropout, hidden_dropout
    }

    /// `rope_parameters` (transformers 5) / `rope_scaling` (4.x): only plain RoPE is implemented.
    struct RopeParameters: Codable {
        var ropeTheta: Double?
        var ropeType: String?
        var type: String?
        var partialRotaryFactor: Double?
        enum CodingKeys: String, CodingKey {
            case ropeTheta = "rope_theta", ropeType = "rope_type", type, partialRotaryFactor = "partial_rotary_factor"
        }
    }

    /// The family's Hugging Face class (`architectures`).
    var huggingFaceClass: String {
        switch family {
        case .gpt2: return isContinuous ? "MyopiaContinuousGPT2" : "GPT2LMHeadModel"
        case .llama: return "LlamaForCausalLM"
        case .gptNeoX: return "GPTNeoXForCausalLM"
        case .qwen2: return "Qwen2ForCausalLM"
        case .qwen3: return "Qwen3ForCausalLM"
        case .mistral: return "MistralForCausalLM"
        case .gemma2: return "Gemma2ForCausalLM"
        case .olmo2: return "Olmo2ForCausalLM"
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let modelType = try c.decode(String.self, forKey: .family)
        guard let family = Family(rawValue: modelType) else {
            throw InputError.unsupported(file: "config.json", field: CodingKeys.family.rawValue,
                                          value: "\(modelType) (Myopia reads \(Family.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.family = family
        if family.usesLlamaKeys {
            self = try Self.decodeLlama(decoder, family: family)
            return
        }
        if family == .gptNeoX {
            self = try Self.decodeNeoX(decoder)
            return
        }
        bosTokenID = try c.decodeIfPresent(Int.self, forKey: .bosTokenID)
        eosTokenID = try c.decodeIfPresent(Int.self, forKey: .eosTokenID)
        tiedEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? true
        tokenizer = try c.decodeIfPresent(String.self, forKey: .tokenizer)
        attention = try c.decodeIfPresent(AttentionPattern.self, forKey: .attention) ?? .causal
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        maxPositions = try c.decode(Int.self, forKey: .maxPositions)
        dModel = try c.decode(Int.self, forKey: .dModel)
        nLayers = try c.decode(Int.self, forKey: .nLayers)
        nHeads = try c.decode(Int.self, forKey: .nHeads)
        // A hostile n_embd must not overflow here (validate then refuses it by name).
        let (fourC, overflow) = dModel.multipliedReportingOverflow(by: 4)
        dMLP = try c.decodeIfPresent(Int.self, forKey: .dMLP) ?? (overflow ? .max : fourC)
        layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? 1e-5
        activation = try c.decodeIfPresent(String.self, forKey: .activation) ?? "gelu_new"
        inputFeatures = try c.decodeIfPresent(Int.self, forKey: .inputFeatures)
        outputs = try c.decodeIfPresent(Int.self, forKey: .outputs)
        loss = try c.decodeIfPresent(RegressionLoss.self, forKey: .loss)
        predictionHeads = try c.decodeIfPresent(Int.self, forKey: .predictionHeads) ?? 1
    }

    /// A `LlamaConfig` (or a config of a family read like it), under its own keys.
    private static func decodeLlama(_ decoder: Decoder, family: Family) throws -> ModelConfig {
        let shared = try decoder.container(keyedBy: CodingKeys.self)
        let c = try decoder.container(keyedBy: LlamaKeys.self)
        let nHeads = try c.decode(Int.self, forKey: .nHeads)
        var config = ModelConfig.llama(
            vocabSize: try c.decode(Int.self, forKey: .vocabSize),
            maxPositions: try c.decode(Int.self, forKey: .maxPositions),
            dModel: try c.decode(Int.self, forKey: .dModel),
            nLayers: try c.decode(Int.self, forKey: .nLayers),
            nHeads: nHeads,
            nKVHeads: try c.decodeIfPresent(Int.self, forKey: .nKVHeads) ?? nHeads,
            // transformers' defaults where a key is absent: Qwen3 and Gemma 2 have a fixed head_dim,
            // the others C / NH; OLMo 2's eps is 1e-5.
            headDim: try c.decodeIfPresent(Int.self, forKey: .headDim)
                ?? (c.contains(.headDim) ? nil : family == .qwen3 ? 128 : family == .gemma2 ? 256 : nil),
            dMLP: try c.decode(Int.self, forKey: .dMLP),
            rmsNormEps: try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? (family == .olmo2 ? 1e-5 : 1e-6),
            tiedEmbeddings: try shared.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? (family == .gemma2),
            tokenizer: try shared.decodeIfPresent(String.self, forKey: .tokenizer))
        config.family = family
        config.bosTokenID = try shared.decodeIfPresent(Int.self, forKey: .bosTokenID)
        config.eosTokenID = try shared.decodeIfPresent(Int.self, forKey: .eosTokenID)
        // transformers' default where the key is absent (Gemma2Config 0, Olmo2Config 1); null: none.
        config.padTokenID = try shared.decodeIfPresent(Int.self, forKey: .padTokenID)
            ?? (shared.contains(.padTokenID) ? nil : family == .gemma2 ? 0 : family == .olmo2 ? 1 : nil)
        config.attention = try shared.decodeIfPresent(AttentionPattern.self, forKey: .attention) ?? .causal
        let activationKey: LlamaKeys = c.contains(.hiddenActivation) ? .hiddenActivation : .activation
        config.activation = try c.decodeIfPresent(String.self, forKey: activationKey)
            ?? (family == .gemma2 ? "gelu_pytorch_tanh" : "silu")
        config.ropeInterleaved = try c.decodeIfPresent(Bool.self, forKey: .ropeInterleaved) ?? false
        config.predictionHeads = try shared.decodeIfPresent(Int.self, forKey: .predictionHeads) ?? 1
        let parameters = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)
        config.ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? parameters?.ropeTheta ?? 10_000
        try refuseRopeScaling(parameters, try c.decodeIfPresent(RopeParameters.self, forKey: .ropeScaling),
                              parametersKey: LlamaKeys.ropeParameters.rawValue, scalingKey: LlamaKeys.ropeScaling.rawValue)
        let partial = try c.decodeIfPresent(Double.self, forKey: .partialRotaryFactor) ?? parameters?.partialRotaryFactor
        if let partial, partial != 1 {
            throw InputError.unsupported(file: "config.json", field: LlamaKeys.partialRotaryFactor.rawValue,
                                          value: "\(partial) (\(family.rawValue) rotates whole heads in Myopia; only gpt_neox rotates a fraction)")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .attentionBias) == true && family != .qwen2 {
            throw InputError.unsupported(file: "config.json", field: LlamaKeys.attentionBias.rawValue,
                                          value: "true (\(family.rawValue) attention has no biases in Myopia)")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .mlpBias) == true {
            throw InputError.unsupported(file: "config.json", field: LlamaKeys.mlpBias.rawValue,
                                          value: "true (the \(family.rawValue) MLP has no biases in Myopia)")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .bidirectional) == true {
            throw InputError.unsupported(file: "config.json", field: LlamaKeys.bidirectional.rawValue,
                                          value: "true (Myopia's models are causal)")
        }
        try decodeWindows(c, into: &config)
        // Gemma2Config's defaults apply where a key is absent; null turns a cap off.
        func gemma(_ key: LlamaKeys, _ fallback: Double) throws -> Double? {
            try c.decodeIfPresent(Double.self, forKey: key) ?? (family == .gemma2 && !c.contains(key) ? fallback : nil)
        }
        config.attentionSoftcap = try gemma(.attentionSoftcap, 50)
        config.finalSoftcap = try gemma(.finalSoftcap, 30)
        config.queryPreAttentionScalar = try gemma(.queryPreAttentionScalar, 256)
        if family != .gemma2 {
            for key in [LlamaKeys.attentionSoftcap, .finalSoftcap, .queryPreAttentionScalar] where try c.contains(key) && !c.decodeNil(forKey: key) {
                throw InputError.unsupported(file: "config.json", field: key.rawValue,
                                              value: "a value on a \(family.rawValue) model (only gemma2 reads it)")
            }
        }
        return config
    }

    /// `sliding_window` with `layer_types` (transformers 5), or the family's default layers:
    /// every layer (Mistral), even layers (Gemma 2), or none unless `use_sliding_window` (Qwen).
    private static func decodeWindows(_ c: KeyedDecodingContainer<LlamaKeys>, into config: inout ModelConfig) throws {
        // MistralConfig and Gemma2Config slide over 4096 positions unless the key says otherwise.
        let window = try c.decodeIfPresent(Int.self, forKey: .slidingWindow)
            ?? ((config.family == .mistral || config.family == .gemma2) && !c.contains(.slidingWindow) ? 4096 : nil)
        let types = try c.decodeIfPresent([String].self, forKey: .layerTypes)
        if let types {
            guard types.count == config.nLayers else {
                throw InputError.invalidValue(file: "config.json", field: LlamaKeys.layerTypes.rawValue,
                                               expected: "one entry per layer (\(config.nLayers))", found: "\(types.count) entries")
            }
            for (i, type) in types.enumerated() where type != "full_attention" && type != "sliding_attention" {
                throw InputError.unsupported(file: "config.json", field: "\(LlamaKeys.layerTypes.rawValue)[\(i)]",
                                              value: "\(type) (Myopia reads full_attention and sliding_attention)")
            }
        }
        // A layer count `validate` will refuse builds no per-layer list (a hostile one could be huge).
        let layers = (1...(1 << 20)).contains(config.nLayers) ? 0..<config.nLayers : 0..<0
        let sliding: [Bool]?
        switch config.family {
        case .qwen2, .qwen3:
            let use = try c.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) ?? false
            let first = try c.decodeIfPresent(Int.self, forKey: .maxWindowLayers) ?? config.nLayers
            sliding = types.map { $0.map { $0 == "sliding_attention" } }
                ?? layers.map { use && $0 >= first }
        case .gemma2:
            sliding = types.map { $0.map { $0 == "sliding_attention" } } ?? layers.map { $0 % 2 == 0 }
        default:
            sliding = types.map { $0.map { $0 == "sliding_attention" } }
        }
        if let window, sliding?.contains(true) ?? true {
            config.slidingWindow = window
            config.slidingLayers = sliding.flatMap { $0.allSatisfy { $0 } ? nil : $0 }
        } else if sliding?.contains(true) == true {
            throw InputError.missing(file: "config.json", field: LlamaKeys.slidingWindow.rawValue)
        }
    }

    /// A `GPTNeoXConfig`, under its own keys.
    private static func decodeNeoX(_ decoder: Decoder) throws -> ModelConfig {
        let shared = try decoder.container(keyedBy: CodingKeys.self)
        let c = try decoder.container(keyedBy: NeoXKeys.self)
        var config = ModelConfig(vocabSize: try c.decode(Int.self, forKey: .vocabSize),
                                 maxPositions: try c.decode(Int.self, forKey: .maxPositions),
                                 dModel: try c.decode(Int.self, forKey: .dModel),
                                 nLayers: try c.decode(Int.self, forKey: .nLayers),
                                 nHeads: try c.decode(Int.self, forKey: .nHeads),
                                 dMLP: try c.decode(Int.self, forKey: .dMLP),
                                 tokenizer: try shared.decodeIfPresent(String.self, forKey: .tokenizer))
        config.family = .gptNeoX
        config.layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? 1e-5
        config.activation = try c.decodeIfPresent(String.self, forKey: .activation) ?? "gelu"
        config.tiedEmbeddings = try shared.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? false
        config.bosTokenID = try shared.decodeIfPresent(Int.self, forKey: .bosTokenID)
        config.eosTokenID = try shared.decodeIfPresent(Int.self, forKey: .eosTokenID)
        config.attention = try shared.decodeIfPresent(AttentionPattern.self, forKey: .attention) ?? .causal
        config.predictionHeads = try shared.decodeIfPresent(Int.self, forKey: .predictionHeads) ?? 1
        let parameters = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)
        config.ropeTheta = try c.decodeIfPresent(Double.self, forKey: .rotaryBase) ?? parameters?.ropeTheta ?? 10_000
        config.rotaryFraction = try c.decodeIfPresent(Double.self, forKey: .rotaryPct) ?? parameters?.partialRotaryFactor ?? 0.25
        try refuseRopeScaling(parameters, try c.decodeIfPresent(RopeParameters.self, forKey: .ropeScaling),
                              parametersKey: NeoXKeys.ropeParameters.rawValue, scalingKey: NeoXKeys.ropeScaling.rawValue)
        config.parallelResidual = try c.decodeIfPresent(Bool.self, forKey: .parallelResidual) ?? true
        config.attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? true
        return config
    }

    /// Only plain RoPE is implemented: any other `rope_type` is refused by name.
    private static func refuseRopeScaling(_ parameters: RopeParameters?, _ scaling: RopeParameters?,
                                          parametersKey: String, scalingKey: String) throws {
        for (key, p) in [(parametersKey, parameters), (scalingKey, scaling)] {
            if let kind = p?.ropeType ?? p?.type, kind != "default" {
                throw InputError.unsupported(file: "config.json", field: key,
                                              value: "rope_type \(kind) (Myopia implements plain RoPE: \"default\")")
            }
        }
    }

    public func encode(to encoder: Encoder) throws {
        if family.usesLlamaKeys { return try encodeLlama(to: encoder) }
        if family == .gptNeoX { return try encodeNeoX(to: encoder) }
        var c = encoder.container(keyedBy: CodingKeys.self)
        // A continuous model names no transformers class: none has its heads.
        try c.encode([huggingFaceClass], forKey: .architectures)
        try c.encode(family, forKey: .family)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(maxPositions, forKey: .maxPositions)
        try c.encode(maxPositions, forKey: .n_ctx)
        try c.encode(dModel, forKey: .dModel)
        try c.encode(nLayers, forKey: .nLayers)
        try c.encode(nHeads, forKey: .nHeads)
        try c.encode(dMLP, forKey: .dMLP)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encode(activation, forKey: .activation)
        try c.encode(tiedEmbeddings, forKey: .tiedEmbeddings)
        try c.encodeIfPresent(bosTokenID, forKey: .bosTokenID)
        try c.encodeIfPresent(eosTokenID, forKey: .eosTokenID)
        try c.encodeIfPresent(tokenizer, forKey: .tokenizer)
        if attention != .causal { try c.encode(attention, forKey: .attention) }
        try c.encodeIfPresent(inputFeatures, forKey: .inputFeatures)
        try c.encodeIfPresent(outputs, forKey: .outputs)
        try c.encodeIfPresent(loss, forKey: .loss)
        if predictionHeads > 1 { try c.encode(predictionHeads, forKey: .predictionHeads) }
        try c.encode(0.0, forKey: .resid_pdrop)
        try c.encode(0.0, forKey: .embd_pdrop)
        try c.encode(0.0, forKey: .attn_pdrop)
        try c.encode("float32", forKey: .torch_dtype)
    }

    /// The keys every family but GPT-2 writes the same way: Myopia's own and the token ids.
    private func encodeShared(to encoder: Encoder) throws {
        var shared = encoder.container(keyedBy: CodingKeys.self)
        try shared.encode(family, forKey: .family)
        try shared.encode(tiedEmbeddings, forKey: .tiedEmbeddings)
        try shared.encodeIfPresent(bosTokenID, forKey: .bosTokenID)
        try shared.encodeIfPresent(eosTokenID, forKey: .eosTokenID)
        if architecture.embeddingHasPaddingRow {
            // Written even when nil: a family's default (Gemma 2: 0, OLMo 2: 1) would otherwise freeze a row.
            if let padTokenID { try shared.encode(padTokenID, forKey: .padTokenID) } else { try shared.encodeNil(forKey: .padTokenID) }
        }
        try shared.encodeIfPresent(tokenizer, forKey: .tokenizer)
        if attention != .causal { try shared.encode(attention, forKey: .attention) }
        if predictionHeads > 1 { try shared.encode(predictionHeads, forKey: .predictionHeads) }
        try shared.encode("float32", forKey: .torch_dtype)
    }

    /// A config that the family's `…ForCausalLM.from_pretrained` reads (LlamaConfig's keys and each
    /// family's extras).
    private func encodeLlama(to encoder: Encoder) throws {
        try encodeShared(to: encoder)
        var c = encoder.container(keyedBy: LlamaKeys.self)
        try c.encode([huggingFaceClass], forKey: .architectures)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(maxPositions, forKey: .maxPositions)
        try c.encode(dModel, forKey: .dModel)
        try c.encode(nLayers, forKey: .nLayers)
        try c.encode(nHeads, forKey: .nHeads)
        try c.encode(kvHeads, forKey: .nKVHeads)
        try c.encode(headSize, forKey: .headDim)
        try c.encode(dMLP, forKey: .dMLP)
        try c.encode(layerNormEps, forKey: .rmsNormEps)
        try c.encode(activation, forKey: family == .gemma2 ? .hiddenActivation : .activation)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(RopeParameters(ropeTheta: ropeTheta, ropeType: "default"), forKey: .ropeParameters)
        if ropeInterleaved { try c.encode(true, forKey: .ropeInterleaved) }
        if family != .qwen2 { try c.encode(false, forKey: .attentionBias) }
        if family == .llama { try c.encode(false, forKey: .mlpBias) }
        if let slidingWindow {
            try c.encode(slidingWindow, forKey: .slidingWindow)
            if family == .qwen2 || family == .qwen3 { try c.encode(true, forKey: .useSlidingWindow) }
            try c.encode((0..<nLayers).map { window(layer: $0) == nil ? "full_attention" : "sliding_attention" },
                         forKey: .layerTypes)
        } else if family == .mistral || family == .qwen2 || family == .qwen3 || family == .gemma2 {
            if family == .gemma2 {
                // Gemma 2's default layer types slide: say that none does. transformers builds the
                // sliding mask anyway and needs a window: the whole context, which masks nothing.
                try c.encode(maxPositions, forKey: .slidingWindow)
                try c.encode(Array(repeating: "full_attention", count: nLayers), forKey: .layerTypes)
            } else {
                try c.encodeNil(forKey: .slidingWindow)
            }
            if family == .qwen2 || family == .qwen3 { try c.encode(false, forKey: .useSlidingWindow) }
        }
        if family == .gemma2 {
            // Gemma2Config's defaults are not "off": write every option, null where there is none.
            if let attentionSoftcap { try c.encode(attentionSoftcap, forKey: .attentionSoftcap) } else { try c.encodeNil(forKey: .attentionSoftcap) }
            if let finalSoftcap { try c.encode(finalSoftcap, forKey: .finalSoftcap) } else { try c.encodeNil(forKey: .finalSoftcap) }
            try c.encode(queryPreAttentionScalar ?? Double(headSize), forKey: .queryPreAttentionScalar)
        }
        try c.encode(0.0, forKey: .attention_dropout)
        try c.encode(0.02, forKey: .initializer_range)
    }

    /// A `GPTNeoXConfig` that `GPTNeoXForCausalLM.from_pretrained` reads.
    private func encodeNeoX(to encoder: Encoder) throws {
        try encodeShared(to: encoder)
        var c = encoder.container(keyedBy: NeoXKeys.self)
        try c.encode([huggingFaceClass], forKey: .architectures)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(maxPositions, forKey: .maxPositions)
        try c.encode(dModel, forKey: .dModel)
        try c.encode(nLayers, forKey: .nLayers)
        try c.encode(nHeads, forKey: .nHeads)
        try c.encode(dMLP, forKey: .dMLP)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encode(activation, forKey: .activation)
        try c.encode(rotaryFraction, forKey: .rotaryPct)
        try c.encode(ropeTheta, forKey: .rotaryBase)
        try c.encode(RopeParameters(ropeTheta: ropeTheta, ropeType: "default", partialRotaryFactor: rotaryFraction),
                     forKey: .ropeParameters)
        try c.encode(parallelResidual, forKey: .parallelResidual)
        try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(0.0, forKey: .attention_dropout)
        try c.encode(0.0, forKey: .hidden_dropout)
        try c.encode(0.02, forKey: .initializer_range)
    }

    /// A Llama-family model: RMSNorm, RoPE, SwiGLU, grouped-query attention.
    public static func llama(vocabSize: Int, maxPositions: Int, dModel: Int, nLayers: Int, nHeads: Int,
                             nKVHeads: Int? = nil, headDim: Int? = nil, dMLP: Int, ropeTheta: Double = 10_000,
                             rmsNormEps: Double = 1e-5, tiedEmbeddings: Bool = false,
                             tokenizer: String? = "byte") -> ModelConfig {
        var c = ModelConfig(vocabSize: vocabSize, maxPositions: maxPositions, dModel: dModel, nLayers: nLayers,
                            nHeads: nHeads, dMLP: dMLP, tokenizer: tokenizer)
        c.family = .llama
        c.nKVHeads = nKVHeads
        c.headDim = headDim
        c.ropeTheta = ropeTheta
        c.layerNormEps = rmsNormEps
        c.activation = "silu"
        c.tiedEmbeddings = tiedEmbeddings
        return c
    }

    /// Checks the values a file could get wrong; `file` names the source in the error.
    public func validate(file: String = "config.json") throws {
        // The dimensions every family has, under each family's own key (every family but GPT-2
        // names them as Llama does).
        let llama = family != .gpt2
        let dimensions: [(Int, String)] = [
            (vocabSize, CodingKeys.vocabSize.rawValue),
            (maxPositions, llama ? LlamaKeys.maxPositions.rawValue : CodingKeys.maxPositions.rawValue),
            (dModel, llama ? LlamaKeys.dModel.rawValue : CodingKeys.dModel.rawValue),
            (nLayers, llama ? LlamaKeys.nLayers.rawValue : CodingKeys.nLayers.rawValue),
            (nHeads, llama ? LlamaKeys.nHeads.rawValue : CodingKeys.nHeads.rawValue),
            (dMLP, llama ? LlamaKeys.dMLP.rawValue : CodingKeys.dMLP.rawValue),
        ]
        // A bound on every dimension keeps a hostile config from asking for an absurd allocation.
        let limit = 1 << 20
        for (v, key) in dimensions {
            guard v > 0 else {
                throw InputError.invalidValue(file: file, field: key, expected: "a positive integer", found: "\(v)")
            }
            guard v <= limit else {
                throw InputError.invalidValue(file: file, field: key, expected: "at most \(limit)", found: "\(v)")
            }
        }
        try validatePredictionHeads(file: file, limit: limit)
        if family != .gpt2 { return try validateRotary(file: file, limit: limit) }
        guard dModel % nHeads == 0 else {
            throw InputError.invalidValue(file: file, field: "n_head", expected: "a divisor of n_embd (\(dModel))", found: "\(nHeads)")
        }
        guard layerNormEps > 0, layerNormEps.isFinite else {
            throw InputError.invalidValue(file: file, field: "layer_norm_epsilon", expected: "a positive number", found: "\(layerNormEps)")
        }
        guard nKVHeads == nil || nKVHeads == nHeads, headDim == nil || headDim == dModel / nHeads else {
            throw InputError.unsupported(file: file, field: "model_type", value: "gpt2 with grouped-query attention or a separate head_dim (use the llama family)")
        }
        guard ["gelu_new", "gelu_pytorch_tanh"].contains(activation) else {
            throw InputError.unsupported(file: file, field: "activation_function", value: "\(activation) (Myopia implements the tanh GELU: gelu_new, gelu_pytorch_tanh)")
        }
        if inputFeatures != nil || outputs != nil || loss != nil {
            // Continuous heads come as a pair: features in and numbers out (no tied head to speak of).
            guard let inputFeatures, let outputs else {
                let absent = inputFeatures == nil ? CodingKeys.inputFeatures : .outputs
                throw InputError.invalidValue(file: file, field: absent.rawValue, expected: "a positive integer (continuous heads need both myopia_input_features and myopia_outputs)", found: "nothing")
            }
            for (v, key) in [(inputFeatures, CodingKeys.inputFeatures), (outputs, .outputs)] where !(1...limit).contains(v) {
                throw InputError.invalidValue(file: file, field: key.rawValue, expected: "an integer in 1…\(limit)", found: "\(v)")
            }
        } else {
            guard tiedEmbeddings else {
                throw InputError.unsupported(file: file, field: "tie_word_embeddings", value: "false (GPT-2 ties its head to wte)")
            }
        }
    }

    /// `myopia_prediction_heads`: a positive count, above 1 only for a token model.
    private func validatePredictionHeads(file: String, limit: Int) throws {
        let key = CodingKeys.predictionHeads.rawValue
        guard (1...limit).contains(predictionHeads) else {
            throw InputError.invalidValue(file: file, field: key, expected: "an integer in 1…\(limit)", found: "\(predictionHeads)")
        }
        guard predictionHeads == 1 || !isContinuous else {
            throw InputError.unsupported(file: file, field: key,
                                          value: "\(predictionHeads) on a model with continuous heads (only token models predict several tokens ahead)")
        }
    }

    /// The checks of every rotary family (all but GPT-2), each option under its own key.
    private func validateRotary(file: String, limit: Int) throws {
        func check(_ ok: Bool, _ key: String, _ expected: String, _ found: Any) throws {
            guard ok else { throw InputError.invalidValue(file: file, field: key, expected: expected, found: "\(found)") }
        }
        let neox = family == .gptNeoX
        if neox {
            try check(dModel % nHeads == 0, NeoXKeys.nHeads.rawValue, "a divisor of hidden_size (\(dModel))", nHeads)
            try check(layerNormEps > 0 && layerNormEps.isFinite, NeoXKeys.layerNormEps.rawValue, "a positive number", layerNormEps)
            try check(rotaryFraction > 0 && rotaryFraction <= 1 && rotaryDims >= 2 && rotaryDims % 2 == 0,
                      NeoXKeys.rotaryPct.rawValue, "a fraction in (0, 1] of the head size (\(headSize)) giving an even number of dimensions",
                      rotaryFraction)
        } else {
            try check(kvHeads > 0 && nHeads % kvHeads == 0, LlamaKeys.nKVHeads.rawValue, "a positive divisor of num_attention_heads (\(nHeads))", kvHeads)
            try check(layerNormEps > 0 && layerNormEps.isFinite, LlamaKeys.rmsNormEps.rawValue, "a positive number", layerNormEps)
        }
        try check(headSize > 0 && headSize % 2 == 0 && headSize <= 4096, LlamaKeys.headDim.rawValue, "a positive even number (RoPE rotates pairs)", headSize)
        try check(ropeTheta > 1 && ropeTheta.isFinite, neox ? NeoXKeys.rotaryBase.rawValue : LlamaKeys.ropeTheta.rawValue,
                  "a number above 1", ropeTheta)
        if let padTokenID, architecture.embeddingHasPaddingRow {
            // nn.Embedding's padding_idx: −V ≤ id < V, a negative one counting from the end.
            try check(padTokenID >= -vocabSize && padTokenID < vocabSize, CodingKeys.padTokenID.rawValue,
                      "a token id in −\(vocabSize)…\(vocabSize - 1) (or null)", padTokenID)
        }
        try check(qkvWidth <= limit, LlamaKeys.headDim.rawValue, "(num_attention_heads + 2·num_key_value_heads)·head_dim at most \(limit)", qkvWidth)
        if let slidingWindow {
            try check(slidingWindow > 0, LlamaKeys.slidingWindow.rawValue, "a positive number of positions", slidingWindow)
        }
        for (value, key) in [(attentionSoftcap, LlamaKeys.attentionSoftcap), (finalSoftcap, .finalSoftcap),
                             (queryPreAttentionScalar, .queryPreAttentionScalar)] {
            if let value { try check(value > 0 && value.isFinite, key.rawValue, "a positive number (or null)", value) }
        }
        let expected: [String]
        switch architecture.mlp {
        case .swiGLU: expected = ["silu"]
        case .geGLU: expected = ["gelu_pytorch_tanh"]
        case .geluErf: expected = ["gelu"]
        case .geluTanh: expected = ["gelu_new", "gelu_pytorch_tanh"]
        }
        guard expected.contains(activation) else {
            let key = neox ? NeoXKeys.activation.rawValue : family == .gemma2 ? LlamaKeys.hiddenActivation.rawValue : LlamaKeys.activation.rawValue
            throw InputError.unsupported(file: file, field: key,
                                          value: "\(activation) (Myopia's \(family.rawValue) MLP uses \(expected.joined(separator: " or ")))")
        }
        guard !isContinuous else {
            throw InputError.unsupported(file: file, field: CodingKeys.inputFeatures.rawValue, value: "continuous heads on a \(family.rawValue) model (only gpt2 has them)")
        }
    }
}
