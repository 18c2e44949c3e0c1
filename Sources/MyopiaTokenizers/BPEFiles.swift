// Building a BPETokenizer from GPT-2's files, or from the same tables held in memory.
//
//   vocab.json     {"token": id, ...}: every id in 0..<count exactly once. Tokens are written in
//                  GPT-2's byte-to-unicode form (ByteLevel): "Ġthe" is the bytes " the".
//   merges.txt     a "#version" line, then one pair "left right" per line, in rank order. Both
//                  sides and their concatenation must be tokens.
//   gpt2.tiktoken  "base64(token bytes) rank" per line, every rank in 0..<count exactly once.
//                  tiktoken files hold no special tokens: `<|endoftext|>` is added at id = count.
//
// Every problem is an InputError naming the file and the line or token, never a trap.
// Special tokens of vocab.json (and of GGUF tables) are the tokens that are neither a single byte
// nor made by a merge: for GPT-2, `<|endoftext|>` = 50256.

import Foundation
import MyopiaSupport

/// One merge rule as written: the UTF-8 of its two sides, and where it was (line or index).
struct MergeRule {
    let left: ArraySlice<UInt8>
    let right: ArraySlice<UInt8>
    let location: Int
}

extension BPETokenizer {
    // MARK: - Files

    /// A folder with vocab.json and merges.txt.
    public static func load(folder: URL, name: String? = nil) throws -> BPETokenizer {
        try load(vocabJSON: folder.appendingPathComponent("vocab.json"), merges: folder.appendingPathComponent("merges.txt"),
                 name: name ?? folder.path)
    }

    public static func load(vocabJSON: URL, merges mergesURL: URL, name: String? = nil) throws -> BPETokenizer {
        let vocabFile = vocabJSON.path, mergesFile = mergesURL.path
        let tokens = try parseVocabJSON(readFile(vocabJSON), file: vocabFile)
        let rules = try parseMerges(readFile(mergesURL), file: mergesFile)
        return try build(name: name ?? vocabJSON.deletingLastPathComponent().path, tokens: tokens,
                         tokenFile: vocabFile, tokenField: { "token \(quoted(tokens[$0])) (id \($0))" },
                         merges: rules, mergeFile: mergesFile, mergeField: { "line \($0)" }, specialTokens: nil)
    }

    /// A tiktoken ranks file. `specialTokens` defaults to GPT-2's: `<|endoftext|>` after the last rank.
    public static func load(tiktoken url: URL, specialTokens: [String: Int32]? = nil, name: String? = nil) throws -> BPETokenizer {
        let ranks = try parseTiktoken(readFile(url), file: url.path)
        return try BPETokenizer(tiktokenRanks: ranks, specialTokens: specialTokens ?? ["<|endoftext|>": Int32(ranks.count)],
                                name: name ?? url.path, source: url.path)
    }

    // MARK: - Tables in memory

    /// From byte-level token strings (id = index) and merges "left right" in rank order, as a GGUF
    /// file holds them in `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`. `source` and the
    /// field names go into error messages. Special tokens default to those no merge makes.
    /// (`BPETokenizer(gguf:)` reads a whole GGUF tokenizer: token types, pre-tokenizer, eos.)
    public init(tokens: [String], merges: [String], specialTokens: [String: Int32]? = nil, preTokenizer: PreTokenizer = .gpt2,
                name: String, source: String = "tokenizer", tokensField: String = "tokens", mergesField: String = "merges") throws {
        let rules = try Self.mergeRules(merges, source: source, field: mergesField)
        self = try Self.build(name: name, tokens: tokens, tokenFile: source, tokenField: { "\(tokensField)[\($0)]" },
                              merges: rules, mergeFile: source, mergeField: { "\(mergesField)[\($0)]" }, specialTokens: specialTokens,
                              preTokenizer: preTokenizer)
    }

