// HuggingFaceTokenizer: a tokenizer.json (TokenizerJSON.swift) run as Hugging Face's `tokenizers`
// runs it, giving the same ids (the tests check every fixture string against tokenizers 0.23).
//
// Encoding (`tokenizers`' encode):
//   1. the added tokens not marked `normalized` are cut out of the text (AddedTokens.swift);
//   2. each stretch between them is normalized (TextNormalizer.swift), then the `normalized`
//      added tokens are cut out of it;
//   3. each stretch left is cut into pieces by the pre-tokenizer (PreTokenization.swift);
//   4. each piece is encoded by the BPE model (BPEModel.swift): byte-level when the
//      pre-tokenizer ends with ByteLevel, else by characters with byte fallback / unknown token;
//   5. with `addSpecialTokens`, the post-processor's tokens go around the ids (BOS for Llama 3
//      and Gemma; nothing for GPT-NeoX and Qwen2).
// Special tokens written in the text ("<|endoftext|>") become their ids, as in `tokenizers`.
// Decoding: ids -> token strings (added tokens as their content) -> the decoder (TokenDecoder.swift).

import Foundation
import MyopiaSupport

public struct HuggingFaceTokenizer: Tokenizer {
    public let name: String
    /// One more than the largest id of the vocabulary and the added tokens.
    public let vocabSize: Int
    /// The added tokens (`added_tokens`), by content.
    public let addedTokens: [String: Int32]
    /// Those of them marked special (skipped by `decode(_:skipSpecialTokens: true)`).
    public let specialTokens: [String: Int32]
    /// The ids `encode(_:addSpecialTokens: true)` puts before and after the text's.
    public let postProcessor: TokenizerJSON.PostProcessor
    /// `<|endoftext|>` when it is an added token (GPT-NeoX, Qwen2); else nil, and the model's
    /// config names its end of sequence.
    public let endOfText: Int32?

    /// Whether `encode(_:addSpecialTokens: true)` starts the ids with a token (a BOS).
    public var addsBOS: Bool { !postProcessor.prefix.isEmpty }
    /// The token it starts them with, when it is one token (Llama 3: `<|begin_of_text|>`, Gemma: `<bos>`).
    public var beginningOfSequence: Int32? { postProcessor.prefix.count == 1 ? postProcessor.prefix[0] : nil }

    /// What encode and decode run.
    private let pipeline: Pipeline

    /// Reads `url` (a tokenizer.json); `name` defaults to the path.
    public static func load(tokenizerJSON url: URL, name: String? = nil) throws -> HuggingFaceTokenizer {
        try HuggingFaceTokenizer(TokenizerJSON(contentsOf: url), name: name ?? url.path)
    }

