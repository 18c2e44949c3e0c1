import Foundation

/// The shape of a decoder-only transformer, read from and written to a Hugging Face `config.json`.
///
/// Swift names on the left, checkpoint keys in `CodingKeys`. Unknown keys in a Hugging Face file are
/// ignored; Myopia's own additions (`myopia_tokenizer`, ...) are ignored by `transformers`.
///
/// A model with continuous heads (`inputFeatures` and `outputs` set, DESIGN §3) reads F features per
/// position through `input_proj` instead of token embeddings and predicts O numbers per position
/// through `output_proj` instead of tied logits. Its checkpoint is still config.json +
/// model.safetensors, but `transformers` cannot load it (it has no such heads); Myopia can.
public struct ModelConfig: Codable, Equatable, Sendable {
    public enum Family: String, Codable, Sendable { case gpt2 }

    public var family: Family = .gpt2
    public var vocabSize: Int           // V
    public var maxPositions: Int        // rows of wpe: the longest context
    public var dModel: Int              // C
    public var nLayers: Int             // L
    public var nHeads: Int              // NH
    public var dMLP: Int                // hidden width of the MLP (GPT-2: 4C)
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

    public var headSize: Int { dModel / nHeads } // HS

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
        // Written for transformers' benefit, never read back.
        case architectures, resid_pdrop, embd_pdrop, attn_pdrop, n_ctx, torch_dtype
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        family = try c.decode(Family.self, forKey: .family)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        maxPositions = try c.decode(Int.self, forKey: .maxPositions)
        dModel = try c.decode(Int.self, forKey: .dModel)
        nLayers = try c.decode(Int.self, forKey: .nLayers)
        nHeads = try c.decode(Int.self, forKey: .nHeads)
        dMLP = try c.decodeIfPresent(Int.self, forKey: .dMLP) ?? 4 * dModel
        layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? 1e-5
        activation = try c.decodeIfPresent(String.self, forKey: .activation) ?? "gelu_new"
        tiedEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? true
        bosTokenID = try c.decodeIfPresent(Int.self, forKey: .bosTokenID)
        eosTokenID = try c.decodeIfPresent(Int.self, forKey: .eosTokenID)
        tokenizer = try c.decodeIfPresent(String.self, forKey: .tokenizer)
        attention = try c.decodeIfPresent(AttentionPattern.self, forKey: .attention) ?? .causal
        inputFeatures = try c.decodeIfPresent(Int.self, forKey: .inputFeatures)
        outputs = try c.decodeIfPresent(Int.self, forKey: .outputs)
        loss = try c.decodeIfPresent(RegressionLoss.self, forKey: .loss)
    }

    public func encode(to encoder: Encoder) throws {
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
        try c.encode(0.0, forKey: .resid_pdrop)
        try c.encode(0.0, forKey: .embd_pdrop)
        try c.encode(0.0, forKey: .attn_pdrop)
        try c.encode("float32", forKey: .torch_dtype)
    }

    /// Checks the values a file could get wrong; `file` names the source in the error.
    public func validate(file: String = "config.json") throws {
        func positive(_ v: Int, _ key: CodingKeys) throws {
            guard v > 0 else {
                throw FormatError.invalidValue(file: file, field: key.rawValue, expected: "a positive integer", found: "\(v)")
            }
        }
        try positive(vocabSize, .vocabSize)
        try positive(maxPositions, .maxPositions)
        try positive(dModel, .dModel)
        try positive(nLayers, .nLayers)
        try positive(nHeads, .nHeads)
        try positive(dMLP, .dMLP)
        // A bound on every dimension keeps a hostile config from asking for an absurd allocation.
        let limit = 1 << 20
        for (v, key) in [(vocabSize, CodingKeys.vocabSize), (maxPositions, .maxPositions), (dModel, .dModel),
                         (nLayers, .nLayers), (dMLP, .dMLP)] where v > limit {
            throw FormatError.invalidValue(file: file, field: key.rawValue, expected: "at most \(limit)", found: "\(v)")
        }
        guard dModel % nHeads == 0 else {
            throw FormatError.invalidValue(file: file, field: "n_head", expected: "a divisor of n_embd (\(dModel))", found: "\(nHeads)")
        }
        guard layerNormEps > 0, layerNormEps.isFinite else {
            throw FormatError.invalidValue(file: file, field: "layer_norm_epsilon", expected: "a positive number", found: "\(layerNormEps)")
        }
        guard ["gelu_new", "gelu_pytorch_tanh"].contains(activation) else {
            throw FormatError.unsupported(file: file, field: "activation_function", value: "\(activation) (Myopia implements the tanh GELU: gelu_new, gelu_pytorch_tanh)")
        }
        if inputFeatures != nil || outputs != nil || loss != nil {
            // Continuous heads come as a pair: features in and numbers out (no tied head to speak of).
            guard let inputFeatures, let outputs else {
                let absent = inputFeatures == nil ? CodingKeys.inputFeatures : .outputs
                throw FormatError.invalidValue(file: file, field: absent.rawValue, expected: "a positive integer (continuous heads need both myopia_input_features and myopia_outputs)", found: "nothing")
            }
            try positive(inputFeatures, .inputFeatures)
            try positive(outputs, .outputs)
            for (v, key) in [(inputFeatures, CodingKeys.inputFeatures), (outputs, .outputs)] where v > limit {
                throw FormatError.invalidValue(file: file, field: key.rawValue, expected: "at most \(limit)", found: "\(v)")
            }
        } else {
            guard tiedEmbeddings else {
                throw FormatError.unsupported(file: file, field: "tie_word_embeddings", value: "false (GPT-2 ties its head to wte)")
            }
        }
    }

    /// Reads and validates `config.json`, turning every decoding failure into a typed error that names
    /// the file and the field.
    public static func load(from url: URL) throws -> ModelConfig {
        let file = url.path
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw FormatError.io(file: file, reason: "cannot read: \(error.localizedDescription)")
        }
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: data)
        } catch let error as DecodingError {
            throw FormatError(decoding: error, file: file)
        } catch {
            throw FormatError.invalidHeader(file: file, field: "(json)", reason: "\(error)")
        }
        try config.validate(file: file)
        return config
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}

extension FormatError {
    /// Maps Foundation's decoding errors to a line that names the file and the JSON field.
    public init(decoding error: DecodingError, file: String) {
        func path(_ p: [CodingKey]) -> String {
            p.isEmpty ? "(top level)" : p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let ctx):
            self = .invalidValue(file: file, field: path(ctx.codingPath + [key]), expected: "a value", found: "nothing (missing key)")
        case .typeMismatch(let type, let ctx):
            self = .invalidValue(file: file, field: path(ctx.codingPath), expected: "\(type)", found: ctx.debugDescription)
        case .valueNotFound(let type, let ctx):
            self = .invalidValue(file: file, field: path(ctx.codingPath), expected: "\(type)", found: "null")
        case .dataCorrupted(let ctx):
            self = .invalidHeader(file: file, field: path(ctx.codingPath), reason: ctx.debugDescription)
        @unknown default:
            self = .invalidHeader(file: file, field: "(json)", reason: "\(error)")
        }
    }
}