    /// Merge strings "left right" -> rules located by index.
    static func mergeRules(_ merges: [String], source: String, field: String) throws -> [MergeRule] {
        var rules: [MergeRule] = []
        rules.reserveCapacity(merges.count)
        for (i, m) in merges.enumerated() {
            let utf8 = Array(m.utf8)
            guard let sp = utf8.firstIndex(of: 0x20), sp > 0, sp < utf8.count - 1, !utf8[(sp + 1)...].contains(0x20) else {
                throw InputError.invalidValue(file: source, field: "\(field)[\(i)]", expected: "two tokens separated by one space",
                                               found: Self.quoted(m))
            }
            rules.append(MergeRule(left: utf8[..<sp], right: utf8[(sp + 1)...], location: i))
        }
        return rules
    }

    /// From tiktoken ranks: `ranks[r]` is the bytes of the token with rank (= id) r. A pair merges
    /// when the two tokens' concatenation is a token, in the order of that token's rank.
    public init(tiktokenRanks ranks: [[UInt8]], specialTokens: [String: Int32], name: String, source: String = "ranks") throws {
        let count = ranks.count
        var encoder = ByteStringMap(capacity: count)
        for (id, token) in ranks.enumerated() {
            guard !token.isEmpty else {
                throw InputError.invalidValue(file: source, field: "rank \(id)", expected: "a non-empty token", found: "0 bytes")
            }
            if let other = encoder.insert(token, Int64(id)) {
                throw InputError.invalidValue(file: source, field: "rank \(id)", expected: "a token listed once", found: "the same bytes as rank \(other)")
            }
        }
        let byteTokens = try Self.byteTokens(encoder, file: source)
        var splits = 0
        for token in ranks { splits += token.count - 1 }
        var pairs = PairMap(capacity: splits)
        for (id, token) in ranks.enumerated() where token.count > 1 {
            for k in 1..<token.count {
                guard let l = encoder.find(Array(token[..<k])), let r = encoder.find(Array(token[k...])) else { continue }
                _ = pairs.insert(Int32(l), Int32(r), rank: UInt32(id), merged: Int32(id))
            }
        }
        var tokenBytes = ranks
        for (text, id) in specialTokens.sorted(by: { $0.value < $1.value }) {
            guard Int(id) >= count, Int(id) < count + 65536 else {
                throw InputError.invalidValue(file: source, field: "special token \(Self.quoted(text))",
                                               expected: "an id in \(count)..<\(count + 65536), after the ranks", found: "\(id)")
            }
            while tokenBytes.count <= Int(id) { tokenBytes.append([]) }
            guard tokenBytes[Int(id)].isEmpty else {
                throw InputError.invalidValue(file: source, field: "special token \(Self.quoted(text))", expected: "an id of its own", found: "\(id)")
            }
            tokenBytes[Int(id)] = Array(text.utf8)
        }
        self.init(name: name, tokenBytes: tokenBytes, byteTokens: byteTokens, encoder: encoder, merges: pairs,
                  specialTokens: specialTokens, wholePieceLookup: true)
    }

    // MARK: - Building and checking

