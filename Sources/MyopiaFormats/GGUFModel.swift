import Foundation
import MyopiaSupport
import MyopiaKernels
import MyopiaModel

// A llama.cpp GGUF file → a Transformer of the matching family under Hugging Face names, dequantised
// to fp32. The architectures read (`general.architecture`) and what each becomes:
//
//   llama    → llama     q/k rows permuted back (below)
//   qwen2    → qwen2     biases on q, k, v (blk.{l}.attn_q.bias, …)
//   qwen3    → qwen3     per-head q/k RMSNorm (attn_q_norm, attn_k_norm); head size from key_length
//   gemma2   → gemma2    four norms per block, norm weights stored as 1 + w (1 is taken off here),
//                        soft-caps, a sliding window on even layers, GeGLU
//
//   GGUF tensor                     shape (torch order)   Hugging Face parameter
//   token_embd.weight               (V, C)                model.embed_tokens.weight
//   output.weight (optional)        (V, C)                lm_head.weight (absent: the head is tied)
//   output_norm.weight              (C)                   model.norm.weight
//   blk.{l}.attn_norm.weight        (C)                   model.layers.{l}.input_layernorm.weight
//   blk.{l}.attn_q.weight / .bias   (NH·HS, C)            ….self_attn.q_proj.weight / .bias
//   blk.{l}.attn_k / attn_v         (NKV·HS, C)           ….self_attn.k_proj / v_proj
//   blk.{l}.attn_output.weight      (C, NH·HS)            ….self_attn.o_proj.weight
//   blk.{l}.attn_q_norm / k_norm    (HS)                  ….self_attn.q_norm / k_norm.weight (qwen3)
//   blk.{l}.post_attention_norm     (C)                   ….post_attention_layernorm (gemma2)
//   blk.{l}.ffn_norm.weight         (C)                   ….post_attention_layernorm (gemma2: pre_feedforward_layernorm)
//   blk.{l}.post_ffw_norm.weight    (C)                   ….post_feedforward_layernorm (gemma2)
//   blk.{l}.ffn_gate/up.weight      (F, C)                ….mlp.gate_proj / up_proj.weight
//   blk.{l}.ffn_down.weight         (C, F)                ….mlp.down_proj.weight
//
// Converter fix-ups (llama.cpp's convert_hf_to_gguf.py), undone here as transformers' GGUF loader
// undoes them:
// - llama: llama.cpp applies RoPE to interleaved pairs (2i, 2i+1), so its converter reorders the
//   rows of q and k within each head: GGUF row h·HS + 2i + j holds Hugging Face row h·HS + j·HS/2 + i.
//   Only llama is permuted; qwen2, qwen3 and gemma2 are stored in Hugging Face's order.
// - gemma2: every norm weight is stored with 1 added (llama.cpp computes x̂·w, Hugging Face x̂·(1+w)).
// - gemma2 metadata: gemma2.attn_logit_softcapping and gemma2.final_logit_softcapping (absent: 50
//   and 30, llama.cpp's defaults), gemma2.attention.sliding_window (absent: 4096) on the even layers.
//   There is no key for query_pre_attn_scalar: it is inferred as llama.cpp's Gemma 2 graph does —
//   C / NH for the 46-layer model (Gemma 2 27B, whose config says 144 = 4608 / 32), else the head
//   size (gemma2.attention.key_length: 256 for 2B and 9B, as their configs say).
// - The head size is {arch}.attention.key_length, else (llama) {arch}.rope.dimension_count, else C / NH.

public enum GGUFModel {
    /// The architectures Myopia reads, each with the family it becomes.
    public static let architectures: [String: ModelConfig.Family] = [
        "llama": .llama, "qwen2": .qwen2, "qwen3": .qwen3, "gemma2": .gemma2,
    ]

    /// Reads `url` into a model of its family. `tokenizer` is recorded in its config (the name
    /// `Tokenizers.load` resolves: the GGUF's own tokenizer by default).
    public static func load(from url: URL, tokenizer: String? = nil) throws -> Transformer {
        try load(try GGUFFile(contentsOf: url), tokenizer: tokenizer ?? url.path)
    }

    public static func load(_ file: GGUFFile, tokenizer: String?) throws -> Transformer {
        let config = try self.config(file, tokenizer: tokenizer)
        try checkFileHoldsModel(config, file)
        let model = Transformer(config: config)
        let store = model.params
        var keys: [String: String] = [:]
        let gemma = config.family == .gemma2
        for (gguf, hf) in tensorNames(config) {
            guard let entry = store.entry(hf) else { continue }
            let destination = UnsafeMutableBufferPointer(start: store.weights + entry.offset, count: entry.count)
            try file.copyFloats(gguf, into: destination)
            if config.family == .llama && (hf.hasSuffix("q_proj.weight") || hf.hasSuffix("k_proj.weight")) {
                unpermuteRows(destination, heads: entry.shape[0] / config.headSize, headSize: config.headSize,
                              columns: entry.shape[1])
            }
            if gemma && gguf.hasSuffix("norm.weight") {
                for i in destination.indices { destination[i] -= 1 }
            }
            keys[hf] = gguf
        }
        model.checkpointKeys = keys
        return model
    }

