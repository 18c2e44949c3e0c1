// The fuzz targets: every parser a user's file reaches (docs/DESIGN.md §8), each driven the way the
// command line drives it, from the file on disk to the object it becomes.
//
//   safetensors      SafeTensorsFile, then every tensor converted (floats or integers)
//   gguf             GGUFFile, every metadata value read, every tensor dequantised
//   gguf-model       GGUFModel.load: a llama, qwen2, qwen3 or gemma2 GGUF -> a Transformer (metadata -> config -> weights)
//   gguf-tokenizer   Tokenizers.loadGGUF (BPETokenizer, or the tokenizer.json GGUFTokenizerJSON builds), then encode and decode a text
//   config-json      Checkpoint.loadModel on a folder: config.json (the input) + model.safetensors
//   train-config     TrainConfig.load (`--config FILE.json`)
//   trainer-state    TrainerState.load (a checkpoint's trainer_state.json, read by --resume)
//   vocab-json       BPETokenizer.load(vocabJSON:merges:) with a good merges.txt, then encode
//   merges-txt       the same with a good vocab.json and the input as merges.txt
//   tiktoken         BPETokenizer.load(tiktoken:), then encode
//   tokenizer-json   HuggingFaceTokenizer.load(tokenizerJSON:) (a Hugging Face tokenizer.json), then
//                    encode (with and without the post-processor's tokens) and decode
//   corpus           TokenDataset.load with the byte tokenizer and with BPE (GPT-2's and SmolLM's
//                    pre-tokenizers): invalid UTF-8, empty files, huge lines
//   sharded-index    Checkpoint.loadModel on a sharded folder: model.safetensors.index.json (the
//                    input) beside transformers' shards of the tiny Llama (BF16) or GPT-2 (F16)
//
// An input passes when it is accepted, or refused with an InputError that names the input's file
// (or a file beside it, such as the checkpoint's weights) and a field. Anything else — another
// error type, an InputError without a field, a trap, a hang — is a finding.

import Foundation
import Myopia

public struct FuzzTarget: Sendable {
    public let name: String
    public let kind: Mutator.Kind
    /// The name the input is written under (errors must name it).
    public let fileName: String
    public let dictionary: [String]
    /// Inputs are cut to this size.
    var maxBytes = 4 << 20
    /// The integer fields of a seed's header (GGUF, safetensors), for the mutator to aim at.
    var fields: @Sendable ([UInt8]) -> [(offset: Int, width: Int)] = { _ in [] }
    let body: @Sendable (_ input: URL, _ bytes: [UInt8]) throws -> Void

    init(name: String, kind: Mutator.Kind, fileName: String, dictionary: [String], maxBytes: Int = 4 << 20,
         fields: @escaping @Sendable ([UInt8]) -> [(offset: Int, width: Int)] = { _ in [] },
         body: @escaping @Sendable (_ input: URL, _ bytes: [UInt8]) throws -> Void) {
        self.name = name
        self.maxBytes = maxBytes
        self.kind = kind
        self.fileName = fileName
        self.dictionary = dictionary
        self.fields = fields
        self.body = body
    }

    /// What one input did.
    public enum Outcome: Equatable, Sendable {
        case accepted
        /// A well-formed refusal: the InputError's case and field (numbers and names folded,
        /// so that one kind of refusal counts once) and its message.
        case rejected(kind: String, message: String)
        /// A refusal that breaks the rules: not an InputError, or one without file or field.
        case badRejection(String)
    }

    /// Runs one input in `folder` (this target's own scratch folder).
    public func run(_ bytes: [UInt8], in folder: URL) -> Outcome {
        let url = folder.appendingPathComponent(fileName)
        do {
            try Data(bytes).write(to: url)
        } catch {
            return .badRejection("the fuzzer could not write its input \(url.path): \(error)")
        }
        do {
            try body(url, bytes)
            return .accepted
        } catch let error as InputError {
            return Self.classify(error, folder: folder)
        } catch {
            return .badRejection("not an InputError: \(type(of: error)): \(error)")
        }
    }