    /// `verbatim`: ids whose token string is the text itself rather than its byte-to-unicode form
    /// (a GGUF's CONTROL and USER_DEFINED tokens, "<|im_start|>"); they decode to their UTF-8 and
    /// take no part in merges. `addedTokens` are matched in any text (BPETokenizer.addedTokens).
    /// `bytesMayLackTokens`: a byte without a token is dropped by encode (as Hugging Face and
    /// llama.cpp do; SmolLM2 has none for 21 bytes) rather than refused.
    static func build(name: String, tokens: [String], tokenFile: String, tokenField: (Int) -> String,
                      merges: [MergeRule], mergeFile: String, mergeField: (Int) -> String,
                      specialTokens explicit: [String: Int32]?, verbatim: Set<Int> = [], addedTokens: [String: Int32] = [:],
                      bytesMayLackTokens: Bool = false,
                      preTokenizer: PreTokenizer = .gpt2, endOfText: Int32? = nil,
                      beginningOfSequence: Int32? = nil) throws -> BPETokenizer {
        let count = tokens.count
        guard count >= 256, count < Int(Int32.max) else {
            throw InputError.invalidValue(file: tokenFile, field: "tokens", expected: "at least the 256 byte tokens", found: "\(count) tokens")
        }
        // Every token whose characters are all in the byte-to-unicode table, by its bytes.
        let decoded = tokens.enumerated().map { verbatim.contains($0.offset) ? nil : ByteLevel.bytes($0.element) }
        var all = ByteStringMap(capacity: count)
        for (id, bytes) in decoded.enumerated() {
            guard let bytes else { continue }
            if let other = all.insert(bytes, Int64(id)) {
                throw InputError.invalidValue(file: tokenFile, field: tokenField(id), expected: "a token listed once",
                                               found: "the same token as id \(other)")
            }
        }
        let byteTokens = try Self.byteTokens(all, file: tokenFile, allowMissing: bytesMayLackTokens)

        var pairs = PairMap(capacity: merges.count)
        var made = [Bool](repeating: false, count: count)
        for (rank, rule) in merges.enumerated() {
            func token(_ side: ArraySlice<UInt8>) throws -> (id: Int32, bytes: [UInt8]) {
                guard let bytes = ByteLevel.bytes(utf8: side), let id = all.find(bytes) else {
                    throw InputError.invalidValue(file: mergeFile, field: mergeField(rule.location), expected: "two tokens of the vocabulary",
                                                   found: "\(quoted(String(decoding: side, as: UTF8.self))), which is not a token")
                }
                return (Int32(id), bytes)
            }
            let left = try token(rule.left), right = try token(rule.right)
            guard let merged = all.find(left.bytes + right.bytes) else {
                throw InputError.invalidValue(file: mergeFile, field: mergeField(rule.location), expected: "a pair that makes a token of the vocabulary",
                                               found: "\(quoted(String(decoding: rule.left + rule.right, as: UTF8.self))), which is not a token")
            }
            guard pairs.insert(left.id, right.id, rank: UInt32(rank), merged: Int32(merged)) else {
                let first = merges[Int(pairs.find(left.id, right.id) >> 32)].location
                throw InputError.invalidValue(file: mergeFile, field: mergeField(rule.location), expected: "each pair once",
                                               found: "the same pair as \(mergeField(first))")
            }
            made[Int(merged)] = true
        }

        var specials: [String: Int32] = [:]
        if let explicit {
            for (text, id) in explicit {
                guard id >= 0, Int(id) < count else {
                    throw InputError.invalidValue(file: tokenFile, field: "special token \(quoted(text))", expected: "an id in 0..<\(count)", found: "\(id)")
                }
                specials[text] = id
            }
        } else {
            for b in byteTokens where b >= 0 { made[Int(b)] = true }
            for id in 0..<count where !made[id] { specials[tokens[id]] = Int32(id) }
        }
        var encoder = all
        let specialIDs = Set(specials.values).union(addedTokens.values)
        if !specialIDs.isEmpty {
            encoder = ByteStringMap(capacity: count)
            for (id, bytes) in decoded.enumerated() where !specialIDs.contains(Int32(id)) {
                if let bytes { encoder.insert(bytes, Int64(id)) }
            }
        }
        // A token outside the table (e.g. a special token with a real space) decodes to its UTF-8.
        let tokenBytes = (0..<count).map { decoded[$0] ?? Array(tokens[$0].utf8) }
        return BPETokenizer(name: name, tokenBytes: tokenBytes, byteTokens: byteTokens, encoder: encoder, merges: pairs,
                            specialTokens: specials, wholePieceLookup: false, preTokenizer: preTokenizer, addedTokens: addedTokens,
                            endOfText: endOfText, beginningOfSequence: beginningOfSequence)
    }

