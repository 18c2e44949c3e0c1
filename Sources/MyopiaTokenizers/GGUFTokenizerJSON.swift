// The tokenizer a GGUF file describes, written as the Hugging Face tokenizer.json that `transformers`
// builds from the same metadata (`AutoTokenizer.from_pretrained(dir, gguf_file=…)`, its
// integrations/gguf/gguf_tokenizer_mapping.py), so `myopia convert` can write it and
// HuggingFaceTokenizer can run it.
//
//   tokenizer.ggml.model "gpt2"   byte-level BPE: tokens (respelled in GPT-2's byte alphabet where a
//                                 token uses other characters) and merges as stored; the
//                                 pre-tokenizer named by tokenizer.ggml.pre (`byteLevelSplits`);
//                                 ByteLevel decoder.
//   tokenizer.ggml.model "llama"  SentencePiece BPE with byte fallback (<0xNN> tokens): merges
//                                 rebuilt from the vocabulary as transformers' `generate_merges` does
//                                 — every split of a token into two tokens, best first by the token's
//                                 score (tokenizer.ggml.scores; for gemma2, the token's position:
//                                 Gemma's scores do not follow its merge order), then by the lengths
//                                 of the two halves, longest first. Llama: Metaspace (▁, prepended to
//                                 the first piece); Gemma: spaces replaced by ▁, and tokens of real
//                                 spaces ("  ") respelled as ▁▁.
//
// Added tokens: CONTROL tokens (type 3; for byte-level, only those written in the byte alphabet) and
// the bos/eos/unknown/padding tokens are special; USER_DEFINED tokens (type 4) are matched in any
// text. tokenizer.ggml.add_bos_token / add_eos_token (the bos default is on for "llama") put the bos
// before and the eos after a sequence encoded with special tokens.
//
// Where transformers and the file part ways (`PreTokenizerSource`): for tokenizer.ggml.pre "smollm",
// transformers' converter builds plain ByteLevel and drops SmolLM2's digit step (every digit alone,
// then GPT-2's regex), which llama.cpp and SmolLM2's own tokenizer.json keep. The ids differ only
// where whitespace meets a number (tools/reference/smollm2_tokenizer_reference.py records where).
// `.transformers` (the default, what `myopia convert` writes) follows transformers; `.file` keeps the
// digit step, as Myopia's own reading of the GGUF (BPETokenizer) does.

import Foundation
import MyopiaSupport
import MyopiaFormats

public enum GGUFTokenizerJSON {
    /// The byte-level pre-tokenizers read (tokenizer.ggml.pre): a Split regex before ByteLevel, or
    /// nil for ByteLevel's own GPT-2 regex.
    public static let byteLevelSplits: [String: PreTokenizer?] = [
        "gpt2": nil, "gpt-2": nil, "default": nil, "smollm": PreTokenizer.smollm,
        "llama-bpe": .llama3, "llama3": .llama3, "llama-v3": .llama3,
        "qwen2": .qwen2, "deepseek-r1-qwen": .qwen2,
    ]
    /// The tokenizer.ggml.model values read.
    public static let models = ["gpt2", "llama"]
    /// The pre-tokenizers transformers' GGUF converter does not build: it uses ByteLevel's own regex.
    public static let transformersDrops: Set<String> = ["smollm"]

    /// Which pre-tokenizer a byte-level tokenizer.json gets where transformers and the file differ.
    public enum PreTokenizerSource: String, CaseIterable, Sendable {
        /// As transformers' `from_pretrained(…, gguf_file:)` builds it.
        case transformers
        /// As tokenizer.ggml.pre names it (llama.cpp's reading, and the model's own tokenizer.json).
        case file = "gguf"
    }

