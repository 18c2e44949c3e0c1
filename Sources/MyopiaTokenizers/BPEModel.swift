// BPEModel: what every BPE tokenizer here shares once text is cut into pieces — the vocabulary,
// the merge ranks, and the merge loop. BPETokenizer (GPT-2's files, tiktoken ranks, GGUF) and
// HuggingFaceTokenizer (tokenizer.json) each cut text their own way and hand the pieces to it.
//
// A piece's first symbols come one of two ways (`Symbols`):
//   bytes        one per UTF-8 byte, its byte-level token (GPT-2's byte-to-unicode table); a byte
//                without a token is left out, so its neighbours may merge (Hugging Face's rule).
//   characters   one per character, its token; else, with byte fallback, the `<0xNN>` tokens of its
//                bytes; else the unknown token (a run of them fused into one when asked); else
//                nothing. This is `tokenizers`' BPE.merge_word, for SentencePiece-style
//                vocabularies (Gemma, Llama 2), and for byte-level ones that lack a byte's token
//                but name an unknown token or byte fallback.
// Then the adjacent pair with the lowest merge rank is merged, leftmost first, until no pair
// merges: by rescanning the pairs for short pieces (as tiktoken does), with a heap for long ones.

import Foundation

struct BPEModel: Sendable {
    /// How a piece becomes its first symbols.
    enum Symbols: Sendable {
        /// One symbol per byte: `byteTokens[b]`, or nothing where that is -1.
        case bytes
        /// One symbol per byte, as `characters` treats the byte's byte-level character: for
        /// byte-level vocabularies that lack a byte's token and name an unknown token or byte fallback.
        case byteCharacters(CharacterRules)
        /// One symbol per character of the piece (UTF-8), looked up in `encoder`.
        case characters(CharacterRules)
    }

    /// What a character without a token of its own becomes (`tokenizers`' BPE options).
    struct CharacterRules: Sendable {
        /// `<0x00>`…`<0xFF>` (byte_fallback): -1 where the vocabulary lacks one; nil when off.
        var byteFallback: [Int32]?
        /// unk_token's id, if any.
        var unknown: Int32?
        /// fuse_unk: consecutive unknown characters become one unknown token.
        var fuseUnknown: Bool
    }

    let vocabSize: Int
    private let tokenArena: [UInt8]       // the bytes of token i: tokenArena[tokenOffsets[i]..<tokenOffsets[i + 1]]
    private let tokenOffsets: [Int]       // [vocabSize + 1]
    let byteTokens: [Int32]               // [256] the token of each single byte; -1: none
    private let encoder: ByteStringMap    // a piece's bytes -> the token it is (special tokens excluded)
    private let merges: PairMap
    /// A piece that is itself a token is that token, without running the merges (tiktoken's rule,
    /// and `tokenizers`' ignore_merges).
    let wholePieceLookup: Bool
    let symbols: Symbols

    /// Pieces longer than this merge with a heap (n log n) instead of rescanning all pairs (n²).
    static let heapThreshold = 128
    /// Pieces up to this many bytes are cached within one `encode` call.
    static let cachedPieceLength = 64
    static let cacheEntries = 1 << 18

    /// `tokenBytes[id]`: what each id decodes to; `encoder` maps pieces to tokens; `merges` holds
    /// (left, right) -> (rank, merged id).
    init(tokenBytes: [[UInt8]], byteTokens: [Int32], encoder: ByteStringMap, merges: PairMap, wholePieceLookup: Bool,
         symbols: Symbols = .bytes) {
        precondition(byteTokens.count == 256)
        vocabSize = tokenBytes.count
        var offsets = [0]
        offsets.reserveCapacity(tokenBytes.count + 1)
        for t in tokenBytes { offsets.append(offsets[offsets.count - 1] + t.count) }
        tokenArena = tokenBytes.flatMap { $0 }
        tokenOffsets = offsets
        self.byteTokens = byteTokens
        self.encoder = encoder
        self.merges = merges
        self.wholePieceLookup = wholePieceLookup
        self.symbols = symbols
    }

    // MARK: - Encoding

    /// Per-call working memory: the output, caches of pieces already encoded, merge scratch.
    struct EncodeState {
        var out: [Int32] = []
        var shortCache = PieceCache(capacity: 256)     // pieces of 2...16 bytes; grows
        var cache = ByteStringMap(capacity: 1024)     // pieces of 17...cachedPieceLength bytes
        var cachedIDs: [Int32] = []
        var ids: [Int32] = []
        var ranks: [UInt64] = []
        init(capacity: Int) { out.reserveCapacity(capacity) }
    }