    static func classify(_ error: InputError, folder: URL) -> Outcome {
        let message = error.description
        guard error.file.hasPrefix(folder.path) || error.file.hasPrefix(folder.standardizedFileURL.path) else {
            return .badRejection("names the file \(error.file), not the input: \(message)")
        }
        let caseName = Mirror(reflecting: error).children.first?.label ?? "\(error)"
        switch error {
        case .io:
            return .badRejection("an I/O error on a readable input: \(message)")
        case .checksumMismatch:
            return .rejected(kind: caseName, message: message)
        default:
            guard let field = error.field, !field.trimmingCharacters(in: .whitespaces).isEmpty else {
                return .badRejection("names no field: \(message)")
            }
            if case .invalidHeader(_, _, let reason) = error, reason.hasPrefix("unknown setting") {
                return .rejected(kind: "\(caseName): (an unknown setting)", message: message)
            }
            return .rejected(kind: "\(caseName): \(fold(field))", message: message)
        }
    }

    /// A field with its particulars folded: quoted names become "…", numbers "#".
    static func fold(_ field: String) -> String {
        var out = "", inQuote = false, lastDigit = false
        let field = field.count > 80 ? String(field.prefix(80)) + "…" : field
        var previous: Character = " "
        for c in field {
            if c == "\"" && previous != "\\" {
                if !inQuote { out += "\"…\"" }
                inQuote.toggle()
            } else if !inQuote {
                if c.isASCII && c.isNumber {
                    if !lastDigit { out += "#" }
                    lastDigit = true
                    previous = c
                    continue
                }
                out.append(c)
            }
            lastDigit = false
            previous = c
        }
        return out
    }
}

extension FuzzTarget {
    /// Every target, in the order the summary lists them.
    public static let all: [FuzzTarget] = [
        safetensors, gguf, ggufModel, ggufTokenizer, configJSON, trainConfig, trainerState, vocabJSON, mergesTXT, tiktoken,
        tokenizerJSON, corpus, shardedIndex,
    ]

    public static func named(_ name: String) -> FuzzTarget? { (all + [selfTest]).first { $0.name == name } }

    /// Not a parser: checks the driver itself. Its seeds (Seeds.make("selftest")) are an input
    /// that passes, one that traps, one that hangs, one that asks for 32 TB, and one refused with
    /// an error that is not an InputError.
    static let selfTest = FuzzTarget(name: "selftest", kind: .binary, fileName: "input", dictionary: []) { _, bytes in
        struct NotAnInputError: Error {}
        switch String(decoding: bytes, as: UTF8.self) {
        case "CRASH": fatalError("selftest: a trap")
        case "HANG": while true { sleep(1) }
        case "ALLOC":
            let p = UnsafeMutableRawPointer.allocate(byteCount: 1 << 45, alignment: 64)
            p.storeBytes(of: 1, as: UInt8.self)
            p.deallocate()
        case "BAD": throw NotAnInputError()
        default: break
        }
    }

    static let safetensors = FuzzTarget(name: "safetensors", kind: .headerJSON, fileName: "model.safetensors",
                                        dictionary: ["__metadata__", "dtype", "shape", "data_offsets", "F32", "F16", "BF16", "I64", "U8", "BOOL"],
                                        fields: { _ in [(0, 8), (0, 4)] }) { url, _ in
        let file = try SafeTensorsFile(contentsOf: url)
        for e in file.entries {
            switch e.dtype {
            case .f32, .f16, .bf16, .f64: _ = try file.floats(e.name)
            case .i64, .i32, .i16, .i8, .u64, .u32, .u16, .u8, .bool: _ = try file.int64s(e.name)
            default: _ = try file.withBytes(of: e.name) { $0.count }
            }
        }
    }

    static let gguf = FuzzTarget(name: "gguf", kind: .binary, fileName: "model.gguf", dictionary: [], fields: ggufHeaderFields) { url, _ in
        let file = try GGUFFile(contentsOf: url)
        for key in file.metadataKeys {
            let value = try file.value(key)
            _ = value.description
            if value.intValue != nil { _ = try file.int(key) }
            if value.doubleValue != nil { _ = try file.float(key) }
            if case .array(let element, _) = value {
                switch element {
                case .string: _ = try file.stringArray(key)
                case .float32, .float64: _ = try file.floatArray(key)
                case .array, .bool: break
                default: _ = try? file.intArray(key)   // a UINT64 above Int.max is a refusal, not a finding
                }
            }
        }
        for t in file.tensors where t.type.isDequantizable { _ = try file.floats(t.name) }
    }