    public init(_ file: TokenizerJSON, name: String) throws {
        let source = file.source
        self.name = name

        // The vocabulary: ids unique, without large gaps (arrays below are sized by the largest).
        let model = file.model
        let entries = model.vocab.count + file.addedTokens.count
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(model.vocab.count)
        var size = 0
        for (token, id) in model.vocab {
            vocabulary[token] = Int32(id)
            size = max(size, id + 1)
        }
        for token in file.addedTokens { size = max(size, token.id + 1) }
        guard size <= entries + 65536 else {
            throw InputError.invalidValue(file: source, field: "model.vocab", expected: "ids below \(entries + 65536) (one per token, with few gaps)",
                                           found: "an id of \(size - 1) among \(entries) tokens")
        }
        var strings = [String?](repeating: nil, count: size)
        for (token, id) in model.vocab {
            if let other = strings[id] {
                throw InputError.invalidValue(file: source, field: "model.vocab[\(BPETokenizer.quoted(token))]", expected: "an id of its own",
                                               found: "\(id), also the id of \(BPETokenizer.quoted(other))")
            }
            strings[id] = token
        }

        let normalizer = TextNormalizer(steps: file.normalizers)
        let added = try Self.checkAddedTokens(file, vocabulary: vocabulary, strings: &strings, normalizer: normalizer)
        addedTokens = Dictionary(added.map { ($0.token.content, Int32($0.token.id)) }, uniquingKeysWith: { a, _ in a })
        specialTokens = Dictionary(added.filter(\.token.special).map { ($0.token.content, Int32($0.token.id)) }, uniquingKeysWith: { a, _ in a })
        func matcher(normalized: Bool) -> AddedTokenMatcher {
            AddedTokenMatcher(added.filter { $0.token.normalized == normalized && !$0.pattern.isEmpty }.map { entry in
                (Array(entry.pattern.utf8), AddedTokenMatcher.Token(id: Int32(entry.token.id), lstrip: entry.token.lstrip, rstrip: entry.token.rstrip,
                                                                    singleWord: entry.token.singleWord))
            })
        }
        vocabSize = size

        for id in file.postProcessor.prefix + file.postProcessor.suffix where Int(id) >= size {
            throw InputError.invalidValue(file: source, field: "post_processor", expected: "special token ids below \(size)", found: "\(id)")
        }
        postProcessor = file.postProcessor
        endOfText = addedTokens["<|endoftext|>"]
        let decoder = TokenDecoder(steps: file.decoders)
        let preTokenization = PreTokenization(file.preTokenizers)
        pipeline = Pipeline(model: try Self.bpeModel(model, vocabulary: vocabulary, size: size, byteLevel: preTokenization.byteLevel,
                                                     tokenStrings: strings, decoder: decoder, source: source),
                            normalizer: normalizer, preTokenization: preTokenization,
                            rawMatcher: matcher(normalized: false), normalizedMatcher: matcher(normalized: true),
                            decoder: decoder, tokenStrings: strings, specialContents: Set(specialTokens.keys))
    }

    /// The added tokens that take part, each with the text it is matched as, after checking that
    /// each has the id `tokenizers` gives it: its id in the vocabulary, else the next one after it.
    private static func checkAddedTokens(_ file: TokenizerJSON, vocabulary: [String: Int32], strings: inout [String?],
                                         normalizer: TextNormalizer) throws -> [(token: TokenizerJSON.AddedToken, pattern: String)] {
        var out: [(token: TokenizerJSON.AddedToken, pattern: String)] = []
        var byContent: [String: Int] = [:]
        var owner: [Int: Int] = [:]   // id -> index into added_tokens
        var nextID = file.model.vocab.count
        for (i, token) in file.addedTokens.enumerated() {
            let field = "added_tokens[\(i)]"
            guard !token.content.isEmpty else { continue }   // tokenizers ignores them
            guard byContent[token.content] == nil else {
                throw InputError.invalidValue(file: file.source, field: field + ".content", expected: "a token added once",
                                               found: "\(BPETokenizer.quoted(token.content)), also added_tokens[\(byContent[token.content]!)]")
            }
            byContent[token.content] = i
            let expected: Int
            if let id = vocabulary[token.content] { expected = Int(id) } else { expected = nextID; nextID += 1 }
            guard token.id == expected else {
                throw InputError.invalidValue(file: file.source, field: field + ".id", expected: "\(expected) (the id tokenizers gives \(BPETokenizer.quoted(token.content)))",
                                               found: "\(token.id)")
            }
            if let other = owner[token.id] {
                throw InputError.invalidValue(file: file.source, field: field + ".id", expected: "an id of its own",
                                               found: "\(token.id), also the id of added_tokens[\(other)]")
            }
            owner[token.id] = i
            if let model = strings[token.id], model != token.content {
                throw InputError.invalidValue(file: file.source, field: field + ".id", expected: "an id of its own",
                                               found: "\(token.id), the id of the vocabulary's \(BPETokenizer.quoted(model))")
            }
            // Matched (and decoded) as its normalized form when marked so.
            var pattern = token.content
            if token.normalized && !normalizer.isEmpty {
                pattern = String(decoding: normalizer.normalize(Array(token.content.utf8)).bytes, as: UTF8.self)
            }
            strings[token.id] = pattern
            out.append((token, pattern))
        }
        // Two tokens matched as the same text: tokenizers cannot build its matcher; refuse.
        var patterns: [String: Int] = [:]
        for (k, entry) in out.enumerated() where !entry.pattern.isEmpty {
            let key = (entry.token.normalized ? "n" : "r") + entry.pattern
            if let other = patterns[key] {
                throw InputError.invalidValue(file: file.source, field: "added_tokens", expected: "tokens matched as different texts",
                                               found: "\(BPETokenizer.quoted(entry.pattern)) for ids \(out[other].token.id) and \(entry.token.id)")
            }
            patterns[key] = k
        }
        return out
    }

