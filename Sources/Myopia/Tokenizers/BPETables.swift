// The two hash tables behind BPETokenizer, open addressing with linear probing:
//
//   ByteStringMap   byte string -> Int64 (token bytes -> id; a piece -> its cached ids)
//   PairMap         (left id, right id) -> (merge rank, merged id), packed in one UInt64
//
// Written out because the encoder's inner loop is a lookup per piece and per candidate pair:
// these hash without allocating, where a Dictionary<[UInt8], Int32> would build an array per lookup.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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

    @inline(__always)
    private func keyEquals(_ entry: Int, _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let s = starts[entry], n = starts[entry + 1] - s
        guard n == key.count else { return false }
        if n == 0 { return true }
        return arena.withUnsafeBufferPointer { memcmp($0.baseAddress! + s, key.baseAddress!, n) == 0 }
    }

    /// The slot holding `key`, or the empty slot where it would go.
    @inline(__always)
    private func slot(for key: UnsafeBufferPointer<UInt8>, hash h: UInt64) -> Int {
        var s = Int(truncatingIfNeeded: h) & mask
        while true {
            let e = Int(slots[s]) - 1
            if e < 0 || (hashes[e] == h && keyEquals(e, key)) { return s }
            s = (s + 1) & mask
        }
    }

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
