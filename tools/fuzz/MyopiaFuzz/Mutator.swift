// Deterministic mutation of seed files (tools/fuzz/README.md).
//
// Input `i` of a target is a pure function of (run seed, target name, i): the same command line
// gives the same inputs on every machine, so a crash found by the driver is reproduced by
// `myopia-fuzz repro TARGET INDEX`, and the smoke test in `swift test` sees fixed inputs.
//
// Each input is a seed file with one to four mutations stacked (sometimes up to sixteen). Binary
// formats get bit flips, interesting bytes, integers written over fields (0, 1, 2³¹, 2³², 2⁶³−1,
// 2⁶⁴−1, the file size ± 1, the old value doubled or times 2¹⁰ — the counts, lengths, shapes and
// offsets of a header), insertions, deletions, duplicated ranges, splices of two seeds and
// truncation. Text formats also get numbers swapped for boundary values, words from the target's
// dictionary, JSON punctuation, deep nesting, invalid UTF-8 and very long lines.

import Foundation

/// splitmix64: small, fast, and the same everywhere.
public struct FuzzRNG {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<n (n > 0).
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }

    public mutating func chance(_ percent: Int) -> Bool { below(100) < percent }

    public mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

/// FNV-1a of a string: folds a target's name into its inputs' seeds.
func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return h
}

public struct Mutator {
    /// binary: a binary format (with `fields`, the integer fields of its header); headerJSON: a
    /// binary format with a JSON header (safetensors); text: lines; json: a JSON document, also
    /// mutated as a tree (a value swapped for a boundary value, a key dropped, renamed or added).
    public enum Kind: Sendable { case binary, headerJSON, text, json }

    public let seeds: [[UInt8]]
    public let kind: Kind
    /// Words that mean something in the format (keys, type names), spliced into text inputs.
    public let dictionary: [String]
    /// Inputs never grow past this many bytes.
    public let maxBytes: Int
    /// The (offset, width) of each integer field of each seed's header: counts, lengths, types,
    /// dimensions and offsets, where a wrong value is most telling.
    let fields: [[(offset: Int, width: Int)]]

    public init(seeds: [[UInt8]], kind: Kind, dictionary: [String] = [], maxBytes: Int = 4 << 20,
                fields: ([UInt8]) -> [(offset: Int, width: Int)] = { _ in [] }) {
        precondition(!seeds.isEmpty, "a target needs at least one seed")
        self.seeds = seeds
        self.kind = kind
        self.dictionary = dictionary
        self.maxBytes = maxBytes
        self.fields = seeds.map(fields)
    }

    /// Input `index` of a run seeded with `runSeed` for the target `name`. Index 0..<seeds.count
    /// are the seeds themselves.
    public func input(_ index: Int, runSeed: UInt64, target name: String) -> [UInt8] {
        if index < seeds.count { return seeds[index] }
        var rng = FuzzRNG(seed: runSeed ^ fnv1a(name) ^ (UInt64(index) &* 0xD134_2543_DE82_EF95))
        let seed = rng.below(seeds.count)
        var bytes = seeds[seed]
        let rounds = rng.chance(10) ? 4 + rng.below(13) : 1 + rng.below(4)
        // Most JSON inputs stay JSON (changed as a tree), so the checks behind the parser are reached.
        let treeOnly = kind == .json && rng.chance(65)
        for round in 0..<rounds {
            // The seed's header fields are where they were until the first mutation moves bytes.
            if round == 0, !fields[seed].isEmpty, rng.chance(50) {
                overwriteField(&bytes, fields[seed], &rng)
            } else if kind == .json, treeOnly || rng.chance(40), mutateTree(&bytes, &rng) {
                // mutated as a JSON tree
            } else {
                mutate(&bytes, &rng)
            }
            if bytes.count > maxBytes { bytes.removeLast(bytes.count - maxBytes) }
        }
        return bytes
    }

    // MARK: - Mutations

    static let interestingBytes: [UInt8] = [0x00, 0x01, 0x02, 0x07, 0x08, 0x09, 0x0A, 0x0D, 0x1F, 0x20, 0x22, 0x2C, 0x2D, 0x2E,
                                            0x30, 0x31, 0x39, 0x3A, 0x40, 0x5B, 0x5C, 0x5D, 0x65, 0x7B, 0x7D, 0x7F, 0x80,
                                            0xBF, 0xC0, 0xC3, 0xE2, 0xED, 0xF0, 0xF4, 0xFE, 0xFF]