    /// The BPE model: byte-level (each byte's character looked up) or by characters, and the merges.
    private static func bpeModel(_ model: TokenizerJSON.BPE, vocabulary: [String: Int32], size: Int, byteLevel: Bool,
                                 tokenStrings: [String?], decoder: TokenDecoder, source: String) throws -> BPEModel {
        var unknown: Int32?
        if let unk = model.unknownToken {
            guard let id = vocabulary[unk] else {
                throw InputError.invalidValue(file: source, field: "model.unk_token", expected: "a token of the vocabulary",
                                               found: BPETokenizer.quoted(unk))
            }
            unknown = id
        }
        let fallback: [Int32]? = model.byteFallback
            ? (0..<256).map { vocabulary["<0x" + String(format: "%02X", $0) + ">"] ?? -1 } : nil
        let rules = BPEModel.CharacterRules(byteFallback: fallback, unknown: unknown, fuseUnknown: model.fuseUnknown)

        // Pieces are looked up by their bytes: a byte-level token by the bytes its characters stand
        // for (one that is not in GPT-2's table can never match), any other by its UTF-8.
        var encoder = ByteStringMap(capacity: model.vocab.count)
        for (token, id) in model.vocab {
            if byteLevel {
                if let bytes = ByteLevel.bytes(token) { encoder.insert(bytes, Int64(id)) }
            } else {
                encoder.insert(Array(token.utf8), Int64(id))
            }
        }
        var byteTokens = [Int32](repeating: -1, count: 256)
        let symbols: BPEModel.Symbols
        if byteLevel {
            for b in 0..<256 { byteTokens[b] = encoder.find([UInt8(b)]).map { Int32($0) } ?? -1 }
            let complete = !byteTokens.contains(-1)
            symbols = complete || (unknown == nil && fallback == nil) ? .bytes : .byteCharacters(rules)
        } else {
            symbols = .characters(rules)
        }

        // Merges: both sides and their concatenation are tokens; a pair written twice keeps the
        // later rank, as tokenizers' merge map does.
        var merges = PairMap(capacity: model.merges.count)
        for (rank, merge) in model.merges.enumerated() {
            func id(_ token: String) throws -> Int32 {
                guard let id = vocabulary[token] else {
                    throw InputError.invalidValue(file: source, field: "model.merges[\(rank)]", expected: "two tokens of the vocabulary",
                                                   found: "\(BPETokenizer.quoted(token)), which is not a token")
                }
                return id
            }
            let left = try id(merge.left), right = try id(merge.right)
            guard let merged = vocabulary[merge.left + merge.right] else {
                throw InputError.invalidValue(file: source, field: "model.merges[\(rank)]", expected: "a pair that makes a token of the vocabulary",
                                               found: "\(BPETokenizer.quoted(merge.left + merge.right)), which is not a token")
            }
            merges.set(left, right, rank: UInt32(rank), merged: merged)
        }
        let tokenBytes = tokenStrings.map { $0.map { decoder.bytes(of: $0) } ?? [] }
        return BPEModel(tokenBytes: tokenBytes, byteTokens: byteTokens, encoder: encoder, merges: merges,
                        wholePieceLookup: model.ignoreMerges, symbols: symbols)
    }

    // MARK: - Encoding

    /// Text to ids, as `tokenizers`' `encode(text, add_special_tokens=False)`: added and special
    /// tokens written in the text become their ids; nothing is put around them.
    public func encode(_ text: String) -> [Int32] { encode(text, addSpecialTokens: false) }

