// BPETokenizer: GPT-2's byte-level BPE (docs/DESIGN.md §6), giving the same ids as tiktoken's "gpt2", and
// the byte-level BPE tokenizers that GGUF files embed (GGUFTokenizer.swift; SmolLM2's).
//
// Encoding: the text is cut at the allowed special tokens (`<|endoftext|>`) and at the added tokens
// that are always matched, each stretch is cut into pieces by the pre-tokenizer (PreTokenizer.swift:
// GPT-2's regex, or SmolLM's digits-then-GPT-2), and each piece goes to the BPE model (BPEModel.swift):
// its UTF-8 bytes start as one token per byte, then the adjacent pair with the lowest merge rank is
// merged, leftmost first, until no pair merges.
// Decoding: ids -> the bytes they stand for -> String (U+FFFD where the bytes are not UTF-8).
//
// The merge table comes from either of the two forms GPT-2's tokenizer is shipped in (BPEFiles.swift):
//   vocab.json + merges.txt   a pair's rank is its line in merges.txt (Hugging Face, GGUF)
//   tiktoken ranks            a pair's rank is the rank of the token it makes, and a piece that is
//                             a token by itself is taken whole (`wholePieceLookup`)
// For GPT-2 the two give identical ids (the tests check both against tiktoken).

import Foundation

public struct BPETokenizer: Tokenizer {
    public let name: String
    public let vocabSize: Int
    /// Tokens recognised in text only when `encode(_:allowedSpecial:)` allows them, e.g. `<|endoftext|>`.
    public let specialTokens: [String: Int32]
    /// Tokens matched wherever they occur in text, before pre-tokenization, whatever `allowedSpecial`
    /// says: a GGUF's USER_DEFINED tokens (Hugging Face's added tokens that are not special).
    public let addedTokens: [String: Int32]
    /// How text is cut into pieces before the merges.
    public let preTokenizer: PreTokenizer
    /// The end-of-text token: a GGUF's `tokenizer.ggml.eos_token_id` (SmolLM2-Instruct: `<|im_end|>`),
    /// otherwise `<|endoftext|>` when the vocabulary has it (GPT-2: 50256).
    public let endOfText: Int32?
    /// The beginning-of-sequence token a GGUF names (`tokenizer.ggml.bos_token_id`); encode never adds it.
    public let beginningOfSequence: Int32?
    /// Bytes that have no token of their own (none for GPT-2; 21 for SmolLM2, e.g. 0x04 and 0xF5–0xFF):
    /// encode drops them, so text holding them does not round-trip.
    public var bytesWithoutToken: [UInt8] { (0..<256).filter { model.byteTokens[$0] < 0 }.map { UInt8($0) } }
    /// The vocabulary, the merges and the merge loop (BPEModel.swift).
    let model: BPEModel
    /// `addedTokens` as bytes, longest first.
    private let alwaysMatched: [(bytes: [UInt8], id: Int32)]

    /// `tokenBytes[id]` for every id; `encoder` maps the non-special ones back; `merges` holds
    /// (left, right) -> (rank, merged id); `wholePieceLookup`: tiktoken's rule, a piece that is
    /// itself a token is that token. Built and validated by BPEFiles.swift.
    init(name: String, tokenBytes: [[UInt8]], byteTokens: [Int32], encoder: ByteStringMap, merges: PairMap,
         specialTokens: [String: Int32], wholePieceLookup: Bool, preTokenizer: PreTokenizer = .gpt2,
         addedTokens: [String: Int32] = [:], endOfText: Int32? = nil, beginningOfSequence: Int32? = nil) {
        self.name = name
        self.vocabSize = tokenBytes.count
        self.model = BPEModel(tokenBytes: tokenBytes, byteTokens: byteTokens, encoder: encoder, merges: merges,
                              wholePieceLookup: wholePieceLookup)
        self.specialTokens = specialTokens
        self.preTokenizer = preTokenizer
        self.addedTokens = addedTokens
        self.alwaysMatched = addedTokens.map { (Array($0.key.utf8), $0.value) }.filter { !$0.0.isEmpty }
            .sorted { $0.0.count > $1.0.count || ($0.0.count == $1.0.count && $0.1 < $1.1) }
        self.endOfText = endOfText ?? specialTokens["<|endoftext|>"]
        self.beginningOfSequence = beginningOfSequence
    }