    static let interestingIntegers: [UInt64] = [
        0, 1, 2, 3, 4, 7, 8, 16, 31, 32, 33, 63, 64, 127, 128, 255, 256, 1023, 1024, 4095, 4096, 0x7FFF, 0x8000, 0xFFFF,
        0x1_0000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 0x1_0000_0001, 1 << 40, 1 << 48,
        UInt64(Int64.max), UInt64(Int64.max) + 1, UInt64.max, UInt64.max - 1,
    ]

    static let interestingNumbers = [
        "0", "-0", "1", "-1", "2", "3", "7", "8", "31", "32", "255", "256", "257", "1023", "1024", "65535", "65536",
        "1048576", "1048577", "2147483647", "2147483648", "-2147483649", "4294967295", "4294967296",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551615",
        "18446744073709551616", "99999999999999999999999999999", "1e308", "1e309", "-1e309", "1e-400", "0.5", "1.5",
        "-0.0", "1E2", "NaN", "Infinity", "null", "true", "false", "\"\"", "\"1\"", "[]", "{}", "[1]",
    ]

    static let jsonFragments = ["{", "}", "[", "]", "\"", ",", ":", " ", "\n", "\\", "\\u0000", "\\ud800", "\\udc00",
                                "\\uD83D\\uDE00", "\\x", "null", "true", "//", "/*", "'", "\u{FEFF}", "\t"]

    static let invalidUTF8: [[UInt8]] = [[0xC0], [0xC1, 0xBF], [0xFF], [0xFE], [0x80], [0xBF, 0xBF], [0xE2, 0x82],
                                         [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80],
                                         [0xF0, 0x80, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0xE0, 0x80, 0xAF]]

    func mutate(_ bytes: inout [UInt8], _ rng: inout FuzzRNG) {
        let text = kind != .binary
        switch rng.below(text ? 20 : 14) {
        case 0, 1: flipBit(&bytes, &rng)
        case 2: setByte(&bytes, &rng)
        case 3, 4: overwriteInteger(&bytes, &rng)
        case 5: inflateInteger(&bytes, &rng)
        case 6: insertBytes(&bytes, &rng)
        case 7: deleteRange(&bytes, &rng)
        case 8: duplicateRange(&bytes, &rng)
        case 9: splice(&bytes, &rng)
        case 10: truncate(&bytes, &rng)
        case 11: insertRun(&bytes, &rng)
        case 12: setByte(&bytes, &rng)
        case 13: flipBit(&bytes, &rng)
        case 14, 15: replaceNumber(&bytes, &rng)
        case 16: insertWord(&bytes, &rng)
        case 17: insertInvalidUTF8(&bytes, &rng)
        case 18: repeatLine(&bytes, &rng)
        default: nest(&bytes, &rng)
        }
    }

    /// A position biased towards the front, where headers, keys and counts are.
    private func position(_ count: Int, _ rng: inout FuzzRNG, inclusiveEnd: Bool = false) -> Int {
        let n = count + (inclusiveEnd ? 1 : 0)
        guard n > 0 else { return 0 }
        return rng.chance(60) ? rng.below(min(n, 4096)) : rng.below(n)
    }

    private func flipBit(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        guard !b.isEmpty else { return }
        b[position(b.count, &rng)] ^= UInt8(1) << UInt8(rng.below(8))
    }

    private func setByte(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        guard !b.isEmpty else { return }
        b[position(b.count, &rng)] = rng.pick(Self.interestingBytes)
    }

    /// Writes a boundary value as a 1-, 2-, 4- or 8-byte little-endian integer, often at an aligned
    /// position (where a binary header's fields are).
    private func overwriteInteger(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        let width = rng.pick([1, 2, 4, 4, 8, 8, 8])
        guard b.count >= width else { return }
        var at = position(b.count - width + 1, &rng)
        if rng.chance(50) { at = at / width * width }
        var value = rng.chance(15) ? UInt64(b.count) &+ UInt64(bitPattern: Int64(rng.below(5) - 2)) : rng.pick(Self.interestingIntegers)
        if rng.chance(20) { value = ~value &+ 1 }   // negative
        write(&b, value, at: at, width: width)
    }