    /// Text to ids, as `tokenizers`' `encode(text, add_special_tokens=...)`: with
    /// `addSpecialTokens`, the post-processor's tokens (a BOS) go around them.
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        guard addSpecialTokens else { return pipeline.encode(text) }
        return postProcessor.prefix + pipeline.encode(text) + postProcessor.suffix
    }

    // MARK: - Decoding

    /// Ids to text as `tokenizers`' `decode(ids, skip_special_tokens=False)`: special tokens are
    /// written out. Ids without a token are skipped.
    public func decode(_ ids: [Int32]) -> String { decode(ids, skipSpecialTokens: false) }

    /// Ids to text as `tokenizers`' `decode(ids, skip_special_tokens=...)`.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        pipeline.decode(ids, skipSpecialTokens: skipSpecialTokens)
    }

    /// Each token's bytes, concatenated: what the decoder makes of each token on its own (GPT-2's
    /// byte table undone, `<0xNN>` as its byte, "▁" as a space), without the steps that look at
    /// the whole text (Metaspace's and Strip's removal of the first space). For streaming output.
    public func decodeBytes(_ ids: [Int32]) -> [UInt8] { pipeline.model.decodeBytes(ids) }

    /// A token as the file spells it ("Ġthe", "▁the", "<|endoftext|>"); nil for an id without one.
    public func tokenString(_ id: Int32) -> String? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return pipeline.tokenStrings[Int(id)]
    }
}

/// What encode and decode run, built once. A class, so that the closures of the encoding loop
/// (one call per piece) hold one reference rather than copies of every table.
private final class Pipeline: Sendable {
    let model: BPEModel
    let normalizer: TextNormalizer
    let preTokenization: PreTokenization
    let rawMatcher: AddedTokenMatcher          // added tokens matched in the text as given
    let normalizedMatcher: AddedTokenMatcher   // ... in the normalized text
    let decoder: TokenDecoder
    /// Each id's token string as `tokenizers`' decode sees it; nil where no token has the id.
    let tokenStrings: [String?]
    /// The special tokens' contents: decode skips a token whose string is one of them.
    let specialContents: Set<String>

    init(model: BPEModel, normalizer: TextNormalizer, preTokenization: PreTokenization, rawMatcher: AddedTokenMatcher,
         normalizedMatcher: AddedTokenMatcher, decoder: TokenDecoder, tokenStrings: [String?], specialContents: Set<String>) {
        self.model = model
        self.normalizer = normalizer
        self.preTokenization = preTokenization
        self.rawMatcher = rawMatcher
        self.normalizedMatcher = normalizedMatcher
        self.decoder = decoder
        self.tokenStrings = tokenStrings
        self.specialContents = specialContents
    }

    func encode(_ text: String) -> [Int32] {
        var text = text
        var state = BPEModel.EncodeState(capacity: text.utf8.count / 3 + 2)
        text.withUTF8 { bytes in
            rawMatcher.split(bytes) { range, id in
                if let id { return state.out.append(id) }
                encodeStretch(UnsafeBufferPointer(rebasing: bytes[range]), atStart: range.lowerBound == 0, &state)
            }
        }
        return state.out
    }

    /// A stretch between raw-matched added tokens: normalized, cut at the normalized added tokens,
    /// pre-tokenized, encoded.
    private func encodeStretch(_ stretch: UnsafeBufferPointer<UInt8>, atStart: Bool, _ state: inout BPEModel.EncodeState) {
        guard !stretch.isEmpty else { return }
        func encodeNormalized(_ text: UnsafeBufferPointer<UInt8>, keepsStart: Bool) {
            normalizedMatcher.split(text) { range, id in
                if let id { return state.out.append(id) }
                guard !range.isEmpty else { return }
                preTokenization.forEachPiece(UnsafeBufferPointer(rebasing: text[range]),
                                             atStart: atStart && keepsStart && range.lowerBound == 0) { piece in
                    model.encodePiece(piece, &state)
                }
            }
        }
        if normalizer.isEmpty {
            encodeNormalized(stretch, keepsStart: true)
        } else {
            let (normalized, keepsStart) = normalizer.normalize(Array(stretch))
            normalized.withUnsafeBufferPointer { encodeNormalized($0, keepsStart: keepsStart) }
        }
    }

    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        decoder.decode(ids.compactMap { id in
            guard id >= 0, Int(id) < tokenStrings.count, let token = tokenStrings[Int(id)] else { return nil }
            return skipSpecialTokens && specialContents.contains(token) ? nil : token
        })
    }
}
