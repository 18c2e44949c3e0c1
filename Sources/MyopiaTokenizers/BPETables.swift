// The hash tables behind BPETokenizer, open addressing with linear probing:
//
//   ByteStringMap   byte string -> Int64 (token bytes -> id; a piece of 17-64 bytes -> its cached ids)
//   PieceCache      a piece of up to 16 bytes -> its ids, the key and (for one token) the id in the slot
//   PairMap         (left id, right id) -> (merge rank, merged id), packed in one UInt64
//
// Written out because the encoder's inner loop is a lookup per piece and per candidate pair:
// these hash without allocating, where a Dictionary<[UInt8], Int32> would build an array per lookup.

struct ByteStringMap: Sendable {
    private var slots: [Int32]          // entry index + 1; 0 = empty
    private var hashes: [UInt64] = []   // per entry
    private var starts: [Int] = [0]     // entry i's key is arena[starts[i]..<starts[i + 1]]
    private var arena: [UInt8] = []
    private var values: [Int64] = []
    private var mask: Int

    var count: Int { values.count }

    init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always)
    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(key.count)
        guard let base = key.baseAddress else { return h }
        let raw = UnsafeRawPointer(base)
        var i = 0
        while i + 8 <= key.count {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 31
            i += 8
        }
        var tail: UInt64 = 0, shift: UInt64 = 0
        while i < key.count { tail |= UInt64(base[i]) << shift; shift += 8; i += 1 }
        h = (h ^ tail) &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 29)
    }

    /// Whether the n bytes at a and b are equal: eight at a time, then the rest (keys are short,
    /// and a call to memcmp costs more than comparing them here).
    @inline(__always)
    private static func equal(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        var i = 0
        while i + 8 <= n {
            if ra.loadUnaligned(fromByteOffset: i, as: UInt64.self) != rb.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
            i += 8
        }
        while i < n {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    /// The slot holding `key`, or the empty slot where it would go.
    @inline(__always)
    private func slot(for key: UnsafeBufferPointer<UInt8>, hash h: UInt64) -> Int {
        slots.withUnsafeBufferPointer { slots in
            hashes.withUnsafeBufferPointer { hashes in
                starts.withUnsafeBufferPointer { starts in
                    arena.withUnsafeBufferPointer { arena in
                        var s = Int(truncatingIfNeeded: h) & mask
                        while true {
                            let e = Int(slots[s]) - 1
                            if e < 0 { return s }
                            if hashes[e] == h {
                                let start = starts[e], n = starts[e + 1] - start
                                if n == key.count && (n == 0 || Self.equal(arena.baseAddress! + start, key.baseAddress!, n)) { return s }
                            }
                            s = (s + 1) & mask
                        }
                    }
                }
            }
        }
    }

    @inline(__always)
    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int64? {
        let e = Int(slots[slot(for: key, hash: Self.hash(key))]) - 1
        return e < 0 ? nil : values[e]
    }

    func find(_ key: [UInt8]) -> Int64? { key.withUnsafeBufferPointer { find($0) } }

    /// Inserts `key` -> `value` and returns nil, or returns the value already there (and changes nothing).
    @discardableResult
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, _ value: Int64) -> Int64? {
        let h = Self.hash(key)
        let s = slot(for: key, hash: h)
        if slots[s] != 0 { return values[Int(slots[s]) - 1] }
        hashes.append(h)
        arena.append(contentsOf: key)
        starts.append(arena.count)
        values.append(value)
        slots[s] = Int32(values.count)
        if values.count * 2 > slots.count { grow() }
        return nil
    }

    @discardableResult
    mutating func insert(_ key: [UInt8], _ value: Int64) -> Int64? { key.withUnsafeBufferPointer { insert($0, value) } }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: slots.count * 2)
        mask = slots.count - 1
        for e in 0..<values.count {
            var s = Int(truncatingIfNeeded: hashes[e]) & mask
            while slots[s] != 0 { s = (s + 1) & mask }
            slots[s] = Int32(e + 1)
        }
    }
}