    /// A header field set to a boundary value, or inflated: the size-claiming fields of a header.
    private func overwriteField(_ b: inout [UInt8], _ fields: [(offset: Int, width: Int)], _ rng: inout FuzzRNG) {
        let f = rng.pick(fields)
        guard f.offset + f.width <= b.count else { return }
        var value: UInt64 = 0
        for k in 0..<f.width { value |= UInt64(b[f.offset + k]) << (8 * UInt64(k)) }
        switch rng.below(6) {
        case 0: value = rng.pick(Self.interestingIntegers)
        case 1: value = UInt64(b.count) &+ UInt64(bitPattern: Int64(rng.below(9) - 4))
        case 2: value = value &<< UInt64(1 + rng.below(48))
        case 3: value = value &+ UInt64(bitPattern: Int64(rng.below(17) - 8))
        case 4: value = ~value &+ 1
        default: value = value &* UInt64(2 + rng.below(1000))
        }
        write(&b, value, at: f.offset, width: f.width)
    }

    /// Multiplies an existing integer field: a count, length or offset claiming far more than there is.
    private func inflateInteger(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        let width = rng.pick([4, 8])
        guard b.count >= width else { return }
        var at = position(b.count - width + 1, &rng)
        if rng.chance(60) { at = at / width * width }
        var value: UInt64 = 0
        for k in 0..<width { value |= UInt64(b[at + k]) << (8 * UInt64(k)) }
        switch rng.below(4) {
        case 0: value = value &* 2 &+ 1
        case 1: value = value &<< UInt64(10 + rng.below(40))
        case 2: value = value &+ UInt64(1 + rng.below(64))
        default: value |= UInt64(1) << UInt64(width * 8 - 1 - rng.below(8))
        }
        write(&b, value, at: at, width: width)
    }

