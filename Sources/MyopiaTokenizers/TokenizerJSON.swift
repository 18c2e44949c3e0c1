// TokenizerJSON: a Hugging Face `tokenizer.json` (the `tokenizers` library's format) read into the
// parts Myopia runs (HuggingFaceTokenizer.swift). Every part Myopia does not run is refused with an
// InputError naming the field and the value (`pre_tokenizer.pretokenizers[1].type: unsupported
// value "BertPreTokenizer"`), never skipped; every malformed value is refused by its field.
//
//   added_tokens     [{id, content, special, lstrip, rstrip, single_word, normalized}]
//   normalizer       null, NFC, NFD, NFKC, NFKD, Lowercase, Replace (a String pattern), Prepend,
//                    Strip, or a Sequence of these
//   pre_tokenizer    null, ByteLevel, Split (a String pattern with any behavior; or GPT-2's,
//                    Llama 3's or Qwen2's regex, Isolated), Digits, Metaspace, or a Sequence of
//                    these (ByteLevel last, Metaspace first)
//   model            BPE: vocab, merges ("a b" strings or [a, b] pairs), unk_token, byte_fallback,
//                    fuse_unk, ignore_merges; dropout null (or 0); continuing_subword_prefix and
//                    end_of_word_suffix null or ""
//   post_processor   null, ByteLevel, TemplateProcessing (single: special tokens around $A), or a
//                    Sequence of these
//   decoder          null, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, or a Sequence
//   truncation, padding   null
//
// This is what GPT-NeoX / Pythia, GPT-2, SmolLM, Qwen2 / 2.5 / 3, Llama 3, Llama 2, Mistral and
// Gemma ship. WordPiece, Unigram and WordLevel models, BERT's normalizer and pre-tokenizer,
// regexes other than the three above, and the rest are refused.

import Foundation
import MyopiaSupport

public struct TokenizerJSON: Sendable {
    /// The file, for messages.
    public let source: String
    public let addedTokens: [AddedToken]
    /// Applied in order; empty when the file has none.
    public let normalizers: [Normalizer]
    /// Applied in order; empty when the file has none.
    public let preTokenizers: [PreTokenizerStep]
    public let model: BPE
    /// What `encode(_:addSpecialTokens: true)` puts around the ids.
    public let postProcessor: PostProcessor
    /// Applied in order; nil when the file has none (tokens are then joined with spaces).
    public let decoders: [Decoder]?

    public struct AddedToken: Sendable, Equatable {
        public var id: Int
        public var content: String
        public var special: Bool
        /// Whitespace before the token is part of the match (and so is not encoded).
        public var lstrip: Bool
        /// Whitespace after the token is part of the match.
        public var rstrip: Bool
        /// Matched only where no word character touches it.
        public var singleWord: Bool
        /// Matched in the normalized text (its content normalized too), not in the text as given.
        public var normalized: Bool
    }

    public enum Normalizer: Sendable, Equatable {
        case nfc, nfd, nfkc, nfkd, lowercase
        /// Every occurrence of `pattern`, left to right, becomes `content`.
        case replace(pattern: String, content: String)
        /// Put in front of a non-empty text.
        case prepend(String)
        /// Whitespace removed at the start and/or the end.
        case strip(left: Bool, right: Bool)
    }

    public enum SplitBehavior: String, Sendable, Equatable {
        case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious",
             mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
    }

    public enum PrependScheme: String, Sendable, Equatable {
        case first, always, never
    }

    public enum PreTokenizerStep: Sendable, Equatable {
        /// Text to GPT-2's byte-to-unicode characters, first cut by GPT-2's regex when `useRegex`;
        /// `addPrefixSpace`: a space put before each text that does not start with one.
        case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
        /// One of the regexes that PreTokenizer scans (isolated pieces).
        case regex(PreTokenizer)
        /// Cut at every occurrence of a literal string.
        case split(String, SplitBehavior)
        /// Numbers apart from the rest: each number character alone, or runs of them.
        case digits(individual: Bool)
        /// Spaces to `replacement`, which is put first as `prependScheme` says; then, when `split`,
        /// a cut before each `replacement`.
        case metaspace(replacement: String, prependScheme: PrependScheme, split: Bool)
    }

    public struct BPE: Sendable {
        /// (token, id) in the order written.
        public var vocab: [(token: String, id: Int)]
        /// (left, right) in rank order.
        public var merges: [(left: String, right: String)]
        public var unknownToken: String?
        public var byteFallback: Bool
        public var fuseUnknown: Bool
        public var ignoreMerges: Bool
    }