/// Merges: (left, right) -> rank << 32 | merged id. Comparing packed values compares ranks first.
struct PairMap: Sendable {
    static let none = UInt64.max
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private(set) var count = 0

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: Self.none, count: size)
        values = [UInt64](repeating: Self.none, count: size)
        mask = size - 1
    }

    @inline(__always)
    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private func slot(_ k: UInt64) -> Int {
        var h = k &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 32
        var s = Int(truncatingIfNeeded: h) & mask
        while keys[s] != k && keys[s] != Self.none { s = (s + 1) & mask }
        return s
    }

    /// rank << 32 | merged id, or `PairMap.none`.
    @inline(__always)
    func find(_ left: Int32, _ right: Int32) -> UInt64 { values[slot(Self.key(left, right))] }

    /// Inserts the pair, or replaces its rank and merged id if it is already there (tokenizers'
    /// merge map keeps the last of a pair written twice). Call with at most `capacity` pairs.
    mutating func set(_ left: Int32, _ right: Int32, rank: UInt32, merged: Int32) {
        let k = Self.key(left, right)
        let s = slot(k)
        if keys[s] != k { keys[s] = k; count += 1 }
        values[s] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merged))
    }

    /// Inserts the pair and returns true, or returns false if it is already there (keeping the first).
    /// Call with at most `capacity` pairs.
    mutating func insert(_ left: Int32, _ right: Int32, rank: UInt32, merged: Int32) -> Bool {
        let k = Self.key(left, right)
        let s = slot(k)
        if keys[s] == k { return false }
        keys[s] = k
        values[s] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merged))
        count += 1
        return true
    }
}

/// The encoder's cache of pieces of up to 16 bytes (nearly all of them) -> their ids, for one
/// `encode` call. The key is held in the slot, and so is the id of a piece that is one token (most
/// are), so a hit costs one memory access where a ByteStringMap hit costs five dependent ones.
struct PieceCache {
    static let maxLength = 16

    /// meta: length (bits 0-7; 0 = empty) | token count (bits 8-31) | the id when the count is 1,
    /// else the start of the ids in `ids` (bits 32-63).
    private struct Slot { var low: UInt64 = 0, high: UInt64 = 0, meta: UInt64 = 0 }
    private var slots: [Slot]
    private var mask: Int
    private var ids: [Int32] = []
    private(set) var count = 0

    init(capacity: Int = 4096) {
        slots = [Slot](repeating: Slot(), count: capacity)
        mask = capacity - 1
    }

    /// The piece's bytes as two little-endian words, zero-padded.
    @inline(__always)
    private static func key(_ piece: UnsafeBufferPointer<UInt8>) -> (UInt64, UInt64) {
        var low: UInt64 = 0, high: UInt64 = 0
        for k in 0..<min(piece.count, 8) { low |= UInt64(piece[k]) << UInt64(8 * k) }
        if piece.count > 8 { for k in 8..<piece.count { high |= UInt64(piece[k]) << UInt64(8 * (k - 8)) } }
        return (low, high)
    }

    @inline(__always)
    private static func hash(_ low: UInt64, _ high: UInt64, _ length: Int) -> Int {
        var h = (low ^ (high &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(length)) &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 31
        return Int(truncatingIfNeeded: h)
    }

    /// Appends the piece's ids to `out` and returns true, or returns false when it is not cached.
    @inline(__always)
    func lookup(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) -> Bool {
        let (low, high) = Self.key(piece)
        let length = UInt64(piece.count)
        return slots.withUnsafeBufferPointer { slots in
            var s = Self.hash(low, high, piece.count) & mask
            while true {
                let slot = slots[s]
                if slot.meta == 0 { return false }
                if slot.meta & 0xFF == length && slot.low == low && slot.high == high {
                    let n = Int((slot.meta >> 8) & 0xFF_FFFF), value = Int32(truncatingIfNeeded: slot.meta >> 32)
                    if n == 1 { out.append(value) } else {
                        ids.withUnsafeBufferPointer { out.append(contentsOf: UnsafeBufferPointer(rebasing: $0[Int(value)..<Int(value) + n])) }
                    }
                    return true
                }
                s = (s + 1) & mask
            }
        }
    }

    /// Caches `tokens` as the ids of `piece` (1...16 bytes, not yet cached).
    mutating func insert(_ piece: UnsafeBufferPointer<UInt8>, _ tokens: ArraySlice<Int32>) {
        let (low, high) = Self.key(piece)
        let value: UInt64
        if tokens.count == 1 {
            value = UInt64(UInt32(bitPattern: tokens.first!))
        } else {
            value = UInt64(ids.count)
            ids.append(contentsOf: tokens)
        }
        place(Slot(low: low, high: high, meta: UInt64(piece.count) | UInt64(tokens.count) << 8 | value << 32))
        count += 1
        if count * 2 > slots.count {
            let old = slots
            slots = [Slot](repeating: Slot(), count: old.count * 2)
            mask = slots.count - 1
            for slot in old where slot.meta != 0 { place(slot) }
        }
    }

    private mutating func place(_ slot: Slot) {
        var s = Self.hash(slot.low, slot.high, Int(slot.meta & 0xFF)) & mask
        while slots[s].meta != 0 { s = (s + 1) & mask }
        slots[s] = slot
    }
}