    /// A tokenizer.json for the file's tokenizer (UTF-8 bytes).
    public static func make(_ file: GGUFFile, preTokenizer preTokenizerSource: PreTokenizerSource = .transformers) throws -> [UInt8] {
        let source = file.source
        func field(_ key: String) -> String { "metadata \(ggufQuoted(key))" }
        let model = try file.string("tokenizer.ggml.model")
        guard models.contains(model) else {
            throw InputError.unsupported(file: source, field: field("tokenizer.ggml.model"),
                                          value: "\(ggufQuoted(model)) (Myopia reads \(models.map { "\"\($0)\"" }.joined(separator: ", ")))")
        }
        var tokens = try file.stringArray("tokenizer.ggml.tokens")
        guard !tokens.isEmpty, tokens.count < Int(Int32.max) else {
            throw InputError.invalidValue(file: source, field: field("tokenizer.ggml.tokens"), expected: "at least one token", found: "\(tokens.count)")
        }
        var types = [Int](repeating: 1, count: tokens.count)
        if file.metadata["tokenizer.ggml.token_type"] != nil {
            types = try file.intArray("tokenizer.ggml.token_type")
            guard types.count == tokens.count else {
                throw InputError.invalidValue(file: source, field: field("tokenizer.ggml.token_type"),
                                               expected: "\(tokens.count) entries (one per token)", found: "\(types.count)")
            }
        }
        func tokenID(_ key: String) throws -> Int? {
            guard file.metadata[key] != nil else { return nil }
            let id = try file.int(key)
            guard (0..<tokens.count).contains(id) else {
                throw InputError.invalidValue(file: source, field: field(key), expected: "a token id in 0..<\(tokens.count)", found: "\(id)")
            }
            return id
        }
        let bos = try tokenID("tokenizer.ggml.bos_token_id"), eos = try tokenID("tokenizer.ggml.eos_token_id")
        let unk = try tokenID("tokenizer.ggml.unknown_token_id"), pad = try tokenID("tokenizer.ggml.padding_token_id")
        let addBOS = try file.bool("tokenizer.ggml.add_bos_token", default: model == "llama")
        let addEOS = try file.bool("tokenizer.ggml.add_eos_token", default: false)

        let byteLevel = model == "gpt2"
        var json: [String: Any] = ["version": "1.0", "truncation": NSNull(), "padding": NSNull()]
        var merges: [[String]]
        if byteLevel {
            let preName = try file.string("tokenizer.ggml.pre", default: "default")
            guard let split = byteLevelSplits[preName] else {
                throw InputError.unsupported(file: source, field: field("tokenizer.ggml.pre"),
                                              value: "\(ggufQuoted(preName)) (Myopia reads \(byteLevelSplits.keys.sorted().joined(separator: ", ")))")
            }
            tokens = tokens.map { token in
                token.unicodeScalars.allSatisfy { $0.value < 0x144 && ByteLevel.byteOfScalar[Int($0.value)] >= 0 }
                    ? token : ByteLevel.string(Array(token.utf8))
            }
            merges = try file.stringArray("tokenizer.ggml.merges").enumerated().map { i, merge in
                let parts = merge.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw InputError.invalidValue(file: source, field: "\(field("tokenizer.ggml.merges"))[\(i)]",
                                                   expected: "two tokens separated by one space", found: BPETokenizer.quoted(merge))
                }
                return parts.map(String.init)
            }
            json["normalizer"] = NSNull()
            let dropped = preTokenizerSource == .transformers && transformersDrops.contains(preName)
            json["pre_tokenizer"] = byteLevelPreTokenizer(dropped ? nil : split)
            json["decoder"] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true] as [String: Any]
        } else {
            let gemma = (try? file.string("general.architecture")).map { $0.hasPrefix("gemma") } ?? false
            let scores: [Double]
            if gemma {
                // Python's `" " in t and not t.strip()`: a space, and nothing but whitespace.
                tokens = tokens.map { t in
                    t.contains(" ") && t.unicodeScalars.allSatisfy(\.properties.isWhitespace)
                        ? String(repeating: "\u{2581}", count: t.unicodeScalars.count) : t
                }
                scores = (0..<tokens.count).map { -Double($0) }
            } else {
                scores = try file.floatArray("tokenizer.ggml.scores").map(Double.init)
                guard scores.count == tokens.count else {
                    throw InputError.invalidValue(file: source, field: field("tokenizer.ggml.scores"),
                                                   expected: "\(tokens.count) entries (one per token)", found: "\(scores.count)")
                }
                if let i = scores.firstIndex(where: { !$0.isFinite }) {
                    throw InputError.invalidValue(file: source, field: "\(field("tokenizer.ggml.scores"))[\(i)]",
                                                   expected: "a finite number", found: "\(scores[i])")
                }
            }
            merges = generateMerges(tokens, scores: scores)
            let space: [String: Any] = ["String": " "]
            if gemma {
                json["normalizer"] = ["type": "Replace", "pattern": space, "content": "\u{2581}"] as [String: Any]
                json["pre_tokenizer"] = ["type": "Split", "pattern": space, "behavior": "MergedWithPrevious", "invert": false] as [String: Any]
            } else {
                json["normalizer"] = NSNull()
                json["pre_tokenizer"] = ["type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false] as [String: Any]
            }
            var decoders: [[String: Any]] = [
                ["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"],
            ]
            if !gemma { decoders.append(["type": "Strip", "content": " ", "start": 1, "stop": 0]) }
            json["decoder"] = ["type": "Sequence", "decoders": decoders] as [String: Any]
        }

        // The vocabulary: a token listed twice keeps its last id, as a Python dict does.
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() { vocab[t] = i }
        var added: [Int: (String, Bool)] = [:]
        let alphabet = { (t: String) in t.unicodeScalars.allSatisfy { $0.value < 0x144 && ByteLevel.byteOfScalar[Int($0.value)] >= 0 } }
        for (i, type) in types.enumerated() {
            let t = tokens[i]
            if type == 3, !byteLevel || alphabet(t), let id = vocab[t] { added[id] = (t, true) }
            if type == 4, let id = vocab[t], added[id] == nil { added[id] = (t, false) }
        }
        for id in [bos, eos, unk, pad].compactMap({ $0 }) { if let v = vocab[tokens[id]] { added[v] = (tokens[id], true) } }
        json["added_tokens"] = added.keys.sorted().map { id -> [String: Any] in
            ["id": id, "content": added[id]!.0, "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": added[id]!.1]
        }
        json["model"] = [
            "type": "BPE", "dropout": NSNull(), "unk_token": byteLevel ? NSNull() : unknownToken(file, tokens, unk),
            "continuing_subword_prefix": NSNull(), "end_of_word_suffix": NSNull(),
            "fuse_unk": !byteLevel, "byte_fallback": !byteLevel, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        ] as [String: Any]
        json["post_processor"] = template(bos: addBOS ? bos.map { tokens[$0] } : nil, eos: addEOS ? eos.map { tokens[$0] } : nil, vocab: vocab)
        return Array(try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))
    }

    /// The tokenizer as HuggingFaceTokenizer runs it.
    public static func tokenizer(_ file: GGUFFile, name: String, preTokenizer: PreTokenizerSource = .transformers) throws -> HuggingFaceTokenizer {
        try HuggingFaceTokenizer(TokenizerJSON(bytes: make(file, preTokenizer: preTokenizer), source: file.source), name: name)
    }

    /// GemmaTokenizer names its unknown token; LlamaTokenizer's BPE model names none.
    private static func unknownToken(_ file: GGUFFile, _ tokens: [String], _ unk: Int?) -> Any {
        let gemma = (try? file.string("general.architecture")).map { $0.hasPrefix("gemma") } ?? false
        guard gemma, let unk else { return NSNull() }
        return tokens[unk]
    }

    private static func byteLevelPreTokenizer(_ split: PreTokenizer?) -> [String: Any] {
        switch split {
        case nil:
            return ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
        case .smollm?:
            return ["type": "Sequence", "pretokenizers": [
                ["type": "Digits", "individual_digits": true],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true] as [String: Any],
            ]]
        case let regex?:
            let pattern = TokenizerJSON.knownRegexes.first { $0.value == regex }!.key
            return ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false] as [String: Any],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
            ]]
        }
    }

    /// TemplateProcessing: the bos before, the eos after a single sequence.
    private static func template(bos: String?, eos: String?, vocab: [String: Int]) -> [String: Any] {
        var single: [[String: Any]] = []
        var specials: [String: Any] = [:]
        func special(_ t: String) -> [String: Any] {
            specials[t] = ["id": t, "ids": [vocab[t]!], "tokens": [t]] as [String: Any]
            return ["SpecialToken": ["id": t, "type_id": 0] as [String: Any]]
        }
        if let bos { single.append(special(bos)) }
        single.append(["Sequence": ["id": "A", "type_id": 0] as [String: Any]])
        if let eos { single.append(special(eos)) }
        return ["type": "TemplateProcessing", "single": single, "pair": single, "special_tokens": specials]
    }

    /// transformers' `generate_merges(vocab, vocab_scores)`: for each distinct token in order of
    /// first appearance (its last score), every split into two tokens of the vocabulary, ordered by
    /// the halves' ids; then all of them, stably, by (score, left length, right length), largest first.
    /// Lengths count code points, as Python's len does. A token longer than `maxMergedLength` code
    /// points is not split (the search is quadratic in its length; no real vocabulary has one).
    static let maxMergedLength = 1024

    static func generateMerges(_ tokens: [String], scores: [Double]) -> [[String]] {
        var lastID: [String: Int] = [:], score: [String: Double] = [:], order: [String] = []
        lastID.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() {
            if lastID[t] == nil { order.append(t) }
            lastID[t] = i
            score[t] = scores[i]
        }
        struct Candidate { let left: String, right: String, score: Double, leftLength: Int, rightLength: Int, sequence: Int }
        var candidates: [Candidate] = []
        for t in order {
            let scalars = Array(t.unicodeScalars)
            guard scalars.count > 1, scalars.count <= maxMergedLength else { continue }
            var local: [(String, String, Int, Int)] = []
            for cut in 1..<scalars.count {
                var l = String.UnicodeScalarView(), r = String.UnicodeScalarView()
                l.append(contentsOf: scalars[..<cut]); r.append(contentsOf: scalars[cut...])
                let left = String(l), right = String(r)
                if let li = lastID[left], let ri = lastID[right] { local.append((left, right, li, ri)) }
            }
            local.sort { ($0.2, $0.3) < ($1.2, $1.3) }
            for (left, right, _, _) in local {
                candidates.append(Candidate(left: left, right: right, score: score[t]!, leftLength: left.unicodeScalars.count,
                                            rightLength: right.unicodeScalars.count, sequence: candidates.count))
            }
        }
        candidates.sort { a, b in
            if a.score != b.score { return a.score > b.score }
            if a.leftLength != b.leftLength { return a.leftLength > b.leftLength }
            if a.rightLength != b.rightLength { return a.rightLength > b.rightLength }
            return a.sequence < b.sequence
        }
        return candidates.map { [$0.left, $0.right] }
    }
}