    // MARK: - Encoding

    /// Text to ids; special tokens are plain text (tiktoken's `encode_ordinary`). Never adds BOS or EOS.
    public func encode(_ text: String) -> [Int32] { encode(text, allowedSpecial: []) }

    /// Text to ids, where the special tokens named in `allowedSpecial` (e.g. `["<|endoftext|>"]`,
    /// or `Set(specialTokens.keys)`) become their ids, as tiktoken's `encode(text, allowed_special=...)`.
    public func encode(_ text: String, allowedSpecial: Set<String>) -> [Int32] {
        var text = text
        return text.withUTF8 { bytes in
            var state = BPEModel.EncodeState(capacity: bytes.count / 3)
            let specials = allowedSpecial.compactMap { s in specialTokens[s].map { (bytes: Array(s.utf8), id: $0) } }
                .filter { !$0.bytes.isEmpty } + alwaysMatched
            var start = 0
            if !specials.isEmpty {
                var firstBytes = [Bool](repeating: false, count: 256)
                for s in specials { firstBytes[Int(s.bytes[0])] = true }
                var i = 0
                while i < bytes.count {
                    guard firstBytes[Int(bytes[i])] else { i += 1; continue }
                    // The longest allowed special token that starts here.
                    var match: (length: Int, id: Int32)?
                    for s in specials where s.bytes.count <= bytes.count - i && s.bytes.count > (match?.length ?? 0) {
                        if s.bytes.withUnsafeBufferPointer({ memcmp($0.baseAddress!, bytes.baseAddress! + i, $0.count) }) == 0 {
                            match = (s.bytes.count, s.id)
                        }
                    }
                    guard let match else { i += 1; continue }
                    encodeOrdinary(bytes, start, i, &state)
                    state.out.append(match.id)
                    i += match.length
                    start = i
                }
            }
            encodeOrdinary(bytes, start, bytes.count, &state)
            return state.out
        }
    }

    private func encodeOrdinary(_ text: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ state: inout BPEModel.EncodeState) {
        guard start < end else { return }
        preTokenizer.forEachPiece(text, from: start, to: end) { s, e in
            model.encodePiece(UnsafeBufferPointer(rebasing: text[s..<e]), &state)
        }
    }

    /// One piece's ids by either merge loop (BPEModel.mergeIDs; the tests check that they agree).
    func mergeIDs(_ piece: [UInt8], useHeap: Bool) -> [Int32] { model.mergeIDs(piece, useHeap: useHeap) }

    // MARK: - Decoding

    /// The bytes the ids stand for, concatenated. Ids outside 0..<vocabSize are skipped.
    public func decodeBytes(_ ids: [Int32]) -> [UInt8] { model.decodeBytes(ids) }

    /// Ids to text: bytes that are not valid UTF-8 (a character cut between tokens) become U+FFFD.
    public func decode(_ ids: [Int32]) -> String {
        String(decoding: decodeBytes(ids), as: UTF8.self)
    }

    /// The bytes of one token; nil outside the vocabulary.
    public func tokenBytes(_ id: Int32) -> [UInt8]? { model.tokenBytes(id) }

    /// A token as vocab.json and GGUF files spell it (GPT-2's byte-to-unicode form, "Ġthe");
    /// special and added tokens as they are. Nil outside the vocabulary.
    public func tokenString(_ id: Int32) -> String? {
        guard let bytes = tokenBytes(id) else { return nil }
        if let special = specialTokens.first(where: { $0.value == id }) { return special.key }
        if let added = addedTokens.first(where: { $0.value == id }) { return added.key }
        return ByteLevel.string(bytes)
    }
}
