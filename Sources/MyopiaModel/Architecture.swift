// How a family's computation is put together, as data (docs/DESIGN.md §3). Forward, backward, every
// gradient flow, the horizon, cached decoding, named activations and training read this description;
// adding a family is a new description (and its config.json keys), not new branches through the model.

/// One family's structure: positions, norms and where they sit, attention options, the MLP, the
/// embedding and head, and the Hugging Face names of every parameter. `ModelConfig.architecture`
/// builds it from the family and the config's own options (soft-caps, windows, rotary fraction).
public struct Architecture: Equatable, Sendable {
    public enum Norm: String, Sendable { case layerNorm, rmsNorm }

    /// The MLP: `gelu(x·W_in)` (tanh or erf form), or gated `act(gate) ⊙ up` with silu (SwiGLU) or
    /// the tanh GELU (GeGLU).
    public enum MLP: String, Sendable {
        case geluTanh, geluErf, swiGLU, geGLU
        public var isGated: Bool { self == .swiGLU || self == .geGLU }
    }

    /// RMSNorm on queries and keys after their projections, before RoPE: over each head's HS values
    /// with one weight of HS shared by the heads (Qwen3), or over the whole projection (NH·HS, or
    /// NKV·HS for keys) with a weight as wide (OLMo 2).
    public enum QKNorm: String, Sendable { case none, perHead, wholeProjection }

    /// How the checkpoint stores the query/key/value projection: one Conv1D `[C, 3C]` giving
    /// [q | k | v] (GPT-2), one nn.Linear `[3·NH·HS, C]` whose rows run head by head, each head's
    /// q, k, v in turn (GPT-NeoX), or three nn.Linear (q_proj, k_proj, v_proj).
    public enum QKVLayout: String, Sendable { case fusedConv1D, fusedPerHead, separate }

    /// GPT-2's learned positions (wpe) or rotary positions on q and k.
    public var learnedPositions: Bool
    public var norm: Norm
    /// The RMSNorm scale is `offset + w`: 0 for Llama, 1 for Gemma (which stores w with 1 taken off).
    public var normWeightOffset: Float = 0
    /// Which norms a block has: before attention (input_layernorm / ln_1), after attention on its
    /// output before the residual add, before the MLP, after the MLP on its output.
    public var preAttentionNorm = true
    public var postAttentionNorm = false
    public var preMLPNorm = true
    public var postMLPNorm = false
    /// x + attn(norm₁(x)) + mlp(norm₂(x)) (GPT-NeoX) instead of the MLP reading x + attn(·).
    public var parallelResidual = false
    public var qkvLayout: QKVLayout
    /// Biases on q, k, v (GPT-2, GPT-NeoX, Qwen2), on the attention output and on the MLP.
    public var qkvBias = false
    public var outputBias = false
    public var mlpBias = false
    public var qkNorm: QKNorm = .none
    public var mlp: MLP
    /// Weights stored as Conv1D `[in, out]` (GPT-2) rather than nn.Linear `[out, in]`.
    public var conv1D = false
    /// The token embedding is multiplied by √C, rounded to fp32, on the way in (Gemma).
    public var scalesEmbedding = false
    /// The Hugging Face embedding is `nn.Embedding(padding_idx: pad_token_id)`: that row gets no
    /// gradient from its lookups (every family read under Llama's keys; not GPT-2 or GPT-NeoX).
    public var embeddingHasPaddingRow = false
    public var keys: Keys

    /// The Hugging Face names of a family's parameters. A block's names follow `layerPrefix` and its
    /// index; a nil name is a part the family does not have.
    public struct Keys: Equatable, Sendable {
        public var embedding: String
        public var positions: String?
        public var layerPrefix: String
        public var finalNorm: String
        public var head: String
        public var norm1: String?
        /// The fused projection (GPT-2 `attn.c_attn`, GPT-NeoX `attention.query_key_value`), or q/k/v.
        public var qkv: String?
        public var q: String?, k: String?, v: String?
        public var qNorm: String?, kNorm: String?
        public var attnOut: String
        public var postAttentionNorm: String?
        public var norm2: String?
        public var postMLPNorm: String?
        /// c_fc, dense_h_to_4h or gate_proj.
        public var mlpIn: String
        public var up: String?
        public var mlpOut: String
    }

    /// The key prefix of trunk block l.
    public func prefix(layer l: Int) -> String { "\(keys.layerPrefix)\(l)." }

