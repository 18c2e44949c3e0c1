// BPETokenizer: GPT-2's byte-level BPE (docs/DESIGN.md §6), giving the same ids as tiktoken's "gpt2", and
// the byte-level BPE tokenizers that GGUF files embed (GGUFTokenizer.swift; SmolLM2's).
//
// Encoding: the text is cut at the allowed special tokens (`<|endoftext|>`) and at the added tokens
// that are always matched, each stretch is cut into pieces by the pre-tokenizer (PreTokenizer.swift:
// GPT-2's regex, or SmolLM's digits-then-GPT-2), and each piece's UTF-8 bytes start as one token per byte; then
// the adjacent pair with the lowest merge rank is merged, leftmost first, until no pair merges.
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
    public var bytesWithoutToken: [UInt8] { (0..<256).filter { byteTokens[$0] < 0 }.map { UInt8($0) } }
    /// tiktoken's rule: a piece that is itself a token is that token, without running the merges.
    let wholePieceLookup: Bool
    /// `addedTokens` as bytes, longest first.
    private let alwaysMatched: [(bytes: [UInt8], id: Int32)]

    private let tokenArena: [UInt8]       // the bytes of token i: tokenArena[tokenOffsets[i]..<tokenOffsets[i + 1]]
    private let tokenOffsets: [Int]       // [vocabSize + 1]
    private let byteTokens: [Int32]       // [256] the token of each single byte; -1: none (the byte is dropped)
    private let encoder: ByteStringMap    // token bytes -> id, special tokens excluded
    private let merges: PairMap

    /// Pieces longer than this merge with a heap (n log n) instead of rescanning all pairs (n²).
    static let heapThreshold = 128
    /// Pieces up to this many bytes are cached within one `encode` call.
    static let cachedPieceLength = 64
    static let cacheEntries = 1 << 18

    /// `tokenBytes[id]` for every id; `encoder` maps the non-special ones back; `merges` holds
    /// (left, right) -> (rank, merged id). Built and validated by BPEFiles.swift.
    init(name: String, tokenBytes: [[UInt8]], byteTokens: [Int32], encoder: ByteStringMap, merges: PairMap,
         specialTokens: [String: Int32], wholePieceLookup: Bool, preTokenizer: PreTokenizer = .gpt2,
         addedTokens: [String: Int32] = [:], endOfText: Int32? = nil, beginningOfSequence: Int32? = nil) {
        precondition(byteTokens.count == 256)
        self.name = name
        self.vocabSize = tokenBytes.count
        var offsets = [0]
        offsets.reserveCapacity(tokenBytes.count + 1)
        for t in tokenBytes { offsets.append(offsets[offsets.count - 1] + t.count) }
        self.tokenArena = tokenBytes.flatMap { $0 }
        self.tokenOffsets = offsets
        self.byteTokens = byteTokens
        self.encoder = encoder
        self.merges = merges
        self.specialTokens = specialTokens
        self.wholePieceLookup = wholePieceLookup
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
            var state = EncodeState(capacity: bytes.count / 3)
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

    /// Per-call working memory: the output, caches of pieces already encoded, merge scratch.
    private struct EncodeState {
        var out: [Int32] = []
        var shortCache = PieceCache(capacity: 256)     // pieces of 2...16 bytes; grows
        var cache = ByteStringMap(capacity: 1024)     // pieces of 17...cachedPieceLength bytes
        var cachedIDs: [Int32] = []
        var ids: [Int32] = []
        var ranks: [UInt64] = []
        init(capacity: Int) { out.reserveCapacity(capacity) }
    }

    private func encodeOrdinary(_ text: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ state: inout EncodeState) {
        guard start < end else { return }
        preTokenizer.forEachPiece(text, from: start, to: end) { s, e in
            encodePiece(UnsafeBufferPointer(rebasing: text[s..<e]), &state)
        }
    }

    /// One piece's ids onto `state.out`: a single byte directly, a cached piece from its cache, any
    /// other by the merges (then cached). With a warm cache nothing here allocates.
    @inline(__always)
    private func encodePiece(_ piece: UnsafeBufferPointer<UInt8>, _ state: inout EncodeState) {
        let n = piece.count
        if n == 1 {
            let id = byteTokens[Int(piece[0])]
            if id >= 0 { state.out.append(id) }
            return
        }
        if n <= PieceCache.maxLength {
            if state.shortCache.lookup(piece, into: &state.out) { return }
            let before = state.out.count
            if wholePieceLookup, let id = encoder.find(piece) {
                state.out.append(Int32(truncatingIfNeeded: id))
            } else {
                mergeByScan(piece, &state)
            }
            if state.shortCache.count < Self.cacheEntries && state.out.count > before {
                state.shortCache.insert(piece, state.out[before...])
            }
            return
        }
        if wholePieceLookup, let id = encoder.find(piece) { state.out.append(Int32(truncatingIfNeeded: id)); return }
        let cacheable = n <= Self.cachedPieceLength
        if cacheable, let v = state.cache.find(piece) {
            let start = Int(v >> 16), count = Int(v & 0xFFFF)
            state.cachedIDs.withUnsafeBufferPointer { state.out.append(contentsOf: UnsafeBufferPointer(rebasing: $0[start..<start + count])) }
            return
        }
        let before = state.out.count
        if n > Self.heapThreshold {
            mergeWithHeap(piece, into: &state.out)
        } else {
            mergeByScan(piece, &state)
        }
        if cacheable && state.cache.count < Self.cacheEntries {
            let start = state.cachedIDs.count
            state.cachedIDs.append(contentsOf: state.out[before...])
            state.cache.insert(piece, Int64(start) << 16 | Int64(state.out.count - before))
        }
    }

    /// The merge loop for short pieces, as tiktoken does it: keep the rank of every adjacent
    /// pair, merge the lowest (leftmost on a tie), update its two neighbours' ranks, repeat.
    /// A byte without a token is left out first, so its neighbours may merge (Hugging Face's rule).
    private func mergeByScan(_ piece: UnsafeBufferPointer<UInt8>, _ state: inout EncodeState) {
        if state.ids.count < piece.count {
            state.ids = [Int32](repeating: 0, count: piece.count)
            state.ranks = [UInt64](repeating: 0, count: piece.count)
        }
        let m = state.ids.withUnsafeMutableBufferPointer { ids in
            state.ranks.withUnsafeMutableBufferPointer { ranks in
                byteTokens.withUnsafeBufferPointer { byteTokens in
                    var n = 0
                    for b in piece {
                        let id = byteTokens[Int(b)]
                        ids[n] = id
                        n += id >= 0 ? 1 : 0
                    }
                    guard n > 1 else { return n }
                    for k in 0..<n - 1 { ranks[k] = merges.find(ids[k], ids[k + 1]) }   // ranks[k]: pair (k, k+1)
                    var m = n
                    while m > 1 {
                        var best = PairMap.none, at = -1
                        for k in 0..<m - 1 where ranks[k] < best { best = ranks[k]; at = k }
                        if at < 0 { break }
                        ids[at] = Int32(truncatingIfNeeded: best)
                        for k in at + 1 ..< m - 1 { ids[k] = ids[k + 1] }
                        for k in at ..< m - 2 { ranks[k] = ranks[k + 1] }
                        m -= 1
                        if at > 0 { ranks[at - 1] = merges.find(ids[at - 1], ids[at]) }
                        if at < m - 1 { ranks[at] = merges.find(ids[at], ids[at + 1]) }
                    }
                    return m
                }
            }
        }
        state.out.append(contentsOf: state.ids[0..<m])
    }

    /// The same merges in the same order for long pieces (a run of 10⁵ letters must not take
    /// 10¹⁰ steps): the pieces form a linked list, candidate pairs wait in a heap ordered by
    /// (rank, position), and a popped pair is used only if both its tokens are still as pushed.
    func mergeWithHeap(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        var ids = piece.map { byteTokens[Int($0)] }.filter { $0 >= 0 }
        let n = ids.count
        guard n > 0 else { return }
        var next = Array(1...n)              // n: the end
        var prev = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = CandidateHeap()
        func push(_ left: Int) {
            let right = next[left]
            guard right < n else { return }
            let rank = merges.find(ids[left], ids[right])
            if rank != PairMap.none {
                heap.push(.init(rank: rank, left: Int32(left), right: Int32(right), leftID: ids[left], rightID: ids[right]))
            }
        }
        for i in 0..<n - 1 { push(i) }
        while let c = heap.pop() {
            let l = Int(c.left), r = Int(c.right)
            guard alive[l], next[l] == r, ids[l] == c.leftID, ids[r] == c.rightID else { continue }
            ids[l] = Int32(truncatingIfNeeded: c.rank)
            alive[r] = false
            next[l] = next[r]
            if next[r] < n { prev[next[r]] = l }
            if prev[l] >= 0 { push(prev[l]) }
            push(l)
        }
        var i = 0
        while i < n { out.append(ids[i]); i = next[i] }
    }

    /// One piece's ids by either merge loop, skipping the whole-piece lookup and the cache (the
    /// tests check that the two loops agree).
    func mergeIDs(_ piece: [UInt8], useHeap: Bool) -> [Int32] {
        guard !piece.isEmpty else { return [] }
        return piece.withUnsafeBufferPointer { p in
            var state = EncodeState(capacity: p.count)
            if useHeap { mergeWithHeap(p, into: &state.out) } else { mergeByScan(p, &state) }
            return state.out
        }
    }

    // MARK: - Decoding

    /// The bytes the ids stand for, concatenated. Ids outside 0..<vocabSize are skipped.
    public func decodeBytes(_ ids: [Int32]) -> [UInt8] {
        tokenOffsets.withUnsafeBufferPointer { offsets in
            var total = 0
            for id in ids where id >= 0 && Int(id) < vocabSize { total += offsets[Int(id) + 1] - offsets[Int(id)] }
            return tokenArena.withUnsafeBufferPointer { arena in
                [UInt8](unsafeUninitializedCapacity: total) { out, initialized in
                    var at = 0
                    for id in ids where id >= 0 && Int(id) < vocabSize {
                        let start = offsets[Int(id)], n = offsets[Int(id) + 1] - start
                        for k in 0..<n { out[at + k] = arena[start + k] }   // tokens are a few bytes: no memcpy call
                        at += n
                    }
                    initialized = at
                }
            }
        }
    }

    /// Ids to text: bytes that are not valid UTF-8 (a character cut between tokens) become U+FFFD.
    public func decode(_ ids: [Int32]) -> String {
        String(decoding: decodeBytes(ids), as: UTF8.self)
    }

    /// The bytes of one token; nil outside the vocabulary.
    public func tokenBytes(_ id: Int32) -> [UInt8]? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return Array(tokenArena[tokenOffsets[Int(id)]..<tokenOffsets[Int(id) + 1]])
    }

    /// A token as vocab.json and GGUF files spell it (GPT-2's byte-to-unicode form, "Ġthe");
    /// special and added tokens as they are. Nil outside the vocabulary.
    public func tokenString(_ id: Int32) -> String? {
        guard let bytes = tokenBytes(id) else { return nil }
        if let special = specialTokens.first(where: { $0.value == id }) { return special.key }
        if let added = addedTokens.first(where: { $0.value == id }) { return added.key }
        return ByteLevel.string(bytes)
    }
}

/// A candidate merge waiting in the heap; ordered by rank, then by position (leftmost first).
private struct MergeCandidate {
    var rank: UInt64
    var left: Int32
    var right: Int32
    var leftID: Int32
    var rightID: Int32

    @inline(__always) static func before(_ a: MergeCandidate, _ b: MergeCandidate) -> Bool {
        a.rank < b.rank || (a.rank == b.rank && a.left < b.left)
    }
}

/// A binary min-heap of merge candidates.
private struct CandidateHeap {
    private var items: [MergeCandidate] = []

    mutating func push(_ c: MergeCandidate) {
        items.append(c)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard MergeCandidate.before(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> MergeCandidate? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        items[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < items.count && MergeCandidate.before(items[l], items[smallest]) { smallest = l }
            if r < items.count && MergeCandidate.before(items[r], items[smallest]) { smallest = r }
            if smallest == i { break }
            items.swapAt(i, smallest)
            i = smallest
        }
        return top
    }
}