    private func write(_ b: inout [UInt8], _ value: UInt64, at: Int, width: Int) {
        for k in 0..<width { b[at + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
    }

    private func insertBytes(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        let at = position(b.count, &rng, inclusiveEnd: true)
        let n = 1 + rng.below(rng.chance(80) ? 8 : 256)
        b.insert(contentsOf: (0..<n).map { _ in rng.chance(50) ? rng.pick(Self.interestingBytes) : UInt8(truncatingIfNeeded: rng.next()) }, at: at)
    }

    /// A long run of one byte: a huge line, a long number, a long run of spaces or zeros.
    private func insertRun(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        let at = position(b.count, &rng, inclusiveEnd: true)
        let n = rng.chance(80) ? 1 + rng.below(4096) : 1 + rng.below(1 << 20)
        let byte: UInt8 = kind == .text ? rng.pick(Array("a 0\n\"[{Ġé".utf8) + [0x00]) : rng.pick(Self.interestingBytes)
        b.insert(contentsOf: repeatElement(byte, count: n), at: at)
    }

    private func deleteRange(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        guard !b.isEmpty else { return }
        let at = position(b.count, &rng)
        let n = 1 + rng.below(min(b.count - at, rng.chance(80) ? 16 : 4096))
        b.removeSubrange(at..<(at + n))
    }

    private func duplicateRange(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        guard !b.isEmpty else { return }
        let from = position(b.count, &rng)
        let n = 1 + rng.below(min(b.count - from, 512))
        let chunk = Array(b[from..<(from + n)])
        let at = position(b.count, &rng, inclusiveEnd: true)
        for _ in 0..<(rng.chance(90) ? 1 : 2 + rng.below(64)) { b.insert(contentsOf: chunk, at: at) }
    }

    /// The front of this input and the back of another seed.
    private func splice(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        let other = rng.pick(seeds)
        guard !other.isEmpty else { return }
        let cut = rng.below(b.count + 1), from = rng.below(other.count)
        b = Array(b[..<cut]) + other[from...]
    }

    private func truncate(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        guard !b.isEmpty else { return }
        b.removeLast(1 + rng.below(b.count))
    }

    // JSON as a tree

    private indirect enum Step { case key(String), index(Int) }

    /// Parses the input as JSON, changes one node, and writes it back (keys sorted, so the result
    /// is the same in every process); false when the input is not JSON.
    private func mutateTree(_ b: inout [UInt8], _ rng: inout FuzzRNG) -> Bool {
        guard b.count < (1 << 20), let root = try? JSONSerialization.jsonObject(with: Data(b), options: [.fragmentsAllowed]) else {
            return false
        }
        var paths: [[Step]] = [[]]
        func walk(_ node: Any, _ path: [Step]) {
            guard paths.count < 4096 else { return }
            if let object = node as? [String: Any] {
                for key in object.keys.sorted() { paths.append(path + [.key(key)]); walk(object[key]!, path + [.key(key)]) }
            } else if let array = node as? [Any] {
                for (i, item) in array.enumerated() { paths.append(path + [.index(i)]); walk(item, path + [.index(i)]) }
            }
        }
        walk(root, [])
        let path = rng.pick(paths)
        let placeholder = "\u{1}myopia-fuzz\u{1}"
        let literal = rng.chance(70) ? rng.pick(Self.interestingNumbers)
            : rng.pick(["\"\"", "\"" + (dictionary.isEmpty ? "x" : rng.pick(dictionary)) + "\"", "[]", "{}", "[[[]]]",
                        "\"" + String(repeating: "x", count: 1 + rng.below(5000)) + "\"", "[" + Array(repeating: "0", count: 1 + rng.below(3000)).joined(separator: ",") + "]"])
        let op = rng.below(6)
        func edit(_ node: Any, _ rest: ArraySlice<Step>) -> Any? {
            guard let step = rest.first else {
                return op == 0 ? nil : placeholder   // nil: remove the node
            }
            if var object = node as? [String: Any], case .key(let key) = step, let child = object[key] {
                if rest.count == 1 && op == 1, !dictionary.isEmpty {   // rename the key
                    object[key] = nil
                    object[rng.pick(dictionary)] = child
                } else if rest.count == 1 && op == 2, !dictionary.isEmpty {   // add a key beside it
                    object[rng.pick(dictionary)] = placeholder
                } else {
                    object[key] = edit(child, rest.dropFirst())
                }
                return object
            }
            if var array = node as? [Any], case .index(let i) = step, i < array.count {
                if let changed = edit(array[i], rest.dropFirst()) { array[i] = changed } else { array.remove(at: i) }
                if rest.count == 1 && op == 3 { array.append(array.isEmpty ? placeholder : array[rng.below(array.count)]) }
                return array
            }
            return node
        }
        guard let changed = edit(root, path[...]),
              let data = try? JSONSerialization.data(withJSONObject: changed, options: [.sortedKeys, .fragmentsAllowed]) else { return false }
        var text = String(decoding: data, as: UTF8.self)
        text = text.replacingOccurrences(of: "\"\\u0001myopia-fuzz\\u0001\"", with: literal)
        b = Array(text.utf8)
        return true
    }

    // Text

    /// Swaps a run of digits (with its sign) for a boundary value.
    private func replaceNumber(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        let digits = b.indices.filter { (0x30...0x39).contains(b[$0]) && ($0 == 0 || !(0x30...0x39).contains(b[$0 - 1])) }
        guard !digits.isEmpty else { return insertWord(&b, &rng) }
        var start = rng.pick(digits), end = start
        while end < b.count, (0x30...0x39).contains(b[end]) || b[end] == 0x2E || b[end] == 0x65 { end += 1 }
        if start > 0, b[start - 1] == 0x2D { start -= 1 }
        b.replaceSubrange(start..<end, with: Array(rng.pick(Self.interestingNumbers).utf8))
    }

    private func insertWord(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        let words = dictionary.isEmpty ? Self.jsonFragments : (rng.chance(60) ? dictionary.map { "\"\($0)\"" } + dictionary : Self.jsonFragments)
        var word = Array(rng.pick(words).utf8)
        if rng.chance(30) { word = Array("\"\(rng.pick(dictionary.isEmpty ? ["a"] : dictionary))\": \(rng.pick(Self.interestingNumbers)),".utf8) }
        let at = position(b.count, &rng, inclusiveEnd: true)
        if rng.chance(50), !b.isEmpty {
            let n = min(b.count - min(at, b.count - 1), 1 + rng.below(8))
            let start = min(at, b.count - 1)
            b.replaceSubrange(start..<(start + n), with: word)
        } else {
            b.insert(contentsOf: word, at: at)
        }
    }

    private func insertInvalidUTF8(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        b.insert(contentsOf: rng.pick(Self.invalidUTF8), at: position(b.count, &rng, inclusiveEnd: true))
    }

    /// Repeats one line many times, or makes it very long.
    private func repeatLine(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        guard !b.isEmpty else { return }
        let at = position(b.count, &rng)
        let start = b[..<at].lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
        let end = b[at...].firstIndex(of: 0x0A) ?? b.count
        let line = Array(b[start..<end])
        guard !line.isEmpty else { return }
        let times = rng.chance(70) ? 2 + rng.below(16) : 2 + rng.below(max(2, (1 << 20) / line.count))
        var grown: [UInt8] = []
        grown.reserveCapacity(line.count * times + times)
        for _ in 0..<times {
            grown += line
            if rng.chance(50) { grown.append(0x0A) }
        }
        b.replaceSubrange(start..<end, with: grown)
    }

    /// Deeply nested brackets (a stack-depth attack on recursive parsers).
    private func nest(_ b: inout [UInt8], _ rng: inout FuzzRNG) {
        let depth = rng.chance(70) ? 1 + rng.below(100) : 1 + rng.below(100_000)
        let open: UInt8 = rng.chance(50) ? 0x5B : 0x7B, close: UInt8 = open == 0x5B ? 0x5D : 0x7D
        let at = position(b.count, &rng, inclusiveEnd: true)
        var chunk = [UInt8](repeating: open, count: depth)
        if open == 0x7B { chunk = Array(repeatElement(Array("{\"a\":".utf8), count: depth).joined()) }
        if rng.chance(50) { chunk += repeatElement(close, count: depth) }
        b.insert(contentsOf: chunk, at: at)
    }
}

/// The integer fields of a GGUF header (tools/fuzz: where size-claiming mutations aim): the
/// counts, every key and string length, value types, array types and counts, tensor name
/// lengths, n_dims, dimensions, tensor types and offsets. Arrays contribute their first elements.
@Sendable public func ggufHeaderFields(_ b: [UInt8]) -> [(offset: Int, width: Int)] {
    var fields: [(offset: Int, width: Int)] = [(4, 4), (8, 8), (16, 8)]
    var pos = 24
    func u(_ width: Int) -> UInt64? {
        guard pos + width <= b.count else { return nil }
        var v: UInt64 = 0
        for k in 0..<width { v |= UInt64(b[pos + k]) << (8 * UInt64(k)) }
        fields.append((pos, width))
        pos += width
        return v
    }
    func skipString() -> Bool {
        guard let n = u(8), n <= UInt64(b.count - pos) else { return false }
        pos += Int(n)
        return true
    }
    let sizes: [UInt64: Int] = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8]
    func value(_ type: UInt64, record: Bool) -> Bool {
        if let size = sizes[type] {
            guard pos + size <= b.count else { return false }
            if record { fields.append((pos, size)) }
            pos += size
            return true
        }
        if type == 8 {
            if record { return skipString() }
            guard pos + 8 <= b.count else { return false }
            var n: UInt64 = 0
            for k in 0..<8 { n |= UInt64(b[pos + k]) << (8 * UInt64(k)) }
            pos += 8
            guard n <= UInt64(b.count - pos) else { return false }
            pos += Int(n)
            return true
        }
        guard type == 9, let element = u(4), let count = u(8), count < UInt64(b.count) else { return false }
        for i in 0..<Int(count) where !value(element, record: record && i < 16) { return false }
        return true
    }
    guard b.count >= 24 else { return fields }
    let tensors = b[8..<16].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    let entries = b[16..<24].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    for _ in 0..<min(entries, 4096) {
        guard skipString(), let type = u(4), value(type, record: true) else { return fields }
    }
    for _ in 0..<min(tensors, 4096) {
        guard skipString(), let dims = u(4), dims <= 8 else { return fields }
        for _ in 0..<dims { guard u(8) != nil else { return fields } }
        guard u(4) != nil, u(8) != nil else { return fields }
    }
    return fields
}