    static let ggufModel = FuzzTarget(name: "gguf-model", kind: .binary, fileName: "llama.gguf", dictionary: [], fields: ggufHeaderFields) { url, _ in
        let model = try GGUFModel.load(from: url, tokenizer: "byte")
        _ = model.params.count
    }

    static let ggufTokenizer = FuzzTarget(name: "gguf-tokenizer", kind: .binary, fileName: "tokenizer.gguf", dictionary: [], fields: ggufHeaderFields) { url, _ in
        let tokenizer = try Tokenizers.loadGGUF(url, name: url.path)
        if let bpe = tokenizer as? BPETokenizer {
            _ = bpe.decode(bpe.encode(Seeds.english, allowedSpecial: Set(bpe.specialTokens.keys)))
        } else {
            _ = tokenizer.decode(tokenizer.encode(Seeds.english, addSpecialTokens: true))
        }
    }

    static let configJSON = FuzzTarget(name: "config-json", kind: .json, fileName: "config.json",
                                       dictionary: ["model_type", "gpt2", "llama", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head",
                                                    "n_inner", "layer_norm_epsilon", "activation_function", "tie_word_embeddings",
                                                    "num_attention_heads", "num_key_value_heads", "hidden_size", "intermediate_size",
                                                    "num_hidden_layers", "max_position_embeddings", "head_dim", "rope_theta", "rope_scaling",
                                                    "rope_type", "rms_norm_eps", "hidden_act", "silu", "myopia_input_features",
                                                    "myopia_outputs", "myopia_attention", "gpt_neox", "qwen2", "qwen3", "mistral",
                                                    "gemma2", "olmo2", "rotary_pct", "rotary_emb_base", "use_parallel_residual",
                                                    "attention_bias", "sliding_window", "layer_types", "sliding_attention",
                                                    "full_attention", "attn_logit_softcapping", "final_logit_softcapping",
                                                    "query_pre_attn_scalar", "hidden_activation", "rope_parameters",
                                                    "partial_rotary_factor", "use_sliding_window", "max_window_layers"]) { url, bytes in
        // The input is the config of a checkpoint folder whose weights fit the seed it came from.
        let folder = url.deletingLastPathComponent()
        let weights = folder.appendingPathComponent(Checkpoint.modelFile)
        // The weights of the family the text names (the longest names first: "qwen2" before "gpt2"),
        // looked for in the first 64 KiB (a config is small; a huge input is garbage either way).
        let text = String(decoding: bytes.prefix(1 << 16), as: UTF8.self)
        let family = ModelConfig.Family.allCases.sorted { $0.rawValue.count > $1.rawValue.count }
            .first { text.contains($0.rawValue) } ?? .gpt2
        try FileManager.default.copyItem(at: companion(family.rawValue), to: weights)
        defer { try? FileManager.default.removeItem(at: weights) }
        let model = try Checkpoint.loadModel(from: folder)
        _ = model.params.count
    }

    static let trainConfig = FuzzTarget(name: "train-config", kind: .json, fileName: "train.json",
                                        dictionary: ["data", "tokenizer", "flow", "family", "layers", "heads", "kv_heads", "d_model", "seq_len",
                                                     "batch", "steps", "lr", "min_lr", "warmup", "weight_decay", "beta1", "beta2", "eps",
                                                     "no_decay", "clip", "seed", "validation_fraction", "eval_every", "eval_windows",
                                                     "log_every", "checkpoint_every", "log_gradient_split", "myopic", "vanilla", "beta=",
                                                     "bigram", "llama", "gpt2"]) { url, _ in
        let config = try TrainConfig.load(from: url)
        _ = config.modelConfig(vocabSize: 256)
    }

    static let trainerState = FuzzTarget(name: "trainer-state", kind: .json, fileName: "trainer_state.json",
                                         dictionary: ["step", "rng", "tokens_seen", "config", "files", "sha256", "bytes", "model.safetensors",
                                                      "d_model", "heads", "seq_len"]) { url, _ in
        _ = try TrainerState.load(from: url)
    }

