import Foundation
import MyopiaSupport
import MyopiaModel

// A llama.cpp GGUF file (architecture `llama`) → a Llama-family Transformer under Hugging Face
// names, dequantised to fp32.
//
//   GGUF tensor                 shape (torch order)   Hugging Face parameter
//   token_embd.weight           (V, C)                model.embed_tokens.weight
//   output.weight (optional)    (V, C)                lm_head.weight (absent: the head is tied)
//   output_norm.weight          (C)                   model.norm.weight
//   blk.{l}.attn_norm.weight    (C)                   model.layers.{l}.input_layernorm.weight
//   blk.{l}.attn_q.weight       (NH·HS, C)            ….self_attn.q_proj.weight   (rows permuted, below)
//   blk.{l}.attn_k.weight       (NKV·HS, C)           ….self_attn.k_proj.weight   (rows permuted)
//   blk.{l}.attn_v.weight       (NKV·HS, C)           ….self_attn.v_proj.weight
//   blk.{l}.attn_output.weight  (C, NH·HS)            ….self_attn.o_proj.weight
//   blk.{l}.ffn_norm.weight     (C)                   ….post_attention_layernorm.weight
//   blk.{l}.ffn_gate/up.weight  (F, C)                ….mlp.gate_proj / up_proj.weight
//   blk.{l}.ffn_down.weight     (C, F)                ….mlp.down_proj.weight
//
// llama.cpp applies RoPE to interleaved pairs (2i, 2i+1), so its converter reorders the rows of
// q and k within each head: GGUF row h·HS + 2i + j holds Hugging Face row h·HS + j·HS/2 + i. The
// loader puts them back, so the model runs Hugging Face's half-split RoPE and saves a checkpoint
// that `LlamaForCausalLM` reads.

public enum GGUFModel {
    /// Reads `url` into a Llama-family model. `tokenizer` is recorded in its config (the name
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
        for (gguf, hf) in tensorNames(config) {
            guard let entry = store.entry(hf) else { continue }
            guard let info = file[gguf] else { throw InputError.missing(file: file.source, field: "tensor \"\(gguf)\"") }
            guard info.torchShape == entry.shape else {
                throw InputError.invalidValue(file: file.source, field: "tensor \"\(gguf)\" shape",
                                               expected: "\(entry.shape) (from the metadata)", found: "\(info.torchShape)")
            }
            let destination = UnsafeMutableBufferPointer(start: store.weights + entry.offset, count: entry.count)
            try file.copyFloats(gguf, into: destination)
            if hf.hasSuffix("q_proj.weight") || hf.hasSuffix("k_proj.weight") {
                unpermuteRows(destination, heads: entry.shape[0] / config.headSize, headSize: config.headSize,
                              columns: entry.shape[1])
            }
            keys[hf] = gguf
        }
        model.checkpointKeys = keys
        return model
    }

    /// The model's shape from the `llama.*` metadata.
    public static func config(_ file: GGUFFile, tokenizer: String?) throws -> ModelConfig {
        let arch = try file.string("general.architecture")
        guard arch == "llama" else {
            throw InputError.unsupported(file: file.source, field: "metadata \"general.architecture\"",
                                          value: "\(arch) (Myopia reads llama-architecture GGUF files)")
        }
        let embedding = try tensor(file, "token_embd.weight")
        guard embedding.torchShape.count == 2 else {
            throw InputError.invalidValue(file: file.source, field: "tensor \"token_embd.weight\" shape",
                                           expected: "two dimensions (V, C)", found: "\(embedding.torchShape)")
        }
        let heads = try file.int("llama.attention.head_count")
        let dModel = try file.int("llama.embedding_length")
        var config = ModelConfig.llama(
            vocabSize: embedding.torchShape[0],
            maxPositions: try file.int("llama.context_length"),
            dModel: dModel,
            nLayers: try file.int("llama.block_count"),
            nHeads: heads,
            nKVHeads: try file.int("llama.attention.head_count_kv", default: heads),
            headDim: try file.int("llama.rope.dimension_count", default: heads > 0 ? dModel / heads : 0),
            dMLP: try file.int("llama.feed_forward_length"),
            ropeTheta: try file.double("llama.rope.freq_base", default: 10_000),
            rmsNormEps: try file.double("llama.attention.layer_norm_rms_epsilon", default: 1e-5),
            tiedEmbeddings: file["output.weight"] == nil,
            tokenizer: tokenizer)
        config.bosTokenID = try? file.int("tokenizer.ggml.bos_token_id")
        config.eosTokenID = try? file.int("tokenizer.ggml.eos_token_id")
        if let scaling = try? file.string("llama.rope.scaling.type"), scaling != "none" {
            throw InputError.unsupported(file: file.source, field: "metadata \"llama.rope.scaling.type\"",
                                          value: "\(scaling) (Myopia implements plain RoPE)")
        }
        do { try config.validate(file: file.source) } catch let error as InputError {
            throw Self.namingMetadata(error)
        }
        try Checkpoint.checkRotaryTables(config, file: file.source, field: "metadata \"llama.context_length\"")
        return config
    }

    /// The metadata key each config.json field of a Llama model comes from here.
    static let metadataKeys = [
        "vocab_size": "tensor \"token_embd.weight\" shape", "max_position_embeddings": "llama.context_length",
        "hidden_size": "llama.embedding_length", "num_hidden_layers": "llama.block_count",
        "num_attention_heads": "llama.attention.head_count", "num_key_value_heads": "llama.attention.head_count_kv",
        "head_dim": "llama.rope.dimension_count", "intermediate_size": "llama.feed_forward_length",
        "rms_norm_eps": "llama.attention.layer_norm_rms_epsilon", "rope_theta": "llama.rope.freq_base",
    ]

    /// A config check's error, naming the GGUF metadata key rather than the config.json field.
    static func namingMetadata(_ error: InputError) -> InputError {
        guard case .invalidValue(let file, let field, let expected, let found) = error, let key = metadataKeys[field] else { return error }
        return .invalidValue(file: file, field: key.hasPrefix("tensor") ? key : "metadata \"\(key)\"", expected: expected, found: found)
    }

    /// Every tensor the metadata implies must be in the file with its shape before the model is
    /// allocated, so a header claiming a huge model is refused rather than allocated.
    static func checkFileHoldsModel(_ config: ModelConfig, _ file: GGUFFile) throws {
        guard config.nLayers <= file.tensors.count else {
            throw InputError.invalidValue(file: file.source, field: "metadata \"llama.block_count\"",
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

    /// (GGUF name, Hugging Face name) for every tensor of `config`'s model.
    static func tensorNames(_ config: ModelConfig) -> [(String, String)] {
        var names = [("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight")]
        if !config.tiedEmbeddings { names.append(("output.weight", "lm_head.weight")) }
        for l in 0..<config.nLayers {
            let g = "blk.\(l).", h = "model.layers.\(l)."
            names += [
                (g + "attn_norm.weight", h + "input_layernorm.weight"),
                (g + "attn_q.weight", h + "self_attn.q_proj.weight"),
                (g + "attn_k.weight", h + "self_attn.k_proj.weight"),
                (g + "attn_v.weight", h + "self_attn.v_proj.weight"),
                (g + "attn_output.weight", h + "self_attn.o_proj.weight"),
                (g + "ffn_norm.weight", h + "post_attention_layernorm.weight"),
                (g + "ffn_gate.weight", h + "mlp.gate_proj.weight"),
                (g + "ffn_up.weight", h + "mlp.up_proj.weight"),
                (g + "ffn_down.weight", h + "mlp.down_proj.weight"),
            ]
        }
        return names
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