    /// The projections and the head of `model` (loaded from `file`) that the file stores as Q8_0,
    /// Q4_0, Q4_1, Q5_0, Q5_1 or a K-quant (Q2_K–Q6_K), kept in those blocks for decoding (`Transformer.quantizedDecoding`), with
    /// llama's q/k rows put back in Hugging Face's order as `load` puts the floats. Tensors of other
    /// types are left out: decoding reads their fp32 parameters.
    public static func quantizedWeights(_ file: GGUFFile, for model: Transformer) throws -> QuantizedWeights {
        let config = model.config, store = model.params
        var matrices: [Int: QuantizedMatrix] = [:]
        for (gguf, hf) in tensorNames(config) {
            let head = hf == "lm_head.weight" || (hf == "model.embed_tokens.weight" && config.tiedEmbeddings)
            guard head || hf.hasSuffix("_proj.weight"), let entry = store.entry(hf), entry.shape.count == 2,
                  let info = file[gguf], let format = quantizedFormat(info.type) else { continue }
            let rows = entry.shape[0], columns = entry.shape[1], hs = config.headSize, half = hs / 2
            let permuted = config.family == .llama && (hf.hasSuffix("q_proj.weight") || hf.hasSuffix("k_proj.weight"))
            matrices[entry.offset] = try file.withBytes(of: gguf) { bytes in
                // HF row h·HS + j·HS/2 + i is GGUF row h·HS + 2i + j (unpermuteRows).
                QuantizedMatrix(format: format, rows: rows, columns: columns, data: bytes) { r in
                    permuted ? r / hs * hs + 2 * (r % hs % half) + r % hs / half : r
                }
            }
        }
        return QuantizedWeights(matrices)
    }

    /// The block format of `QuantizedMatrix` that a ggml type is, if any.
    static func quantizedFormat(_ type: GGUFTensorType) -> QuantizedMatrix.Format? {
        switch type {
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q5_0: return .q5_0
        case .q5_1: return .q5_1
        case .q2_K: return .q2_K
        case .q3_K: return .q3_K
        case .q4_K: return .q4_K
        case .q5_K: return .q5_K
        case .q6_K: return .q6_K
        default: return nil
        }
    }

    /// The model's shape from the `<arch>.*` metadata.
    public static func config(_ file: GGUFFile, tokenizer: String?) throws -> ModelConfig {
        let arch = try file.string("general.architecture")
        guard let family = architectures[arch] else {
            throw InputError.unsupported(file: file.source, field: "metadata \"general.architecture\"",
                                          value: "\(arch) (Myopia reads \(architectures.keys.sorted().joined(separator: ", ")))")
        }
        let embedding = try tensor(file, "token_embd.weight")
        guard embedding.torchShape.count == 2 else {
            throw InputError.invalidValue(file: file.source, field: "tensor \"token_embd.weight\" shape",
                                           expected: "two dimensions (V, C)", found: "\(embedding.torchShape)")
        }
        let heads = try file.int("\(arch).attention.head_count")
        let dModel = try file.int("\(arch).embedding_length")
        let nLayers = try file.int("\(arch).block_count")
        var headDim = try file.int("\(arch).attention.key_length", default: -1)
        if headDim < 0, arch == "llama" { headDim = try file.int("llama.rope.dimension_count", default: -1) }
        if headDim < 0 { headDim = heads > 0 ? dModel / heads : 0 }
        var config = ModelConfig.llama(
            vocabSize: embedding.torchShape[0],
            maxPositions: try file.int("\(arch).context_length"),
            dModel: dModel,
            nLayers: nLayers,
            nHeads: heads,
            nKVHeads: try file.int("\(arch).attention.head_count_kv", default: heads),
            headDim: headDim,
            dMLP: try file.int("\(arch).feed_forward_length"),
            ropeTheta: try file.double("\(arch).rope.freq_base", default: 10_000),
            rmsNormEps: try file.double("\(arch).attention.layer_norm_rms_epsilon", default: 1e-5),
            tiedEmbeddings: file["output.weight"] == nil,
            tokenizer: tokenizer)
        config.family = family
        if family == .gemma2 {
            config.activation = "gelu_pytorch_tanh"
            config.attentionSoftcap = try file.double("gemma2.attn_logit_softcapping", default: 50)
            config.finalSoftcap = try file.double("gemma2.final_logit_softcapping", default: 30)
            config.slidingWindow = try file.int("gemma2.attention.sliding_window", default: 4096)
            if (1...(1 << 20)).contains(nLayers) { config.slidingLayers = (0..<nLayers).map { $0 % 2 == 0 } }
            config.queryPreAttentionScalar = Double(nLayers == 46 && heads > 0 ? dModel / heads : headDim)
        }
        config.bosTokenID = try? file.int("tokenizer.ggml.bos_token_id")
        config.eosTokenID = try? file.int("tokenizer.ggml.eos_token_id")
        if let scaling = try? file.string("\(arch).rope.scaling.type"), scaling != "none" {
            throw InputError.unsupported(file: file.source, field: "metadata \"\(arch).rope.scaling.type\"",
                                          value: "\(scaling) (Myopia implements plain RoPE)")
        }
        do { try config.validate(file: file.source) } catch let error as InputError {
            throw Self.namingMetadata(error, arch: arch)
        }
        try Checkpoint.checkRotaryTables(config, file: file.source, field: "metadata \"\(arch).context_length\"")
        return config
    }