    /// The token of each single byte; a vocabulary without all 256 cannot encode every text, so a
    /// missing one is an error unless `allowMissing` (then its entry is -1).
    private static func byteTokens(_ encoder: ByteStringMap, file: String, allowMissing: Bool = false) throws -> [Int32] {
        try (0..<256).map { b in
            guard let id = encoder.find([UInt8(b)]) else {
                if allowMissing { return -1 }
                throw InputError.missing(file: file, field: "token \(quoted(ByteLevel.string([UInt8(b)]))) for byte 0x\(String(format: "%02X", b))")
            }
            return Int32(id)
        }
    }

    static func quoted(_ s: String) -> String {
        let short = s.count > 40 ? String(s.prefix(40)) + "…" : s
        return "\"" + short.unicodeScalars.map { isPrintable($0) ? String($0) : $0.escaped(asASCII: true) }.joined() + "\""
    }

    /// Characters shown as they are in error messages; the rest (controls, invisible ones, quotes) are escaped.
    private static func isPrintable(_ c: Unicode.Scalar) -> Bool {
        if c == "\"" || c == "\\" { return false }
        if c == " " { return true }
        switch c.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned, .spaceSeparator, .lineSeparator, .paragraphSeparator: return false
        default: return true
        }
    }

    // MARK: - Parsing

    static func readFile(_ url: URL) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: url.path) else { throw InputError.missing(file: url.path, field: "file") }
        do { return [UInt8](try Data(contentsOf: url)) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
    }

    /// Lines split at "\n" (a trailing "\r" dropped), numbered from 1, empty ones skipped.
    private static func lines(_ bytes: [UInt8]) -> [(number: Int, text: ArraySlice<UInt8>)] {
        var out: [(Int, ArraySlice<UInt8>)] = []
        for (i, var line) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            if line.last == 0x0D { line = line.dropLast() }
            if !line.isEmpty { out.append((i + 1, line)) }
        }
        return out
    }

    /// vocab.json -> token strings indexed by id.
    static func parseVocabJSON(_ bytes: [UInt8], file: String) throws -> [String] {
        // JSONDecoder rather than JSONSerialization: it tells 1 from true and from 1.5 on every platform.
        let vocabulary: [String: Int]
        do { vocabulary = try JSONDecoder().decode([String: Int].self, from: Data(bytes)) } catch let error as DecodingError {
            switch error {
            case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context), .dataCorrupted(let context):
                guard let key = context.codingPath.first?.stringValue else {
                    throw vocabularyError(bytes, file: file, context: context)
                }
                throw InputError.invalidValue(file: file, field: "token \(quoted(key))", expected: "an integer id", found: context.debugDescription)
            @unknown default:
                throw InputError.invalidHeader(file: file, field: "JSON", reason: "\(error)")
            }
        } catch {
            throw InputError.invalidHeader(file: file, field: "JSON", reason: "not valid JSON (\(error))")
        }
        var entries = vocabulary.map { (id: $0.value, token: $0.key) }
        entries.sort { $0.id < $1.id || ($0.id == $1.id && $0.token < $1.token) }
        for (i, e) in entries.enumerated() {
            if i > 0 && entries[i - 1].id == e.id {
                throw InputError.invalidValue(file: file, field: "token \(quoted(e.token))", expected: "an id of its own",
                                               found: "\(e.id), also the id of \(quoted(entries[i - 1].token))")
            }
            guard e.id >= 0 && e.id < entries.count else {
                throw InputError.invalidValue(file: file, field: "token \(quoted(e.token))",
                                               expected: "an id in 0..<\(entries.count) (one per token)", found: "\(e.id)")
            }
        }
        return entries.map(\.token)
    }

    /// Why JSONDecoder refused a vocab.json when it named no key: some platforms report a bad
    /// value (1.5, true) as bad JSON. JSONSerialization tells which it is.
    private static func vocabularyError(_ bytes: [UInt8], file: String, context: DecodingError.Context) -> InputError {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) else {
            if case .invalidHeader(_, _, let reason)? = InputError.jsonSyntax(in: Data(bytes), file: file) {
                return .invalidHeader(file: file, field: "JSON", reason: reason)
            }
            let cause = (context.underlyingError as? CustomStringConvertible)?.description ?? context.debugDescription
            return .invalidHeader(file: file, field: "JSON", reason: "not valid JSON (\(cause))")
        }
        guard let vocabulary = object as? [String: Any] else {
            return .invalidHeader(file: file, field: "vocabulary", reason: "expected a JSON object of token -> id")
        }
        for key in vocabulary.keys.sorted() {
            let value = vocabulary[key]!
            guard let number = value as? NSNumber, Int(exactly: number.doubleValue) != nil else {
                return .invalidValue(file: file, field: "token \(quoted(key))", expected: "an integer id", found: "\(value)")
            }
        }
        return .invalidValue(file: file, field: "vocabulary", expected: "an integer id for every token", found: "another value (true or false?)")
    }

    /// merges.txt -> rules in rank order.
    static func parseMerges(_ bytes: [UInt8], file: String) throws -> [MergeRule] {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw InputError.invalidValue(file: file, field: "text", expected: "UTF-8", found: "bytes that are not UTF-8")
        }
        var rules: [MergeRule] = []
        rules.reserveCapacity(bytes.count / 9)
        for (number, line) in lines(bytes) {
            if line.starts(with: "#version".utf8) { continue }
            let spaces = line.indices.filter { line[$0] == 0x20 }
            guard spaces.count == 1, let sp = spaces.first, sp > line.startIndex, sp < line.endIndex - 1 else {
                throw InputError.invalidValue(file: file, field: "line \(number)", expected: "two tokens separated by one space",
                                               found: quoted(String(decoding: line, as: UTF8.self)))
            }
            rules.append(MergeRule(left: line[..<sp], right: line[(sp + 1)...], location: number))
        }
        return rules
    }

    /// A tiktoken file -> token bytes indexed by rank.
    static func parseTiktoken(_ bytes: [UInt8], file: String) throws -> [[UInt8]] {
        let lines = lines(bytes)
        var entries: [(token: [UInt8], rank: Int, line: Int)] = []
        entries.reserveCapacity(lines.count)
        for (number, line) in lines {
            let fields = line.split(separator: 0x20)
            let text = { quoted(String(decoding: line, as: UTF8.self)) }
            guard fields.count == 2 else {
                throw InputError.invalidValue(file: file, field: "line \(number)", expected: "\"BASE64 RANK\"", found: text())
            }
            guard let token = Data(base64Encoded: String(decoding: fields[0], as: UTF8.self)), !token.isEmpty else {
                throw InputError.invalidValue(file: file, field: "line \(number)", expected: "a base64 token", found: text())
            }
            guard let rank = Int(String(decoding: fields[1], as: UTF8.self)) else {
                throw InputError.invalidValue(file: file, field: "line \(number)", expected: "an integer rank", found: text())
            }
            entries.append(([UInt8](token), rank, number))
        }
        var lineOfRank = [Int](repeating: 0, count: entries.count)
        var seen = ByteStringMap(capacity: entries.count)
        for e in entries {
            guard e.rank >= 0 && e.rank < entries.count else {
                throw InputError.invalidValue(file: file, field: "line \(e.line)", expected: "a rank in 0..<\(entries.count) (one per line)", found: "\(e.rank)")
            }
            guard lineOfRank[e.rank] == 0 else {
                throw InputError.invalidValue(file: file, field: "line \(e.line)", expected: "a rank used once",
                                               found: "rank \(e.rank), also on line \(lineOfRank[e.rank])")
            }
            lineOfRank[e.rank] = e.line
            if let other = seen.insert(e.token, Int64(e.line)) {
                throw InputError.invalidValue(file: file, field: "line \(e.line)", expected: "a token listed once",
                                               found: "the same token as line \(other)")
            }
        }
        var ranks = [[UInt8]](repeating: [], count: entries.count)
        for e in entries { ranks[e.rank] = e.token }
        return ranks
    }
}