    static let vocabJSON = FuzzTarget(name: "vocab-json", kind: .json, fileName: "vocab.json",
                                      dictionary: ["Ġ", "Ġthe", "<|endoftext|>", "\\u0120", "\\u00e9"]) { url, _ in
        let merges = url.deletingLastPathComponent().appendingPathComponent("merges.txt")
        try Data(Seeds.mergesTXT).write(to: merges)
        defer { try? FileManager.default.removeItem(at: merges) }
        try encodeSample(BPETokenizer.load(vocabJSON: url, merges: merges))
    }

    static let mergesTXT = FuzzTarget(name: "merges-txt", kind: .text, fileName: "merges.txt",
                                      dictionary: ["#version: 0.2", "Ġ", "Ġt", "he", "Ġthe", "<|endoftext|>"]) { url, _ in
        let vocab = url.deletingLastPathComponent().appendingPathComponent("vocab.json")
        try Data(Seeds.vocabJSON).write(to: vocab)
        defer { try? FileManager.default.removeItem(at: vocab) }
        try encodeSample(BPETokenizer.load(vocabJSON: vocab, merges: url))
    }

    static let tiktoken = FuzzTarget(name: "tiktoken", kind: .text, fileName: "ranks.tiktoken",
                                     dictionary: ["IA==", "dGhl", "=", "==", "===", "+", "/"]) { url, _ in
        try encodeSample(BPETokenizer.load(tiktoken: url))
    }

    /// The words of the format: component types, field names, options, and strings that matter to
    /// the tokenizers the seeds hold.
    static let tokenizerJSON = FuzzTarget(name: "tokenizer-json", kind: .json, fileName: "tokenizer.json",
                                          dictionary: ["version", "1.0", "added_tokens", "normalizer", "pre_tokenizer", "post_processor",
                                                       "decoder", "model", "type", "BPE", "WordPiece", "vocab", "merges", "unk_token",
                                                       "byte_fallback", "fuse_unk", "ignore_merges", "dropout", "continuing_subword_prefix",
                                                       "Sequence", "normalizers", "pretokenizers", "processors", "decoders", "NFC", "NFKC",
                                                       "Lowercase", "Replace", "Prepend", "Strip", "strip_left", "ByteLevel", "add_prefix_space",
                                                       "use_regex", "trim_offsets", "Split", "pattern", "String", "Regex", "behavior",
                                                       "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous", "invert",
                                                       "Digits", "individual_digits", "Metaspace", "replacement", "prepend_scheme", "first",
                                                       "always", "never", "split", "TemplateProcessing", "single", "pair", "special_tokens",
                                                       "SpecialToken", "id", "ids", "tokens", "type_id", "ByteFallback", "Fuse", "content",
                                                       "start", "stop", "special", "lstrip", "rstrip", "single_word", "normalized", "▁", "Ġ",
                                                       "<0x41>", "<unk>", "<|endoftext|>"]) { url, _ in
        let tokenizer = try HuggingFaceTokenizer.load(tokenizerJSON: url)
        let ids = tokenizer.encode(Seeds.english + Seeds.unicode + Seeds.specialText, addSpecialTokens: true)
        _ = tokenizer.encode(Seeds.unicode)
        _ = tokenizer.decode(ids)
        _ = tokenizer.decode(ids + [-1, Int32(tokenizer.vocabSize)], skipSpecialTokens: true)
        _ = tokenizer.decodeBytes(ids)
    }

    // Tokenizing is linear but not free: spaces, the slowest text, take about 1.3 s per MB for the
    // three tokenizers here on an idle core (0.23 s for 250 KB, 3.0 s for 2 MB), and up to three
    // times that on a loaded machine. Corpora are cut at 1 MB, which still holds megabyte-long
    // lines, to stay inside the 5 s limit that marks a hang.
    static let corpus = FuzzTarget(name: "corpus", kind: .text, fileName: "corpus.txt", dictionary: ["<|endoftext|>", "\r\n", "\u{FEFF}"],
                                   maxBytes: 1 << 20) { url, _ in
        _ = try TokenDataset.load(textFile: url)
        for tokenizer in Self.corpusTokenizers {
            let data = try TokenDataset.load(textFile: url, tokenizer: tokenizer, validationFraction: 0.1)
            _ = tokenizer.decode(Array(data.train.prefix(64)))
        }
    }