    /// The description of `family` before the config's options are applied.
    public static func base(_ family: ModelConfig.Family) -> Architecture {
        switch family {
        case .gpt2:
            return Architecture(
                learnedPositions: true, norm: .layerNorm, qkvLayout: .fusedConv1D, qkvBias: true, outputBias: true,
                mlpBias: true, mlp: .geluTanh, conv1D: true,
                keys: Keys(embedding: "wte.weight", positions: "wpe.weight", layerPrefix: "h.", finalNorm: "ln_f",
                           head: "lm_head.weight", norm1: "ln_1", qkv: "attn.c_attn", attnOut: "attn.c_proj",
                           norm2: "ln_2", mlpIn: "mlp.c_fc", mlpOut: "mlp.c_proj"))
        case .gptNeoX:
            return Architecture(
                learnedPositions: false, norm: .layerNorm, parallelResidual: true, qkvLayout: .fusedPerHead,
                qkvBias: true, outputBias: true, mlpBias: true, mlp: .geluErf,
                keys: Keys(embedding: "gpt_neox.embed_in.weight", layerPrefix: "gpt_neox.layers.",
                           finalNorm: "gpt_neox.final_layer_norm", head: "embed_out.weight", norm1: "input_layernorm",
                           qkv: "attention.query_key_value", attnOut: "attention.dense",
                           norm2: "post_attention_layernorm", mlpIn: "mlp.dense_h_to_4h", mlpOut: "mlp.dense_4h_to_h"))
        case .llama, .qwen2, .qwen3, .mistral, .gemma2, .olmo2:
            var a = Architecture(
                learnedPositions: false, norm: .rmsNorm, qkvLayout: .separate, mlp: .swiGLU,
                keys: Keys(embedding: "model.embed_tokens.weight", layerPrefix: "model.layers.", finalNorm: "model.norm",
                           head: "lm_head.weight", norm1: "input_layernorm", q: "self_attn.q_proj",
                           k: "self_attn.k_proj", v: "self_attn.v_proj", attnOut: "self_attn.o_proj",
                           norm2: "post_attention_layernorm", mlpIn: "mlp.gate_proj", up: "mlp.up_proj",
                           mlpOut: "mlp.down_proj"))
            a.embeddingHasPaddingRow = true
            switch family {
            case .qwen2:
                a.qkvBias = true
            case .qwen3:
                a.qkNorm = .perHead
            case .gemma2:
                // Sandwich: norms before and after both attention and the MLP.
                a.normWeightOffset = 1
                a.postAttentionNorm = true
                a.postMLPNorm = true
                a.mlp = .geGLU
                a.scalesEmbedding = true
                a.keys.postAttentionNorm = "post_attention_layernorm"
                a.keys.norm2 = "pre_feedforward_layernorm"
                a.keys.postMLPNorm = "post_feedforward_layernorm"
            case .olmo2:
                // Norms on the outputs of attention and the MLP only, and q/k norms over the projection.
                a.preAttentionNorm = false
                a.preMLPNorm = false
                a.postAttentionNorm = true
                a.postMLPNorm = true
                a.qkNorm = .wholeProjection
                a.keys.norm1 = nil
                a.keys.norm2 = nil
                a.keys.postAttentionNorm = "post_attention_layernorm"
                a.keys.postMLPNorm = "post_feedforward_layernorm"
            default:
                break
            }
            if a.qkNorm != .none {
                a.keys.qNorm = "self_attn.q_norm"
                a.keys.kNorm = "self_attn.k_norm"
            }
            return a
        }
    }

    /// One block's parameters in Hugging Face's state-dict order, names starting with `p`, for a
    /// model of `config` (C, F, heads). Norms are (C) weights, and biases for LayerNorm.
    func blockLayout(_ config: ModelConfig, prefix p: String) -> [(String, [Int])] {
        let c = config.dModel, f = config.dMLP, hs = config.headSize
        let nh = config.nHeads, nkv = config.kvHeads
        var out: [(String, [Int])] = []
        func linear(_ name: String, _ inC: Int, _ outC: Int, bias: Bool) {
            out.append((p + name + ".weight", conv1D ? [inC, outC] : [outC, inC]))
            if bias { out.append((p + name + ".bias", [outC])) }
        }
        func norm(_ name: String?, width: Int = c) {
            guard let name else { return }
            out.append((p + name + ".weight", [width]))
            if self.norm == .layerNorm { out.append((p + name + ".bias", [width])) }
        }
        func mlp() {
            linear(keys.mlpIn, c, f, bias: mlpBias)
            if let up = keys.up { linear(up, c, f, bias: mlpBias) }
            linear(keys.mlpOut, f, c, bias: mlpBias)
        }
        switch qkvLayout {
        case .fusedConv1D:
            // GPT-2's order: ln_1, c_attn, c_proj, ln_2, c_fc, c_proj.
            norm(keys.norm1)
            linear(keys.qkv!, c, (nh + 2 * nkv) * hs, bias: qkvBias)
            linear(keys.attnOut, nh * hs, c, bias: outputBias)
            norm(keys.norm2)
            mlp()
        case .fusedPerHead:
            // GPT-NeoX's order: input_layernorm, post_attention_layernorm, attention, mlp.
            norm(keys.norm1)
            norm(keys.norm2)
            linear(keys.qkv!, c, 3 * nh * hs, bias: qkvBias)
            linear(keys.attnOut, nh * hs, c, bias: outputBias)
            mlp()
        case .separate:
            // Llama's order: self_attn (q, k, v, o, norms), mlp, then the layer norms.
            linear(keys.q!, c, nh * hs, bias: qkvBias)
            linear(keys.k!, c, nkv * hs, bias: qkvBias)
            linear(keys.v!, c, nkv * hs, bias: qkvBias)
            linear(keys.attnOut, nh * hs, c, bias: outputBias)
            switch qkNorm {
            case .none: break
            case .perHead: norm(keys.qNorm, width: hs); norm(keys.kNorm, width: hs)
            case .wholeProjection: norm(keys.qNorm, width: nh * hs); norm(keys.kNorm, width: nkv * hs)
            }
            mlp()
            norm(keys.norm1)
            norm(keys.postAttentionNorm)
            norm(keys.norm2)
            norm(keys.postMLPNorm)
        }
        return out
    }
}