    /// One piece's ids onto `state.out`: a single byte directly, a cached piece from its cache, any
    /// other by the merges (then cached). With a warm cache nothing here allocates.
    @inline(__always)
    func encodePiece(_ piece: UnsafeBufferPointer<UInt8>, _ state: inout EncodeState) {
        let n = piece.count
        guard n > 0 else { return }
        if n == 1, case .bytes = symbols {
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

    /// How many first symbols a piece of n bytes can have at most: one per byte, except that a
    /// byte-level byte may fall back to the two `<0xNN>` tokens of its character's UTF-8.
    @inline(__always)
    private func symbolCapacity(_ n: Int) -> Int {
        if case .byteCharacters = symbols { return 2 * n }
        return n
    }

    /// The piece's first symbols into `ids` (which holds at least symbolCapacity(piece.count));
    /// returns how many.
    @inline(__always)
    private func firstSymbols(_ piece: UnsafeBufferPointer<UInt8>, _ ids: UnsafeMutableBufferPointer<Int32>) -> Int {
        switch symbols {
        case .bytes:
            return byteTokens.withUnsafeBufferPointer { byteTokens in
                var n = 0
                for b in piece {
                    let id = byteTokens[Int(b)]
                    ids[n] = id
                    n += id >= 0 ? 1 : 0
                }
                return n
            }
        case .byteCharacters(let rules):
            var symbols = SymbolWriter(ids: ids, rules: rules)
            for b in piece {
                let id = byteTokens[Int(b)]
                if id >= 0 { symbols.token(id) } else { symbols.untokened(ByteLevel.utf8OfByteCharacter[Int(b)]) }
            }
            return symbols.finish()
        case .characters(let rules):
            var symbols = SymbolWriter(ids: ids, rules: rules)
            var i = 0
            while i < piece.count {
                let length = min(UTF8.width(startingWith: piece[i]), piece.count - i)
                let character = UnsafeBufferPointer(rebasing: piece[i..<i + length])
                if let id = encoder.find(character) {
                    symbols.token(Int32(truncatingIfNeeded: id))
                } else {
                    symbols.untokened(character)
                }
                i += length
            }
            return symbols.finish()
        }
    }

    /// The merge loop for short pieces, as tiktoken does it: keep the rank of every adjacent
    /// pair, merge the lowest (leftmost on a tie), update its two neighbours' ranks, repeat.
    private func mergeByScan(_ piece: UnsafeBufferPointer<UInt8>, _ state: inout EncodeState) {
        let capacity = symbolCapacity(piece.count)
        if state.ids.count < capacity {
            state.ids = [Int32](repeating: 0, count: capacity)
            state.ranks = [UInt64](repeating: 0, count: capacity)
        }
        let m = state.ids.withUnsafeMutableBufferPointer { ids in
            state.ranks.withUnsafeMutableBufferPointer { ranks in
                let n = firstSymbols(piece, ids)
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
        state.out.append(contentsOf: state.ids[0..<m])
    }

    /// The same merges in the same order for long pieces (a run of 10⁵ letters must not take
    /// 10¹⁰ steps): the pieces form a linked list, candidate pairs wait in a heap ordered by
    /// (rank, position), and a popped pair is used only if both its tokens are still as pushed.
    private func mergeWithHeap(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        var ids = [Int32](repeating: 0, count: symbolCapacity(piece.count))
        let n = ids.withUnsafeMutableBufferPointer { firstSymbols(piece, $0) }
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
    func decodeBytes(_ ids: [Int32]) -> [UInt8] {
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

    /// The bytes of one token; nil outside the vocabulary.
    func tokenBytes(_ id: Int32) -> [UInt8]? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return Array(tokenArena[tokenOffsets[Int(id)]..<tokenOffsets[Int(id) + 1]])
    }
}

/// Writes a piece's first symbols under `CharacterRules`, as `tokenizers`' merge_word does —
/// including its order: a pending unknown token is written before the next character that has a
/// token, but after the byte-fallback tokens of characters in between.
private struct SymbolWriter {
    let ids: UnsafeMutableBufferPointer<Int32>
    let rules: BPEModel.CharacterRules
    var count = 0
    var unknownPending = false

    init(ids: UnsafeMutableBufferPointer<Int32>, rules: BPEModel.CharacterRules) {
        self.ids = ids
        self.rules = rules
    }

    @inline(__always)
    mutating func token(_ id: Int32) {
        if unknownPending, let unknown = rules.unknown { append(unknown); unknownPending = false }
        append(id)
    }

    /// A character (its UTF-8 bytes) that is not a token.
    mutating func untokened<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if let fallback = rules.byteFallback, bytes.allSatisfy({ fallback[Int($0)] >= 0 }) {
            for b in bytes { append(fallback[Int(b)]) }
            return
        }
        guard let unknown = rules.unknown else { return }
        if unknownPending && !rules.fuseUnknown { append(unknown) }
        unknownPending = true
    }

    mutating func finish() -> Int {
        if unknownPending, let unknown = rules.unknown { append(unknown) }
        return count
    }

    @inline(__always)
    private mutating func append(_ id: Int32) {
        ids[count] = id
        count += 1
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
