// The tokenizer a GGUF file embeds (llama.cpp's `tokenizer.ggml.*` metadata), as a BPETokenizer.
//
//   tokenizer.ggml.model        "gpt2": byte-level BPE, the only model read here
//                               (not "llama" SentencePiece, "bert" WordPiece, ...)
//   tokenizer.ggml.pre          the pre-tokenizer (PreTokenizer.swift): "gpt2", or "smollm"
//                               (every digit alone, then GPT-2's regex; SmolLM2)
//   tokenizer.ggml.tokens       [STRING] token i in GPT-2's byte-to-unicode form ("Ġthe"); CONTROL and
//                               USER_DEFINED tokens as their text ("<|im_start|>")
//   tokenizer.ggml.merges       [STRING] "left right" in rank order
//   tokenizer.ggml.token_type   [INT32] per token (optional): 1 NORMAL, 2 UNKNOWN, 3 CONTROL,
//                               4 USER_DEFINED, 5 UNUSED, 6 BYTE
//   tokenizer.ggml.eos_token_id, .bos_token_id   (optional) -> endOfText, beginningOfSequence
//
// CONTROL tokens are the special tokens: plain text to `encode(_:)`, their ids when allowed
// (`encode(_:allowedSpecial:)`), as tiktoken and llama.cpp's parse_special do. USER_DEFINED tokens
// are matched in any text, as llama.cpp and Hugging Face match non-special added tokens. Without
// token types, the special tokens are those that are neither a byte nor made by a merge.
// A byte without a token of its own (SmolLM2 has none for 0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0,
// 0xC1, 0xF1, 0xF2, 0xF5–0xFF) is dropped by encode, as Hugging Face and llama.cpp do.
// Every problem is an InputError naming the file and the metadata field.

import Foundation
import MyopiaSupport
import MyopiaFormats

extension PreTokenizer {
    /// `tokenizer.ggml.pre` values and the pre-tokenizer each stands for. llama.cpp knows many
    /// more; only those checked against a reference here are accepted.
    public static let ggufNames: [String: PreTokenizer] = ["gpt2": .gpt2, "smollm": .smollm]
}

extension BPETokenizer {
    /// llama.cpp's token types (`tokenizer.ggml.token_type`).
    enum GGUFTokenType: Int {
        case normal = 1, unknown, control, userDefined, unused, byte
    }

    /// The tokenizer embedded in the GGUF file at `url`; `name` defaults to the path.
    public static func load(gguf url: URL, name: String? = nil) throws -> BPETokenizer {
        guard FileManager.default.fileExists(atPath: url.path) else { throw InputError.missing(file: url.path, field: "file") }
        return try BPETokenizer(gguf: GGUFFile(contentsOf: url), name: name ?? url.path)
    }

    /// The tokenizer in a parsed GGUF file's metadata.
    public init(gguf file: GGUFFile, name: String) throws {
        let source = file.source
        func field(_ key: String) -> String { "metadata \(ggufQuoted(key))" }

        let model = try file.string("tokenizer.ggml.model")
        guard model == "gpt2" else {
            throw InputError.unsupported(file: source, field: field("tokenizer.ggml.model"),
                                          value: "\(ggufQuoted(model)) (only \"gpt2\", byte-level BPE, is read)")
        }
        let preName = try file.string("tokenizer.ggml.pre")
        guard let preTokenizer = PreTokenizer.ggufNames[preName] else {
            throw InputError.unsupported(file: source, field: field("tokenizer.ggml.pre"),
                                          value: "\(ggufQuoted(preName)) (known: \(PreTokenizer.ggufNames.keys.sorted().joined(separator: ", ")))")
        }
        let tokens = try file.stringArray("tokenizer.ggml.tokens")
        guard tokens.count >= 256, tokens.count < Int(Int32.max) else {
            throw InputError.invalidValue(file: source, field: field("tokenizer.ggml.tokens"),
                                           expected: "at least 256 tokens (a byte-level vocabulary)", found: "\(tokens.count)")
        }
        let merges = try file.stringArray("tokenizer.ggml.merges")

        // Token types: CONTROL -> special, USER_DEFINED -> always matched; both written as text.
        var specials: [String: Int32]?
        var added: [String: Int32] = [:]
        var verbatim = Set<Int>()
        if file.metadata["tokenizer.ggml.token_type"] != nil {
            let types = try file.intArray("tokenizer.ggml.token_type")
            guard types.count == tokens.count else {
                throw InputError.invalidValue(file: source, field: field("tokenizer.ggml.token_type"),
                                               expected: "\(tokens.count) entries (one per token)", found: "\(types.count)")
            }
            var found: [String: Int32] = [:]
            for (id, raw) in types.enumerated() {
                guard let type = GGUFTokenType(rawValue: raw) else {
                    throw InputError.invalidValue(file: source, field: "\(field("tokenizer.ggml.token_type"))[\(id)]",
                                                   expected: "a token type in 1...6", found: "\(raw)")
                }
                guard type == .control || type == .userDefined else { continue }
                let text = tokens[id]
                guard !text.isEmpty, found[text] == nil, added[text] == nil else {
                    throw InputError.invalidValue(file: source, field: "\(field("tokenizer.ggml.tokens"))[\(id)]",
                                                   expected: "a non-empty \(type == .control ? "control" : "user-defined") token listed once",
                                                   found: Self.quoted(text))
                }
                if type == .control { found[text] = Int32(id) } else { added[text] = Int32(id) }
                verbatim.insert(id)
            }
            specials = found
        }

        func tokenID(_ key: String) throws -> Int32? {
            guard file.metadata[key] != nil else { return nil }
            let id = try file.int(key)
            guard id >= 0, id < tokens.count else {
                throw InputError.invalidValue(file: source, field: field(key), expected: "a token id in 0..<\(tokens.count)", found: "\(id)")
            }
            return Int32(id)
        }
        let eos = try tokenID("tokenizer.ggml.eos_token_id")
        let bos = try tokenID("tokenizer.ggml.bos_token_id")

        let tokensField = field("tokenizer.ggml.tokens"), mergesField = field("tokenizer.ggml.merges")
        self = try Self.build(name: name, tokens: tokens, tokenFile: source, tokenField: { "\(tokensField)[\($0)]" },
                              merges: Self.mergeRules(merges, source: source, field: mergesField),
                              mergeFile: source, mergeField: { "\(mergesField)[\($0)]" },
                              specialTokens: specials, verbatim: verbatim, addedTokens: added, bytesMayLackTokens: true,
                              preTokenizer: preTokenizer, endOfText: eos, beginningOfSequence: bos)
    }
}