    static let corpusTokenizers: [BPETokenizer] = [try! Seeds.tokenizer(.gpt2), try! Seeds.tokenizer(.smollm)]

    static func encodeSample(_ tokenizer: BPETokenizer) {
        let ids = tokenizer.encode(Seeds.english + Seeds.unicode, allowedSpecial: Set(tokenizer.specialTokens.keys))
        _ = tokenizer.decode(ids)
    }

    /// model.safetensors of the tiny GPT-2 or Llama seed config, written once per process.
    static func companion(_ family: String) throws -> URL {
        let url = companionFolder.appendingPathComponent("\(family).safetensors")
        guard !FileManager.default.fileExists(atPath: url.path) else { return url }
        let model = Seeds.tinyModel(ModelConfig.Family(rawValue: family) ?? .gpt2)
        let folder = companionFolder.appendingPathComponent(family)
        try Checkpoint.saveModel(model, to: folder)
        try FileManager.default.moveItem(at: folder.appendingPathComponent(Checkpoint.modelFile), to: url)
        return url
    }

    /// Removes this process's companion files.
    public static func removeCompanions() {
        try? FileManager.default.removeItem(at: companionFolder)
    }

    static let companionFolder: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-fuzz-companions-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()
}

// MARK: - sharded-index

extension FuzzTarget {
    /// The input is the index of a sharded checkpoint; beside it are config.json and the three
    /// shards of a folder transformers saved (Tests/Fixtures/sharded: the tiny Llama in BF16, 45 KB,
    /// or, when the input mentions `transformer.`, the tiny GPT-2 in F16, 0.73 MB), copied once into
    /// the campaign's scratch folder. Each input reads its index, the shards' headers and converts
    /// the shards: a few milliseconds.
    static let shardedIndex = FuzzTarget(name: "sharded-index", kind: .json, fileName: Checkpoint.indexFile,
                                         dictionary: ["metadata", "total_size", "total_parameters", "weight_map",
                                                      "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                                      "model-00003-of-00003.safetensors", "model-00004-of-00004.safetensors",
                                                      "model.safetensors", "config.json", "../model-00001-of-00003.safetensors",
                                                      "/tmp/model-00001-of-00003.safetensors", "sub/model-00002-of-00003.safetensors",
                                                      "..", ".", "lm_head.weight", "model.norm.weight", "model.embed_tokens.weight",
                                                      "model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.o_proj.weight",
                                                      "transformer.wte.weight", "transformer.ln_f.bias", "transformer.h.0.attn.c_attn.weight",
                                                      "transformer.h.2.mlp.c_proj.weight"]) { url, bytes in
        let name = String(decoding: bytes, as: UTF8.self).contains("transformer.") ? "gpt2_f16" : "llama_bf16"
        let folder = try shardedCompanion(name, in: url.deletingLastPathComponent())
        try Data(bytes).write(to: folder.appendingPathComponent(Checkpoint.indexFile))
        let model = try Checkpoint.loadModel(from: folder)
        _ = model.params.count
    }

    /// Tests/Fixtures in the repository these fuzzers are built from (this file is
    /// tools/fuzz/MyopiaFuzz/Targets.swift).
    public static let repositoryFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Tests/Fixtures")

    /// `scratch/NAME/`: config.json and the shards of Tests/Fixtures/sharded/NAME/hf (not its index),
    /// copied on first use.
    static func shardedCompanion(_ name: String, in scratch: URL) throws -> URL {
        let folder = scratch.appendingPathComponent(name)
        let config = folder.appendingPathComponent(Checkpoint.configFile)
        guard !FileManager.default.fileExists(atPath: config.path) else { return folder }
        let source = repositoryFixtures.appendingPathComponent("sharded/\(name)/hf")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: source.path).sorted()
        where file.hasSuffix(".safetensors") || file == Checkpoint.configFile {
            let to = folder.appendingPathComponent(file)
            try? FileManager.default.removeItem(at: to)
            try FileManager.default.copyItem(at: source.appendingPathComponent(file), to: to)
        }
        return folder
    }
}
