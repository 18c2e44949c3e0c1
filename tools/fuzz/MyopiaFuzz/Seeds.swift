// Seed files for each fuzz target, and the companion files a target needs beside its input
// (a vocab.json for the merges.txt target, weights for the config.json target).
//
// `myopia-fuzz seeds` writes these into tools/fuzz/corpus/TARGET/, where they are committed; a run
// reads the committed corpus (plus any file a person adds there). Everything is small: the
// largest seed is a 31 KB Llama GGUF with an embedded tokenizer.

import Foundation
import Myopia

public enum Seeds {
    // MARK: - A tiny byte-level BPE vocabulary

    /// GPT-2's byte-to-unicode table (bytes 33–126, 161–172, 174–255 as themselves, the other 68
    /// in order from U+0100).
    static let byteLevel: [String] = {
        var out = [String](repeating: "", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let scalar: UInt32
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                scalar = UInt32(b)
            } else {
                scalar = 256 + n
                n += 1
            }
            out[b] = String(Unicode.Scalar(scalar)!)
        }
        return out
    }()

    /// Merges in rank order, over the byte-level strings; each pair's concatenation is a token.
    static let merges = ["Ġ t", "h e", "Ġt he", "Ġ a", "i n", "Ġ s", "e r", "o n", "Ġa n", "Ġan d", "Ġ o", "Ġo f",
                         "Ġ Ġ", "ĠĠ Ġ", "1 2", "Ã ©"]

    /// 256 byte tokens, the merged tokens, then `<|endoftext|>`.
    public static let tokens: [String] = {
        var tokens = byteLevel
        for m in merges {
            let parts = m.split(separator: " ", omittingEmptySubsequences: false)
            tokens.append(String(parts[0]) + String(parts[1]))
        }
        tokens.append("<|endoftext|>")
        return tokens
    }()

    public static var vocabJSON: [UInt8] {
        var json = "{"
        for (id, token) in tokens.enumerated() {
            json += (id == 0 ? "" : ", ") + jsonString(token) + ": \(id)"
        }
        return Array((json + "}\n").utf8)
    }

    public static var mergesTXT: [UInt8] { Array(("#version: 0.2\n" + merges.joined(separator: "\n") + "\n").utf8) }

    /// The same vocabulary as tiktoken ranks: "base64(bytes) rank" per line, merged tokens after the bytes.
    public static var tiktoken: [UInt8] {
        var lines: [String] = []
        for b in 0..<256 { lines.append(Data([UInt8(b)]).base64EncodedString() + " \(b)") }
        var rank = 256
        for m in merges {
            let bytes = m.split(separator: " ").flatMap { bytesOf(String($0)) }
            lines.append(Data(bytes).base64EncodedString() + " \(rank)")
            rank += 1
        }
        return Array((lines.joined(separator: "\n") + "\n").utf8)
    }

    private static func bytesOf(_ token: String) -> [UInt8] {
        token.unicodeScalars.map { s in UInt8(byteLevel.firstIndex(of: String(s))!) }
    }

    /// The tokenizer the corpus target encodes with (GPT-2's pre-tokenizer, or SmolLM's).
    public static func tokenizer(_ pre: PreTokenizer) throws -> BPETokenizer {
        try BPETokenizer(tokens: tokens, merges: merges, preTokenizer: pre, name: "fuzz-\(pre)", source: "fuzz tokenizer")
    }

    // MARK: - Text

    static let english = """
        The quick brown fox jumps over the lazy dog; and then the dog, being lazy, sleeps.
        To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer
        the slings and arrows of outrageous fortune, or to take arms against a sea of troubles.
        Numbers: 12, 123, 1234567, 3.14159; e-mail a@b.example; don't we'll they're I'm you've.

        """

    /// The special tokens of the families whose tokenizer.json the seeds hold, inside text.
    static let specialText = "<|endoftext|>x<s> </s>[INST]<bos><eos><|begin_of_text|><|im_start|>user<|im_end|> <mask> [word] Hello World<unk>\n"

    static let unicode = "Café, naïve façade — 日本語のテキスト, emoji 😀👍🏽, Ελληνικά, עברית, \u{0301}combining, zero\u{200B}width\r\nCRLF line\r\n\ttab\u{00A0}nbsp\n"

    // MARK: - Seeds per target

    /// (file name, bytes) for every seed of `target`, made in memory. `fixtures` is Tests/Fixtures,
    /// whose real-world files (a Python-written safetensors, a gguf-py GGUF) are added when present.
    public static func make(_ target: String, fixtures: URL? = nil) throws -> [(String, [UInt8])] {
        func fixture(_ path: String) -> [UInt8]? {
            guard let fixtures else { return nil }
            return try? [UInt8](Data(contentsOf: fixtures.appendingPathComponent(path)))
        }
        switch target {
        case "safetensors":
            var out: [(String, [UInt8])] = [
                ("f32.safetensors", [UInt8](try SafeTensorsWriter.encode([
                    .init(name: "wte.weight", shape: [4, 3], data: (0..<12).map(Float.init)),
                    .init(name: "ln_f.bias", shape: [3], data: [0.5, -1, 2]),
                    .init(name: "scalar", shape: [], data: [7]),
                    .init(name: "empty", shape: [0, 5], data: []),
                ], metadata: ["format": "pt", "note": "fuzz seed"]))),
                ("empty.safetensors", [UInt8](try SafeTensorsWriter.encode([]))),
            ]
            if let python = fixture("safetensors/python_mixed.safetensors") { out.append(("python_mixed.safetensors", python)) }
            return out
        case "gguf":
            var out = [("llama.gguf", llamaGGUF(withTokenizer: true)), ("blocks.gguf", blocksGGUF())]
            if let tiny = fixture("gguf/tiny.gguf") { out.append(("tiny.gguf", tiny)) }
            if let quants = fixture("gguf/quants.gguf") { out.append(("quants.gguf", quants)) }
            return out
        case "gguf-model":
            // The architectures' GGUFs from gguf-py (tools/reference/gguf_families_reference.py):
            // qwen2 biases, qwen3 q/k norms, gemma2's norms and soft-caps, K-quant tensors.
            var out = [("llama.gguf", llamaGGUF(withTokenizer: false))]
            for arch in ["llama", "qwen2", "qwen3", "gemma2"] {
                if let file = fixture("gguf_families/\(arch)/model.gguf") { out.append(("\(arch)-kquants.gguf", file)) }
            }
            return out
        case "gguf-tokenizer":
            var out = [("tokenizer.gguf", tokenizerGGUF(tokenTypes: true)), ("tokenizer-untyped.gguf", tokenizerGGUF(tokenTypes: false))]
            // SentencePiece (Llama's scores, Gemma's positions) and byte-level with the qwen2 pre-tokenizer.
            for name in ["llama_sentencepiece", "gemma2", "qwen2"] {
                if let file = fixture("gguf_families/\(name)/model.gguf") { out.append(("\(name).gguf", file)) }
            }
            return out
        case "config-json":
            var out = try [("gpt2.json", [UInt8](tinyGPT2().savedConfig.jsonData())),
                           ("llama.json", [UInt8](tinyLlama().savedConfig.jsonData())),
                           ("hf-gpt2.json", Array(hfGPT2Config.utf8))]
            for family in ModelConfig.Family.allCases where family != .gpt2 && family != .llama {
                out.append(("\(family.rawValue).json", [UInt8](try tinyModel(family).savedConfig.jsonData())))
            }
            return out
        case "train-config":
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            return [("full.json", [UInt8](try encoder.encode(TrainConfig()))),
                    ("partial.json", Array(#"{"d-model": 48, "heads": 4, "seq_len": 20, "lr": 0.002, "family": "llama", "kv_heads": 2, "flow": "beta=0.3"}"#.utf8)),
                    ("game.json", Array(#"{"game": "consequence", "consequence_weight": 0.5, "consequence-horizon": 3, "consequence_positions": 4, "consequence_estimator": "exact", "seq_len": 16}"#.utf8))]
        case "trainer-state":
            return [("trainer_state.json", try trainerState())]
        case "vocab-json":
            return [("vocab.json", vocabJSON)]
        case "merges-txt":
            return [("merges.txt", mergesTXT)]
        case "tiktoken":
            return [("ranks.tiktoken", tiktoken)]
        case "tokenizer-json":
            // The tiny vocabulary above as Llama 3 writes its tokenizer.json, two small
            // character vocabularies with every other kind of block (a small vocabulary leaves the
            // mutations more of the blocks), and two of the reference fixtures
            // (tools/reference/tokenizer_json_reference.py): Gemma's and the byte-level options.
            var out = [("tiny.json", tinyTokenizerJSON), ("sentencepiece.json", sentencePieceJSON), ("options.json", optionsJSON)]
            for family in ["gemma", "features_bytelevel"] {
                if let file = fixture("tokenizer_json/\(family)/tokenizer.json") { out.append(("\(family).json", file)) }
            }
            return out
        case "corpus":
            return [("english.txt", Array(english.utf8)), ("unicode.txt", Array(unicode.utf8)),
                    ("long-line.txt", Array((String(repeating: "word ", count: 400) + "\n" + String(repeating: "9", count: 300)).utf8)),
                    ("two-bytes.txt", Array("a\n".utf8))]
        case "sharded-index":
            return try shardedIndexSeeds(fixtures: fixtures ?? FuzzTarget.repositoryFixtures)
        case "selftest":
            return ["OK", "CRASH", "HANG", "ALLOC", "BAD"].map { ($0.lowercased(), Array($0.utf8)) }
        default:
            throw InputError.invalidValue(file: "myopia-fuzz", field: "target", expected: "a known target", found: target)
        }
    }

    // MARK: - sharded-index

    /// The indexes transformers wrote for the sharded fixtures (Tests/Fixtures/sharded), and the
    /// Llama one compact and without metadata (total_size is optional).
    static func shardedIndexSeeds(fixtures: URL) throws -> [(String, [UInt8])] {
        func index(_ name: String) throws -> [UInt8] {
            [UInt8](try Data(contentsOf: fixtures.appendingPathComponent("sharded/\(name)/hf/\(Checkpoint.indexFile)")))
        }
        let llama = try index("llama_bf16")
        var json = try JSONSerialization.jsonObject(with: Data(llama)) as? [String: Any] ?? [:]
        json["metadata"] = nil
        let compact = [UInt8](try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))
        return [("llama-bf16.json", llama), ("gpt2-f16.json", try index("gpt2_f16")), ("llama-no-metadata.json", compact)]
    }

    /// The tiny vocabulary and merges as a tokenizer.json with Llama 3's blocks: a Split with its
    /// regex, ByteLevel, a BOS put first, `<|endoftext|>` as a special token.
    public static var tinyTokenizerJSON: [UInt8] {
        let vocab = tokens.enumerated().map { jsonString($0.element) + ":\($0.offset)" }.joined(separator: ",")
        let pairs = merges.map { m in "[" + m.split(separator: " ").map { jsonString(String($0)) }.joined(separator: ",") + "]" }
        let regex = jsonString(#"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#)
        let eot = tokens.count - 1
        let json = """
            {"version":"1.0","truncation":null,"padding":null,
            "added_tokens":[{"id":\(eot),"content":"<|endoftext|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
            "normalizer":{"type":"NFC"},
            "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":\(regex)},"behavior":"Isolated","invert":false},
            {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]},
            "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|endoftext|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
            "pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],
            "special_tokens":{"<|endoftext|>":{"id":"<|endoftext|>","ids":[\(eot)],"tokens":["<|endoftext|>"]}}},
            "decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
            "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,
            "fuse_unk":false,"byte_fallback":false,"ignore_merges":true,"vocab":{\(vocab)},"merges":[\(pairs.joined(separator: ","))]}}

            """
        return Array(json.utf8)
    }

    /// A character vocabulary: the letters, a few marks, "▁", and tokens the merges make.
    static let characterMerges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "a"), ("i", "n"), ("▁a", "n"), ("▁an", "d"), ("o", "n"), ("e", "r")]

    /// The vocabulary object's members, and how many there are.
    static func characterVocabulary(first: [String]) -> (json: String, count: Int) {
        var tokens = first + "abcdefghijklmnopqrstuvwxyzTH.,'!?0123456789".map(String.init) + ["▁"]
        for (l, r) in characterMerges { tokens.append(l + r) }
        return (tokens.enumerated().map { jsonString($0.element) + ":\($0.offset)" }.joined(separator: ","), tokens.count)
    }

    static var characterMergesJSON: String {
        characterMerges.map { "[" + jsonString($0.0) + "," + jsonString($0.1) + "]" }.joined(separator: ",")
    }

    /// Llama 2's blocks (Prepend and Replace, byte fallback for a few bytes, unk fused, <s> first,
    /// the Replace/ByteFallback/Fuse/Strip decoder) on the character vocabulary.
    public static var sentencePieceJSON: [UInt8] {
        let bytes = ["<0x0A>", "<0xE2>", "<0x98>", "<0x83>", "<0xF0>", "<0x9F>"]
        let json = """
            {"version":"1.0","truncation":null,"padding":null,
            "added_tokens":[{"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
            {"id":1,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
            {"id":2,"content":"</s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
            "normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
            "pre_tokenizer":null,
            "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
            "pair":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"<s>","type_id":1}},{"Sequence":{"id":"B","type_id":1}}],
            "special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}},
            "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},
            {"type":"Strip","content":" ","start":1,"stop":0}]},
            "model":{"type":"BPE","dropout":null,"unk_token":"<unk>","continuing_subword_prefix":null,"end_of_word_suffix":null,
            "fuse_unk":true,"byte_fallback":true,"ignore_merges":false,"vocab":{\(characterVocabulary(first: ["<unk>", "<s>", "</s>"] + bytes).json)},
            "merges":[\(characterMergesJSON)]}}

            """
        return Array(json.utf8)
    }

    /// The remaining blocks on the character vocabulary: NFKC, Lowercase and Strip; a literal
    /// Split, Digits and Metaspace; added tokens with lstrip, rstrip, single_word and normalized;
    /// BOS and EOS; the Metaspace decoder; an unknown token fused, ignore_merges.
    public static var optionsJSON: [UInt8] {
        let (vocabulary, count) = characterVocabulary(first: ["<unk>", "<s>", "</s>"])
        let json = """
            {"version":"1.0","truncation":null,"padding":null,
            "added_tokens":[{"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
            {"id":1,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
            {"id":2,"content":"</s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
            {"id":\(count),"content":"<mask>","single_word":false,"lstrip":true,"rstrip":false,"normalized":false,"special":true},
            {"id":\(count + 1),"content":"[word]","single_word":true,"lstrip":false,"rstrip":true,"normalized":false,"special":false},
            {"id":\(count + 2),"content":"Hello World","single_word":false,"lstrip":false,"rstrip":false,"normalized":true,"special":false}],
            "normalizer":{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Lowercase"},{"type":"Strip","strip_left":false,"strip_right":true}]},
            "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true},
            {"type":"Split","pattern":{"String":"-"},"behavior":"Removed","invert":false},{"type":"Digits","individual_digits":false}]},
            "post_processor":{"type":"Sequence","processors":[{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
            {"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},
            {"SpecialToken":{"id":"</s>","type_id":0}}],"pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],
            "special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]},"</s>":{"id":"</s>","ids":[2],"tokens":["</s>"]}}}]},
            "decoder":{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true},
            "model":{"type":"BPE","dropout":null,"unk_token":"<unk>","continuing_subword_prefix":"","end_of_word_suffix":"",
            "fuse_unk":true,"byte_fallback":false,"ignore_merges":true,"vocab":{\(vocabulary)},"merges":[\(characterMergesJSON)]}}

            """
        return Array(json.utf8)
    }

    // MARK: - Models

    /// GPT-2, 1 layer, d 8, 2 heads, 16 positions, the byte vocabulary.
    public static func tinyGPT2() -> Transformer {
        let model = Transformer(config: ModelConfig(vocabSize: 256, maxPositions: 16, dModel: 8, nLayers: 1, nHeads: 2))
        model.initialize(seed: 1)
        return model
    }

    /// Llama, 1 layer, d 8, 2 heads, 1 key/value head, SwiGLU 16, tied.
    public static func tinyLlama() -> Transformer {
        let model = Transformer(config: .llama(vocabSize: 256, maxPositions: 16, dModel: 8, nLayers: 1, nHeads: 2, nKVHeads: 1,
                                               dMLP: 16, tiedEmbeddings: true))
        model.initialize(seed: 2)
        return model
    }

    /// A model of `family` for the config-json target's weights: 1 layer, d 16, 2 heads (GQA with 1
    /// key/value head where the family has it), head size 8, the byte vocabulary; Gemma 2 with a
    /// window and both caps, so their keys are in its seed.
    public static func tinyModel(_ family: ModelConfig.Family) -> Transformer {
        switch family {
        case .gpt2: return tinyGPT2()
        case .llama: return tinyLlama()
        default:
            var config: ModelConfig
            if family == .gptNeoX {
                config = ModelConfig(vocabSize: 256, maxPositions: 16, dModel: 16, nLayers: 1, nHeads: 2, dMLP: 32)
                config.family = .gptNeoX
                config.activation = "gelu"
                config.rotaryFraction = 0.25
                config.tiedEmbeddings = false
            } else {
                config = .llama(vocabSize: 256, maxPositions: 16, dModel: 16, nLayers: 1, nHeads: 2, nKVHeads: 1, dMLP: 24)
                config.family = family
                if family == .gemma2 {
                    config.activation = "gelu_pytorch_tanh"
                    config.tiedEmbeddings = true
                    config.slidingWindow = 4
                    config.attentionSoftcap = 50
                    config.finalSoftcap = 30
                    config.queryPreAttentionScalar = 8
                }
                if family == .mistral { config.slidingWindow = 4 }
            }
            let model = Transformer(config: config)
            model.initialize(seed: 3)
            return model
        }
    }

    static let hfGPT2Config = """
        {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1, "bos_token_id": 50256,
         "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05,
         "model_type": "gpt2", "n_ctx": 16, "n_embd": 8, "n_head": 2, "n_inner": null, "n_layer": 1, "n_positions": 16,
         "resid_pdrop": 0.1, "summary_activation": null, "summary_type": "cls_index", "summary_use_proj": true,
         "transformers_version": "4.46.0", "use_cache": true, "vocab_size": 256}
        """

    static func trainerState() throws -> [UInt8] {
        var config = TrainConfig()
        config.layers = 1; config.dModel = 8; config.heads = 2; config.seqLen = 16; config.steps = 20
        let configJSON = try JSONSerialization.jsonObject(with: JSONEncoder().encode(config))
        let state: [String: Any] = [
            "step": 7, "tokens_seen": 448, "rng": [1234567, 89, 4_000_000_000, 42], "config": configJSON,
            "files": [
                "config.json": ["sha256": String(repeating: "ab", count: 32), "bytes": 512],
                "model.safetensors": ["sha256": String(repeating: "0f", count: 32), "bytes": 9000],
            ],
        ]
        return [UInt8](try JSONSerialization.data(withJSONObject: state, options: [.prettyPrinted, .sortedKeys]))
    }

    // MARK: - GGUF

    /// A Llama GGUF (d 32, 1 layer, 2 heads, 1 key/value head, SwiGLU 64, 16 positions) whose
    /// tensors use F32, F16, Q8_0 and Q4_1; with the tokenizer above embedded, or without.
    public static func llamaGGUF(withTokenizer: Bool) -> [UInt8] {
        var g = GGUFBuilder()
        g.string("general.architecture", "llama")
        g.string("general.name", "fuzz-llama")
        g.uint32("llama.context_length", 16)
        g.uint32("llama.embedding_length", 32)
        g.uint32("llama.block_count", 1)
        g.uint32("llama.feed_forward_length", 64)
        g.uint32("llama.attention.head_count", 2)
        g.uint32("llama.attention.head_count_kv", 1)
        g.uint32("llama.rope.dimension_count", 16)
        g.float32("llama.rope.freq_base", 10_000)
        g.float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        let vocab = withTokenizer ? tokens.count : 256
        if withTokenizer { addTokenizer(&g, tokenTypes: true) }
        var rng = FuzzRNG(seed: 7)
        g.tensor("token_embd.weight", [32, vocab], .q8_0, &rng)
        g.tensor("output_norm.weight", [32], .f32, &rng)
        g.tensor("blk.0.attn_norm.weight", [32], .f32, &rng)
        g.tensor("blk.0.attn_q.weight", [32, 32], .f16, &rng)
        g.tensor("blk.0.attn_k.weight", [32, 16], .f32, &rng)
        g.tensor("blk.0.attn_v.weight", [32, 16], .q8_0, &rng)
        g.tensor("blk.0.attn_output.weight", [32, 32], .f32, &rng)
        g.tensor("blk.0.ffn_norm.weight", [32], .f32, &rng)
        g.tensor("blk.0.ffn_gate.weight", [32, 64], .q4_1, &rng)
        g.tensor("blk.0.ffn_up.weight", [32, 64], .f16, &rng)
        g.tensor("blk.0.ffn_down.weight", [64, 32], .q8_0, &rng)
        return g.bytes()
    }

    /// A tensor of every block type the reader dequantises (Q4_0 ... Q8_0, Q2_K ... Q6_K), 6 blocks
    /// each (3 rows of 2), random quants under finite f16 scales.
    public static func blocksGGUF() -> [UInt8] {
        var g = GGUFBuilder()
        g.string("general.architecture", "llama")
        g.string("general.name", "fuzz-blocks")
        var rng = FuzzRNG(seed: 11)
        for type: GGUFTensorType in [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K] {
            g.tensor("blocks.\(type.name.lowercased())", [2 * type.blockSize, 3], type, &rng)
        }
        return g.bytes()
    }

    /// Only the tokenizer metadata.
    public static func tokenizerGGUF(tokenTypes: Bool) -> [UInt8] {
        var g = GGUFBuilder()
        g.string("general.architecture", "llama")
        addTokenizer(&g, tokenTypes: tokenTypes)
        return g.bytes()
    }

    static func addTokenizer(_ g: inout GGUFBuilder, tokenTypes: Bool) {
        g.string("tokenizer.ggml.model", "gpt2")
        g.string("tokenizer.ggml.pre", tokenTypes ? "smollm" : "gpt2")
        g.stringArray("tokenizer.ggml.tokens", tokens)
        g.stringArray("tokenizer.ggml.merges", merges)
        if tokenTypes {
            g.int32Array("tokenizer.ggml.token_type", tokens.indices.map { $0 == tokens.count - 1 ? 3 : 1 })
            g.uint32("tokenizer.ggml.eos_token_id", UInt32(tokens.count - 1))
            g.uint32("tokenizer.ggml.bos_token_id", UInt32(tokens.count - 1))
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Writes GGUF v3: header, metadata, tensor infos, padding to 32, data (each tensor 32-aligned).
struct GGUFBuilder {
    private var metadata: [UInt8] = []
    private var metadataCount = 0
    private var infos: [UInt8] = []
    private var data: [UInt8] = []
    private var tensorCount = 0

    private static func u32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
    private static func u64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
    private static func str(_ s: String) -> [UInt8] { u64(UInt64(s.utf8.count)) + Array(s.utf8) }

    private mutating func key(_ k: String, _ type: UInt32) {
        metadata += Self.str(k) + Self.u32(type)
        metadataCount += 1
    }

    mutating func string(_ k: String, _ v: String) { key(k, 8); metadata += Self.str(v) }
    mutating func uint32(_ k: String, _ v: UInt32) { key(k, 4); metadata += Self.u32(v) }
    mutating func float32(_ k: String, _ v: Float) { key(k, 6); metadata += Self.u32(v.bitPattern) }

    mutating func stringArray(_ k: String, _ v: [String]) {
        key(k, 9)
        metadata += Self.u32(8) + Self.u64(UInt64(v.count))
        for s in v { metadata += Self.str(s) }
    }

    mutating func int32Array(_ k: String, _ v: [Int32]) {
        key(k, 9)
        metadata += Self.u32(5) + Self.u64(UInt64(v.count))
        for x in v { metadata += Self.u32(UInt32(bitPattern: x)) }
    }

    /// A tensor of shape [ne0, ne1, ...] with small random values, encoded as `type`.
    mutating func tensor(_ name: String, _ shape: [Int], _ type: GGUFTensorType, _ rng: inout FuzzRNG) {
        while data.count % 32 != 0 { data.append(0) }
        infos += Self.str(name) + Self.u32(UInt32(shape.count))
        for ne in shape { infos += Self.u64(UInt64(ne)) }
        infos += Self.u32(type.rawValue) + Self.u64(UInt64(data.count))
        tensorCount += 1
        let count = shape.reduce(1, *)
        func small() -> Float { Float(Int(rng.next() % 2001) - 1000) / 10_000 }
        switch type {
        case .f32:
            for _ in 0..<count { data += Self.u32(small().bitPattern) }
        case .f16:
            for _ in 0..<count { let h = Float16Bits.from(small()); data += [UInt8(h & 0xFF), UInt8(h >> 8)] }
        case .q8_0:   // f16 scale 1/128, then 32 int8
            for _ in 0..<(count / 32) {
                data += [0x00, 0x20]
                for _ in 0..<32 { data.append(UInt8(truncatingIfNeeded: Int(rng.next() % 25) - 12)) }
            }
        case .q4_1:   // f16 d = 1/64, f16 m = -1/8, 16 bytes of nibbles
            for _ in 0..<(count / 32) {
                data += [0x00, 0x24, 0x00, 0xB0]
                for _ in 0..<16 { data.append(UInt8(truncatingIfNeeded: rng.next())) }
            }
        case .q4_0, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K:
            // Random bytes, then each f16 field (d, and m / dmin where there is one) a small finite value.
            let fields: [Int] = switch type {
            case .q5_1: [0, 2]
            case .q2_K: [80, 82]
            case .q3_K: [108]
            case .q4_K, .q5_K: [0, 2]
            case .q6_K: [208]
            default: [0]
            }
            for _ in 0..<(count / type.blockSize) {
                var block = (0..<type.blockBytes).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                for offset in fields {
                    let h = Float16Bits.from(small() / 16)
                    block[offset] = UInt8(h & 0xFF)
                    block[offset + 1] = UInt8(h >> 8)
                }
                data += block
            }
        default:
            preconditionFailure("the seed builder writes F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K to Q6_K")
        }
    }

    func bytes() -> [UInt8] {
        var out = Array("GGUF".utf8) + Self.u32(3) + Self.u64(UInt64(tensorCount)) + Self.u64(UInt64(metadataCount))
        out += metadata + infos
        while out.count % 32 != 0 { out.append(0) }
        return out + data
    }
}

/// fp32 -> IEEE half bits (round to nearest even), for small seed values.
enum Float16Bits {
    static func from(_ f: Float) -> UInt16 {
        let bits = f.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exponent = Int((bits >> 23) & 0xFF) - 127 + 15
        var mantissa = bits & 0x7F_FFFF
        if exponent <= 0 {
            guard exponent >= -10 else { return sign }
            mantissa |= 0x80_0000
            let shift = UInt32(14 - exponent)
            var half = mantissa >> shift
            let rest = mantissa & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
            if rest > halfway || (rest == halfway && half & 1 == 1) { half += 1 }
            return sign | UInt16(half)
        }
        guard exponent < 31 else { return sign | 0x7C00 }
        var half = UInt32(exponent) << 10 | (mantissa >> 13)
        let rest = mantissa & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) { half += 1 }
        return sign | UInt16(half)
    }
}