    /// The metadata key (after "<arch>.") each config.json field comes from.
    static let metadataKeys = [
        "vocab_size": "tensor \"token_embd.weight\" shape", "max_position_embeddings": "context_length",
        "hidden_size": "embedding_length", "num_hidden_layers": "block_count",
        "num_attention_heads": "attention.head_count", "num_key_value_heads": "attention.head_count_kv",
        "head_dim": "attention.key_length", "intermediate_size": "feed_forward_length",
        "rms_norm_eps": "attention.layer_norm_rms_epsilon", "rope_theta": "rope.freq_base",
        "sliding_window": "attention.sliding_window", "attn_logit_softcapping": "attn_logit_softcapping",
        "final_logit_softcapping": "final_logit_softcapping",
    ]

    /// A config check's error, naming the GGUF metadata key rather than the config.json field.
    static func namingMetadata(_ error: InputError, arch: String) -> InputError {
        guard case .invalidValue(let file, let field, let expected, let found) = error, let key = metadataKeys[field] else { return error }
        return .invalidValue(file: file, field: key.hasPrefix("tensor") ? key : "metadata \"\(arch).\(key)\"", expected: expected, found: found)
    }

    /// Every tensor the metadata implies must be in the file with its shape before the model is
    /// allocated, so a header claiming a huge model is refused rather than allocated.
    static func checkFileHoldsModel(_ config: ModelConfig, _ file: GGUFFile) throws {
        guard config.nLayers <= file.tensors.count else {
            throw InputError.invalidValue(file: file.source, field: "metadata \"\(config.family.rawValue).block_count\"",
                                           expected: "at most \(file.tensors.count) (the tensors in the file)", found: "\(config.nLayers)")
        }
        let shapes = Dictionary(Transformer.layout(config), uniquingKeysWith: { a, _ in a })
        for (gguf, hf) in tensorNames(config) {
            guard let shape = shapes[hf] else { continue }
            guard let info = file[gguf] else { throw InputError.missing(file: file.source, field: "tensor \"\(gguf)\"") }
            guard info.torchShape == shape else {
                throw InputError.invalidValue(file: file.source, field: "tensor \"\(gguf)\" shape",
                                               expected: "\(shape) (from the metadata)", found: "\(info.torchShape)")
            }
        }
    }

    /// (GGUF name, Hugging Face name) for every parameter of `config`'s model.
    static func tensorNames(_ config: ModelConfig) -> [(String, String)] {
        Transformer.layout(config).compactMap { hf, _ in ggufName(hf, family: config.family).map { ($0, hf) } }
    }

    /// The GGUF name of a Hugging Face parameter (llama.cpp's tensor map), nil for one GGUF lacks.
    static func ggufName(_ hf: String, family: ModelConfig.Family) -> String? {
        switch hf {
        case "model.embed_tokens.weight": return "token_embd.weight"
        case "model.norm.weight": return "output_norm.weight"
        case "lm_head.weight": return "output.weight"
        default: break
        }
        let parts = hf.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers" else { return nil }
        let base = parts[3..<(parts.count - 1)].joined(separator: "."), kind = parts[parts.count - 1]
        let gemma = family == .gemma2
        let names: [String: String] = [
            "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
            "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
            "input_layernorm": "attn_norm",
            "post_attention_layernorm": gemma ? "post_attention_norm" : "ffn_norm",
            "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
        ]
        guard let name = names[base] else { return nil }
        return "blk.\(parts[2]).\(name).\(kind)"
    }

    /// Rows of each head from llama.cpp's order back to Hugging Face's:
    /// HF row h·HS + j·HS/2 + i = GGUF row h·HS + 2i + j.
    static func unpermuteRows(_ w: UnsafeMutableBufferPointer<Float>, heads: Int, headSize hs: Int, columns: Int) {
        let gguf = Array(w)
        let half = hs / 2
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let to = (h * hs + j * half + i) * columns, from = (h * hs + 2 * i + j) * columns
                    for col in 0..<columns { w[to + col] = gguf[from + col] }
                }
            }
        }
    }

    private static func tensor(_ file: GGUFFile, _ name: String) throws -> GGUFTensorInfo {
        guard let info = file[name] else { throw InputError.missing(file: file.source, field: "tensor \"\(name)\"") }
        return info
    }
}
