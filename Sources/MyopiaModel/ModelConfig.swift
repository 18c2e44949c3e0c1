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
/// Two families (docs/DESIGN.md §3), told apart by `model_type`, each read and written under its own
/// Hugging Face keys:
///   gpt2   LayerNorm, learned positions (wpe), fused c_attn, GELU MLP, head tied to wte
///   llama  RMSNorm, rotary positions, q/k/v/o projections with grouped-query attention (NKV key/value
///          heads shared by NH/NKV query heads each), SwiGLU MLP, tied or separate head
public struct ModelConfig: Codable, Equatable, Sendable {
    public enum Family: String, Codable, Sendable { case gpt2, llama }

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

    public var headSize: Int { headDim ?? dModel / nHeads }   // HS
    public var kvHeads: Int { nKVHeads ?? nHeads }             // NKV
    /// Width of one position's [q | k | v]: (NH + 2·NKV)·HS (GPT-2: 3C).
    public var qkvWidth: Int { (nHeads + 2 * kvHeads) * headSize }
    /// Width of the attention output before o_proj / c_proj: NH·HS (GPT-2: C).
    public var attentionWidth: Int { nHeads * headSize }

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
        case tokenizer = "myopia_tokenizer"
        case attention = "myopia_attention"
        case inputFeatures = "myopia_input_features"
        case outputs = "myopia_outputs"
        case loss = "myopia_loss"
        case predictionHeads = "myopia_prediction_heads"
        // Written for transformers' benefit, never read back.
        case architectures, resid_pdrop, embd_pdrop, attn_pdrop, n_ctx, torch_dtype
    }

    /// The keys of a Hugging Face `LlamaConfig`.
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
        case ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case attentionBias = "attention_bias"
        case mlpBias = "mlp_bias"
        case ropeInterleaved = "myopia_rope_interleaved"
        case architectures, torch_dtype, attention_dropout, initializer_range, use_cache
    }

    /// `rope_parameters` (transformers 5) / `rope_scaling` (4.x): only plain RoPE is implemented.
    struct RopeParameters: Codable {
        var ropeTheta: Double?
        var ropeType: String?
        var type: String?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type", type }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        family = try c.decode(Family.self, forKey: .family)
        if family == .llama {
            self = try Self.decodeLlama(decoder)
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

    /// A `LlamaConfig`, read under its own keys.
    private static func decodeLlama(_ decoder: Decoder) throws -> ModelConfig {
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
            headDim: try c.decodeIfPresent(Int.self, forKey: .headDim),
            dMLP: try c.decode(Int.self, forKey: .dMLP),
            rmsNormEps: try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6,
            tiedEmbeddings: try shared.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? false,
            tokenizer: try shared.decodeIfPresent(String.self, forKey: .tokenizer))
        config.bosTokenID = try shared.decodeIfPresent(Int.self, forKey: .bosTokenID)
        config.eosTokenID = try shared.decodeIfPresent(Int.self, forKey: .eosTokenID)
        config.attention = try shared.decodeIfPresent(AttentionPattern.self, forKey: .attention) ?? .causal
        config.activation = try c.decodeIfPresent(String.self, forKey: .activation) ?? "silu"
        config.ropeInterleaved = try c.decodeIfPresent(Bool.self, forKey: .ropeInterleaved) ?? false
        config.predictionHeads = try shared.decodeIfPresent(Int.self, forKey: .predictionHeads) ?? 1
        let parameters = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)
        config.ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? parameters?.ropeTheta ?? 10_000
        for (key, p) in [(LlamaKeys.ropeParameters, parameters),
                         (.ropeScaling, try c.decodeIfPresent(RopeParameters.self, forKey: .ropeScaling))] {
            if let kind = p?.ropeType ?? p?.type, kind != "default" {
                throw InputError.unsupported(file: "config.json", field: key.rawValue,
                                              value: "rope_type \(kind) (Myopia implements plain RoPE: \"default\")")
            }
        }
        for key in [LlamaKeys.attentionBias, .mlpBias] where try c.decodeIfPresent(Bool.self, forKey: key) == true {
            throw InputError.unsupported(file: "config.json", field: key.rawValue, value: "true (Myopia's Llama has no biases)")
        }
        return config
    }

    public func encode(to encoder: Encoder) throws {
        if family == .llama { return try encodeLlama(to: encoder) }
        var c = encoder.container(keyedBy: CodingKeys.self)
        // A continuous model names no transformers class: none has its heads.
        try c.encode([isContinuous ? "MyopiaContinuousGPT2" : "GPT2LMHeadModel"], forKey: .architectures)
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

    /// A `LlamaConfig` that `LlamaForCausalLM.from_pretrained` reads.
    private func encodeLlama(to encoder: Encoder) throws {
        var shared = encoder.container(keyedBy: CodingKeys.self)
        try shared.encode(family, forKey: .family)
        try shared.encode(tiedEmbeddings, forKey: .tiedEmbeddings)
        try shared.encodeIfPresent(bosTokenID, forKey: .bosTokenID)
        try shared.encodeIfPresent(eosTokenID, forKey: .eosTokenID)
        try shared.encodeIfPresent(tokenizer, forKey: .tokenizer)
        if attention != .causal { try shared.encode(attention, forKey: .attention) }
        if predictionHeads > 1 { try shared.encode(predictionHeads, forKey: .predictionHeads) }
        var c = encoder.container(keyedBy: LlamaKeys.self)
        try c.encode(["LlamaForCausalLM"], forKey: .architectures)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(maxPositions, forKey: .maxPositions)
        try c.encode(dModel, forKey: .dModel)
        try c.encode(nLayers, forKey: .nLayers)
        try c.encode(nHeads, forKey: .nHeads)
        try c.encode(kvHeads, forKey: .nKVHeads)
        try c.encode(headSize, forKey: .headDim)
        try c.encode(dMLP, forKey: .dMLP)
        try c.encode(layerNormEps, forKey: .rmsNormEps)
        try c.encode(activation, forKey: .activation)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        if ropeInterleaved { try c.encode(true, forKey: .ropeInterleaved) }
        try c.encode(false, forKey: .attentionBias)
        try c.encode(false, forKey: .mlpBias)
        try c.encode(0.0, forKey: .attention_dropout)
        try c.encode(0.02, forKey: .initializer_range)
        try c.encode("float32", forKey: .torch_dtype)
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
        // The dimensions both families have, under each family's own key.
        let llama = family == .llama
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
        if family == .llama { return try validateLlama(file: file, limit: limit) }
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

    private func validateLlama(file: String, limit: Int) throws {
        func check(_ ok: Bool, _ key: LlamaKeys, _ expected: String, _ found: Any) throws {
            guard ok else { throw InputError.invalidValue(file: file, field: key.rawValue, expected: expected, found: "\(found)") }
        }
        try check(kvHeads > 0 && nHeads % kvHeads == 0, .nKVHeads, "a positive divisor of num_attention_heads (\(nHeads))", kvHeads)
        try check(headSize > 0 && headSize % 2 == 0 && headSize <= 4096, .headDim, "a positive even number (RoPE rotates pairs)", headSize)
        try check(layerNormEps > 0 && layerNormEps.isFinite, .rmsNormEps, "a positive number", layerNormEps)
        try check(ropeTheta > 1 && ropeTheta.isFinite, .ropeTheta, "a number above 1", ropeTheta)
        try check(qkvWidth <= limit, .headDim, "(num_attention_heads + 2·num_key_value_heads)·head_dim at most \(limit)", qkvWidth)
        guard activation == "silu" else {
            throw InputError.unsupported(file: file, field: LlamaKeys.activation.rawValue, value: "\(activation) (Myopia's Llama uses SwiGLU: silu)")
        }
        guard !isContinuous else {
            throw InputError.unsupported(file: file, field: CodingKeys.inputFeatures.rawValue, value: "continuous heads on a llama model (only gpt2 has them)")
        }
    }
}