    public struct PostProcessor: Sendable, Equatable {
        /// Ids before the text's (e.g. `<|begin_of_text|>`, `<bos>`).
        public var prefix: [Int32] = []
        /// Ids after it (e.g. an end-of-sequence token).
        public var suffix: [Int32] = []
    }

    public enum Decoder: Sendable, Equatable {
        case byteLevel
        case replace(pattern: String, content: String)
        case byteFallback
        case fuse
        case strip(content: Unicode.Scalar, start: Int, stop: Int)
        case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme)
    }

    /// Bounds no real file comes near (they have a few steps, and insert "▁"), so that a file
    /// cannot make encoding take unbounded time or memory: steps per list, the length of a string
    /// a Replace or Prepend inserts, and how many times the normalizer's (or the decoder's)
    /// Replace steps and Unicode forms may multiply a text's length.
    public static let maxSteps = 64
    public static let maxInsertedBytes = 256
    public static let maxGrowth = 1024

    /// The regexes a Split pre-tokenizer may hold, exactly as the files write them.
    public static let knownRegexes: [String: PreTokenizer] = [
        #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#: .gpt2,
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .llama3,
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .qwen2,
    ]

    // MARK: - Reading

    /// Reads and checks the file at `url`.
    public init(contentsOf url: URL) throws {
        try self.init(bytes: BPETokenizer.readFile(url), source: url.path)
    }

    /// Reads and checks a tokenizer.json held in memory; `source` names it in errors.
    public init(bytes: [UInt8], source: String) throws {
        self.source = source
        let root = JSONField(value: try JSONValue.parse(bytes, file: source), path: "", file: source)
        guard case .object = root.value else { throw root.wrong("a JSON object (a tokenizer.json)") }
        if let version = try root.optional("version") {
            guard try version.string() == "1.0" else { throw version.wrong("\"1.0\"") }
        }
        for field in ["truncation", "padding"] {
            if let value = try root.optional(field) {
                throw InputError.unsupported(file: source, field: value.path, value: "\(value.value.summary) (Myopia encodes whole texts: only null is read)")
            }
        }
        model = try Self.bpe(root.required("model"))
        normalizers = try root.optional("normalizer").map { try Self.normalizers($0) } ?? []
        preTokenizers = try Self.preTokenizerSteps(root.optional("pre_tokenizer"))
        decoders = try root.optional("decoder").map { try Self.decoders($0) }
        addedTokens = try Self.addedTokens(root.optional("added_tokens"))
        // Special token ids in a template are checked against the vocabulary by HuggingFaceTokenizer.
        postProcessor = try root.optional("post_processor").map { try Self.postProcessor($0) } ?? PostProcessor()
        try checkBounds()
    }

    /// The bounds above; each length is a UTF-8 byte count.
    private func checkBounds() throws {
        func steps(_ field: String, _ count: Int) throws {
            guard count <= Self.maxSteps else {
                throw InputError.invalidValue(file: source, field: field, expected: "at most \(Self.maxSteps) steps", found: "\(count)")
            }
        }
        try steps("normalizer", normalizers.count)
        try steps("pre_tokenizer", preTokenizers.count)
        try steps("decoder", decoders?.count ?? 0)
        func growth(_ pattern: String, _ content: String) -> Double {
            max(1, Double(content.utf8.count) / Double(max(1, pattern.utf8.count)))
        }
        let normalizerGrowth = normalizers.reduce(1.0) { product, step in
            switch step {
            case .nfc, .nfd, .lowercase: return product * 3   // one character's UTF-8 grows at most threefold
            case .nfkc, .nfkd: return product * 11            // U+FDFA: 3 bytes to 33
            case .replace(let pattern, let content): return product * growth(pattern, content)
            case .prepend, .strip: return product
            }
        }
        let decoderGrowth = (decoders ?? []).reduce(1.0) { product, step in
            if case .replace(let pattern, let content) = step { return product * growth(pattern, content) }
            return product
        }
        for (field, value) in [("normalizer", normalizerGrowth), ("decoder", decoderGrowth)] where value > Double(Self.maxGrowth) {
            throw InputError.unsupported(file: source, field: field,
                                          value: "steps that can multiply a text's length by \(value) (at most \(Self.maxGrowth))")
        }
    }

    /// A string a Replace or Prepend inserts: at most maxInsertedBytes.
    private static func inserted(_ field: JSONField) throws -> String {
        let s = try field.string()
        guard s.utf8.count <= maxInsertedBytes else { throw field.wrong("a string of at most \(maxInsertedBytes) bytes") }
        return s
    }

    /// The "type" of a component, which must be one of `known`.
    private static func type(_ field: JSONField, _ known: [String]) throws -> String {
        let typeField = try field.required("type")
        let type = try typeField.string()
        guard known.contains(type) else {
            throw InputError.unsupported(file: field.file, field: typeField.path,
                                          value: "\(BPETokenizer.quoted(type)) (Myopia reads \(known.joined(separator: ", ")))")
        }
        return type
    }

    private static func flag(_ field: JSONField, _ key: String, default value: Bool? = nil) throws -> Bool {
        if let value, try field.optional(key) == nil { return value }
        return try field.required(key).bool()
    }

    /// A single character (a Rust `char`: one scalar), as `replacement` and `content` fields hold.
    private static func character(_ field: JSONField) throws -> Unicode.Scalar {
        let s = try field.string()
        guard s.unicodeScalars.count == 1, let c = s.unicodeScalars.first else { throw field.wrong("one character") }
        return c
    }

    /// Metaspace's prepend_scheme (default always), and the older add_prefix_space: false, which
    /// `tokenizers` reads as never and refuses beside any other scheme.
    private static func prependScheme(_ field: JSONField) throws -> PrependScheme {
        var scheme = PrependScheme.always
        if let schemeField = try field.optional("prepend_scheme") {
            guard let s = PrependScheme(rawValue: try schemeField.string()) else { throw schemeField.wrong("first, always or never") }
            scheme = s
        }
        if let legacy = try field.optional("add_prefix_space"), try !legacy.bool() {
            guard scheme == .never else {
                throw InputError.invalidValue(file: field.file, field: legacy.path, expected: "true, or prepend_scheme \"never\"",
                                               found: "false with prepend_scheme \(scheme.rawValue)")
            }
        }
        return scheme
    }

    /// A Replace or Split pattern: {"String": s}; a {"Regex": r} is refused unless `regexes` knows it.
    private enum Pattern { case string(String), regex(PreTokenizer) }

    /// A pattern that must be a String (Replace's).
    private static func stringPattern(_ field: JSONField) throws -> String {
        switch try pattern(field) {
        case .string(let s): return s
        case .regex: throw field.wrong("a String pattern")   // unreachable: no regex is known here
        }
    }

    private static func pattern(_ field: JSONField, regexes: [String: PreTokenizer] = [:]) throws -> Pattern {
        let members = try field.entries()
        guard members.count == 1, let (kind, value) = members.first.map({ ($0.key, $0.field) }) else {
            throw field.wrong("{\"String\": …} or {\"Regex\": …}")
        }
        let path = field.path + "." + kind
        switch kind {
        case "String":
            let s = try value.string()
            guard !s.isEmpty else { throw InputError.invalidValue(file: field.file, field: path, expected: "a non-empty string", found: "\"\"") }
            return .string(s)
        case "Regex":
            let r = try value.string()
            guard let known = regexes[r] else {
                let readable = regexes.isEmpty ? "only String patterns here" : "String patterns, and GPT-2's, Llama 3's and Qwen2's pre-tokenizer regexes"
                throw InputError.unsupported(file: field.file, field: path, value: "\(BPETokenizer.quoted(r)) (Myopia reads \(readable))")
            }
            return .regex(known)
        default:
            throw InputError.invalidValue(file: field.file, field: field.path, expected: "{\"String\": …} or {\"Regex\": …}",
                                           found: "the key \(BPETokenizer.quoted(kind))")
        }
    }

    // MARK: - Normalizers

    private static func normalizers(_ field: JSONField) throws -> [Normalizer] {
        switch try type(field, ["Sequence", "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Replace", "Prepend", "Strip"]) {
        case "Sequence": return try field.required("normalizers").array().flatMap { try normalizers($0) }
        case "NFC": return [.nfc]
        case "NFD": return [.nfd]
        case "NFKC": return [.nfkc]
        case "NFKD": return [.nfkd]
        case "Lowercase": return [.lowercase]
        case "Replace":
            return [.replace(pattern: try stringPattern(field.required("pattern")), content: try inserted(field.required("content")))]
        case "Prepend": return [.prepend(try inserted(field.required("prepend")))]
        default: return [.strip(left: try flag(field, "strip_left"), right: try flag(field, "strip_right"))]
        }
    }

    // MARK: - Pre-tokenizers

    private static func preTokenizerSteps(_ field: JSONField?) throws -> [PreTokenizerStep] {
        guard let field else { return [] }
        var steps: [(PreTokenizerStep, JSONField)] = []
        func read(_ field: JSONField) throws {
            switch try type(field, ["Sequence", "ByteLevel", "Split", "Digits", "Metaspace"]) {
            case "Sequence":
                for child in try field.required("pretokenizers").array() { try read(child) }
            case "ByteLevel":
                steps.append((.byteLevel(addPrefixSpace: try flag(field, "add_prefix_space"),
                                         useRegex: try flag(field, "use_regex", default: true)), field))
                _ = try flag(field, "trim_offsets")   // offsets only; required by the format
            case "Split":
                let behaviorField = try field.required("behavior")
                guard let behavior = SplitBehavior(rawValue: try behaviorField.string()) else {
                    throw behaviorField.wrong("Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous")
                }
                let invert = try field.required("invert")
                if try invert.bool() {
                    throw InputError.unsupported(file: field.file, field: invert.path, value: "true (an inverted split)")
                }
                switch try pattern(field.required("pattern"), regexes: knownRegexes) {
                case .string(let s): steps.append((.split(s, behavior), field))
                case .regex(let regex):
                    guard behavior == .isolated else {
                        throw InputError.unsupported(file: field.file, field: behaviorField.path,
                                                      value: "\(BPETokenizer.quoted(behavior.rawValue)) with a regex (only Isolated)")
                    }
                    steps.append((.regex(regex), field))
                }
            case "Digits":
                steps.append((.digits(individual: try flag(field, "individual_digits")), field))
            default:   // Metaspace
                let replacement = try character(field.required("replacement"))
                let split = try field.optional("split").map { try $0.bool() } ?? true
                steps.append((.metaspace(replacement: String(replacement), prependScheme: try prependScheme(field), split: split), field))
            }
        }
        try read(field)
        for (k, (step, stepField)) in steps.enumerated() {
            switch step {
            case .byteLevel where k != steps.count - 1:
                throw InputError.unsupported(file: field.file, field: stepField.path + ".type",
                                              value: "\"ByteLevel\" before another pre-tokenizer (Myopia reads it last)")
            case .metaspace where k != 0:
                throw InputError.unsupported(file: field.file, field: stepField.path + ".type",
                                              value: "\"Metaspace\" after another pre-tokenizer (Myopia reads it first)")
            default: break
            }
        }
        return steps.map(\.0)
    }

    // MARK: - Model

    private static func bpe(_ field: JSONField) throws -> BPE {
        _ = try type(field, ["BPE"])
        if let dropout = try field.optional("dropout") {
            guard case .integer(0) = dropout.value else {
                throw InputError.unsupported(file: field.file, field: dropout.path, value: "\(dropout.value.summary) (BPE dropout: only null is read)")
            }
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let affix = try field.optional(key), try affix.string() != "" {
                throw InputError.unsupported(file: field.file, field: affix.path, value: "\(affix.value.summary) (only null or \"\")")
            }
        }
        let unknown = try field.optional("unk_token").map { try $0.string() }
        let byteFallback = try field.optional("byte_fallback").map { try $0.bool() } ?? false
        let fuseUnknown = try field.optional("fuse_unk").map { try $0.bool() } ?? false
        let ignoreMerges = try field.optional("ignore_merges").map { try $0.bool() } ?? false

        let vocab = try field.required("vocab").entries().map { (token: $0.key, id: try $0.field.int(in: 0...Int(Int32.max - 1))) }
        let mergesField = try field.required("merges")
        let merges = try mergesField.array().map { entry -> (left: String, right: String) in
            if case .array = entry.value {
                let sides = try entry.array()
                guard sides.count == 2 else { throw entry.wrong("a pair [left, right]") }
                return (try sides[0].string(), try sides[1].string())
            }
            let line = try entry.string()
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw entry.wrong("two tokens separated by one space") }
            return (String(parts[0]), String(parts[1]))
        }
        return BPE(vocab: vocab, merges: merges, unknownToken: unknown, byteFallback: byteFallback, fuseUnknown: fuseUnknown,
                   ignoreMerges: ignoreMerges)
    }

    // MARK: - Added tokens

    private static func addedTokens(_ field: JSONField?) throws -> [AddedToken] {
        guard let field else { return [] }
        return try field.array().map { entry in
            AddedToken(id: try entry.required("id").int(in: 0...Int(Int32.max - 1)), content: try entry.required("content").string(),
                       special: try flag(entry, "special"), lstrip: try flag(entry, "lstrip"), rstrip: try flag(entry, "rstrip"),
                       singleWord: try flag(entry, "single_word"), normalized: try flag(entry, "normalized"))
        }
    }

    // MARK: - Post-processors

    private static func postProcessor(_ field: JSONField) throws -> PostProcessor {
        switch try type(field, ["Sequence", "ByteLevel", "TemplateProcessing"]) {
        case "Sequence":
            var combined = PostProcessor()
            for child in try field.required("processors").array() {
                let inner = try postProcessor(child)
                combined.prefix = inner.prefix + combined.prefix
                combined.suffix += inner.suffix
            }
            return combined
        case "ByteLevel":
            return PostProcessor()   // offsets only
        default:
            return try template(field)
        }
    }

    /// TemplateProcessing's `single` template: special tokens, then $A, then special tokens.
    private static func template(_ field: JSONField) throws -> PostProcessor {
        var tokens: [String: [Int32]] = [:]
        for (name, entry) in try field.required("special_tokens").entries() {
            let ids = try entry.required("ids").array().map { Int32(try $0.int(in: 0...Int(Int32.max - 1))) }
            let written = try entry.required("tokens").array().map { try $0.string() }
            guard written.count == ids.count else {
                throw InputError.invalidValue(file: field.file, field: entry.path + ".tokens", expected: "one token per id (\(ids.count))",
                                               found: "\(written.count)")
            }
            tokens[name] = ids
        }
        _ = try field.required("pair").array()   // pairs of texts are not encoded here
        var result = PostProcessor()
        var sawSequence = false
        for piece in try field.required("single").array() {
            let members = try piece.entries()
            guard members.count == 1, let (kind, body) = members.first.map({ ($0.key, $0.field) }) else {
                throw piece.wrong("{\"SpecialToken\": …} or {\"Sequence\": …}")
            }
            let bodyField = JSONField(value: body.value, path: piece.path + "." + kind, file: field.file)
            _ = try bodyField.required("type_id").int(in: 0...Int(UInt32.max))
            let idField = try bodyField.required("id")
            let id = try idField.string()
            switch kind {
            case "Sequence":
                guard id == "A", !sawSequence else {
                    throw InputError.unsupported(file: field.file, field: idField.path,
                                                  value: "\(BPETokenizer.quoted(id)) (a single-text template holds $A once)")
                }
                sawSequence = true
            case "SpecialToken":
                guard let ids = tokens[id] else {
                    throw InputError.invalidValue(file: field.file, field: idField.path, expected: "a token of special_tokens",
                                                   found: BPETokenizer.quoted(id))
                }
                if sawSequence { result.suffix += ids } else { result.prefix += ids }
            default:
                throw piece.wrong("{\"SpecialToken\": …} or {\"Sequence\": …}")
            }
        }
        guard sawSequence else {
            throw InputError.invalidValue(file: field.file, field: field.path + ".single", expected: "a template holding $A", found: "none")
        }
        return result
    }

    // MARK: - Decoders

    private static func decoders(_ field: JSONField) throws -> [Decoder] {
        switch try type(field, ["Sequence", "ByteLevel", "Replace", "ByteFallback", "Fuse", "Strip", "Metaspace"]) {
        case "Sequence": return try field.required("decoders").array().flatMap { try decoders($0) }
        case "ByteLevel": return [.byteLevel]
        case "Replace":
            return [.replace(pattern: try stringPattern(field.required("pattern")), content: try inserted(field.required("content")))]
        case "ByteFallback": return [.byteFallback]
        case "Fuse": return [.fuse]
        case "Strip":
            return [.strip(content: try character(field.required("content")), start: try field.required("start").int(in: 0...1 << 20),
                           stop: try field.required("stop").int(in: 0...1 << 20))]
        default:   // Metaspace
            return [.metaspace(replacement: try character(field.required("replacement")), prependScheme: try prependScheme(field))]
        }
    }
}
