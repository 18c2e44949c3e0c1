import Foundation
import MyopiaSupport

// Token tasks (docs/DESIGN.md §5): generated, seeded episodes of T input tokens over a small vocabulary.
// Targets are −1 (no loss) everywhere except the answer positions, so training and scoring are
// about the task alone. Each episode is one stream of T+1 tokens: inputs are the first T, and at an
// answer position t the target is the stream's token t+1 (the answer also appears in the input,
// as in language modelling).
//
// The two tasks separate "breadcrumbs" from "pre-caching":
// - delayed recall: the answer is one earlier token, which the answer position can attend to and
//   copy. Everything the answer needs is trained at the answer position itself, so a myopic model
//   should do as well as a vanilla one.
// - table sum: the answer is Σ g(d_i, d_{i+1}) over a segment of digits, g a fixed random binary
//   table. g(d_i, d_{i+1}) is best computed at position i+1 (where both digits are visible) and is
//   useful only to a later answer, so only a model whose earlier positions are trained for later
//   losses (vanilla) learns to compute it there. A function of a single token would not do: it is
//   linear in the one-hot embedding, and the value weights could learn it from past gradients even
//   under myopic training.

/// One generated episode: inputs (T) and targets (T), −1 where nothing is asked.
public struct TokenEpisode: Equatable, Sendable {
    public var inputs: [Int32]
    public var targets: [Int32]

    /// The answer positions (targets ≥ 0).
    public var answerPositions: [Int] { targets.indices.filter { targets[$0] >= 0 } }
}

/// What a results file records about a task.
public struct TokenTaskSummary: Codable, Equatable, Sendable {
    public var name: String
    public var definition: String
    public var vocabSize: Int
    public var seqLen: Int
    public var answersPerEpisode: Int
    /// Accuracy of always giving the most likely answer.
    public var majorityAccuracy: Double
    public var parameters: [String: Int]
    /// The table of table-sum (rows: d_i, columns: d_{i+1}); nil for other tasks.
    public var table: [[Int]]?

    enum CodingKeys: String, CodingKey {
        case name, definition, parameters, table
        case vocabSize = "vocab_size", seqLen = "seq_len", answersPerEpisode = "answers_per_episode"
        case majorityAccuracy = "majority_accuracy"
    }
}

/// A generated token task: seeded episodes of T tokens, with answers at some positions.
public protocol TokenTask: Sendable {
    /// The command-line name (`recall`, `table-sum`).
    var name: String { get }
    var vocabSize: Int { get }
    /// Inputs per episode (T).
    var seqLen: Int { get }
    /// Answer positions per episode.
    var answersPerEpisode: Int { get }
    /// The definition, settings and baseline, as a results file records them.
    var summary: TokenTaskSummary { get }
    /// The next episode from `rng`.
    func episode(_ rng: inout SeededGenerator) -> TokenEpisode
    /// A readable name for a token id (for printing episodes).
    func tokenName(_ id: Int32) -> String
}

extension TokenTask {
    /// `count` episodes laid out as (count, T) inputs and targets.
    public func batch(_ count: Int, rng: inout SeededGenerator) -> (inputs: [Int32], targets: [Int32]) {
        var inputs: [Int32] = [], targets: [Int32] = []
        inputs.reserveCapacity(count * seqLen)
        targets.reserveCapacity(count * seqLen)
        for _ in 0..<count {
            let e = episode(&rng)
            inputs += e.inputs
            targets += e.targets
        }
        return (inputs, targets)
    }

    /// The episode written out, answers in brackets after their position: `M n3 f1 ... C [n3] n3 ...`.
    public func render(_ e: TokenEpisode) -> String {
        e.inputs.indices.map { i in
            tokenName(e.inputs[i]) + (e.targets[i] >= 0 ? " [\(tokenName(e.targets[i]))]" : "")
        }.joined(separator: " ")
    }
}

public enum TokenTaskError: Error, CustomStringConvertible, Equatable {
    case invalid(task: String, field: String, expected: String, found: Int)

    public var description: String {
        switch self {
        case .invalid(let task, let field, let expected, let found):
            return "\(task): \(field) must be \(expected), not \(found)"
        }
    }
}

/// **Delayed recall.** Tokens: fillers `f0..f{F−1}`, names `n0..n{N−1}`, a marker `M` and a cue `C`.
/// An episode of T inputs is random fillers, except: a marker at a random position p in the first
/// quarter, followed by a random name; then `cues` cues in the second half (one at a random
/// position in each of `cues` equal slots), each followed by the name. The answers are the name at
/// every cue. The cue position can attend to the name directly ("breadcrumbs"), so no earlier
/// position has to compute anything for it: myopic ≈ vanilla.
public struct DelayedRecallTask: TokenTask {
    public let seqLen: Int
    public let names: Int
    public let fillers: Int
    public let cues: Int

    public var name: String { "recall" }
    public var answersPerEpisode: Int { cues }
    public var vocabSize: Int { fillers + names + 2 }
    public var marker: Int32 { Int32(fillers + names) }
    public var cue: Int32 { Int32(fillers + names + 1) }
    public func nameToken(_ k: Int) -> Int32 { Int32(fillers + k) }

    public init(seqLen: Int = 32, names: Int = 16, fillers: Int = 16, cues: Int = 3) throws {
        func check(_ ok: Bool, _ field: String, _ expected: String, _ found: Int) throws {
            if !ok { throw TokenTaskError.invalid(task: "recall", field: field, expected: expected, found: found) }
        }
        try check(names >= 2, "names", "at least 2", names)
        try check(fillers >= 1, "fillers", "at least 1", fillers)
        try check(cues >= 1, "cues", "at least 1", cues)
        try check(seqLen >= 8, "seq_len", "at least 8", seqLen)
        try check((seqLen - seqLen / 2) / cues >= 2, "cues", "at most (seq_len − seq_len/2)/2 = \((seqLen - seqLen / 2) / 2)", cues)
        self.seqLen = seqLen
        self.names = names
        self.fillers = fillers
        self.cues = cues
    }

    public func episode(_ rng: inout SeededGenerator) -> TokenEpisode {
        let t = seqLen
        var stream = (0...t).map { _ in Int32(rng.nextInt(below: fillers)) }
        let p = rng.nextInt(below: max(1, t / 4 - 1))      // marker at p, name at p + 1 < t/4
        let who = nameToken(rng.nextInt(below: names))
        stream[p] = marker
        stream[p + 1] = who
        var targets = [Int32](repeating: -1, count: t)
        let half = t / 2, slot = (t - half) / cues
        for k in 0..<cues {
            let q = half + k * slot + rng.nextInt(below: slot - 1)   // cue at q, name at q + 1, both in the slot
            stream[q] = cue
            stream[q + 1] = who
            targets[q] = who
        }
        return TokenEpisode(inputs: Array(stream[..<t]), targets: targets)
    }

    public func tokenName(_ id: Int32) -> String {
        let i = Int(id)
        if i < fillers { return "f\(i)" }
        if i < fillers + names { return "n\(i - fillers)" }
        if id == marker { return "M" }
        if id == cue { return "C" }
        return "?\(i)"
    }

    public var summary: TokenTaskSummary {
        TokenTaskSummary(
            name: name,
            definition: "random fillers; a marker M in the first quarter followed by a random name; \(cues) cues C in the second half, each followed by the name; answer: the name at every cue",
            vocabSize: vocabSize, seqLen: seqLen, answersPerEpisode: cues,
            majorityAccuracy: 1 / Double(names),
            parameters: ["names": names, "fillers": fillers, "cues": cues], table: nil)
    }
}

/// **Table sum.** Tokens: digits `0..m−1`, `=`, and answers `s0..sW`. An episode is `segments`
/// segments of W+1 random digits d_1..d_{W+1}, then `=`, then the answer
/// `s{Σ_{i=1..W} g(d_i, d_{i+1})}`, where g is a fixed random binary m×m table (seeded by
/// `tableSeed`). The answers are the sums at every `=`.
///
/// g of a pair is best computed at the pair's second position and is useful only to the later
/// answer: the task needs pre-caching. A myopic model must instead gather W+1 digits at the `=`
/// and evaluate W nonlinear lookups there in one step; what it can learn without pre-caching is
/// the part of g that is a sum of single-digit terms (row and column means), which is linear in
/// the digits' one-hot embeddings.
///
/// With `balanced`, every row and column of g is half ones: the terms are then independent fair
/// coins, the sum is Binomial(W, ½) and no single digit tells anything about it — but a vanilla
/// model has no first-order foothold either, and at CPU sizes it stays on the plateau (measured:
/// 2000 steps of a 2-layer d_model 64 model, W = 8, at the majority answer). The default table
/// (independent fair bits) gives that foothold.
///
/// Why a count and not the sum mod m: an attention average over the segment reads a count off
/// directly (a mean over a fixed number of positions), while a sum mod m is parity-like and hard even for a vanilla small model.
public struct TableSumTask: TokenTask {
    public let digits: Int
    public let pairs: Int
    public let segments: Int
    public let tableSeed: UInt64
    public let balanced: Bool
    /// g: table[a][b] ∈ {0, 1}.
    public let table: [[Int]]

    public var name: String { "table-sum" }
    public var answersPerEpisode: Int { segments }
    public var segmentLength: Int { pairs + 3 }
    public var seqLen: Int { segments * segmentLength - 1 }
    public var vocabSize: Int { digits + 2 + pairs }
    public var equals: Int32 { Int32(digits) }
    public func sumToken(_ s: Int) -> Int32 { Int32(digits + 1 + s) }

    public init(digits: Int = 8, pairs: Int = 8, segments: Int = 4, tableSeed: UInt64 = 1, balanced: Bool = false) throws {
        func check(_ ok: Bool, _ field: String, _ expected: String, _ found: Int) throws {
            if !ok { throw TokenTaskError.invalid(task: "table-sum", field: field, expected: expected, found: found) }
        }
        try check(digits >= 2 && digits % 2 == 0, "digits", "an even number ≥ 2", digits)
        try check(pairs >= 1, "pairs", "at least 1", pairs)
        try check(segments >= 1, "segments", "at least 1", segments)
        self.digits = digits
        self.pairs = pairs
        self.segments = segments
        self.tableSeed = tableSeed
        self.balanced = balanced
        table = balanced ? Self.balancedTable(digits, seed: tableSeed) : Self.randomTable(digits, seed: tableSeed)
    }

    /// A random m×m 0/1 table with m/2 ones in every row and column: a circulant half-band with rows
    /// and columns permuted, then shuffled by many checkerboard swaps (which keep every margin).
    public static func balancedTable(_ m: Int, seed: UInt64) -> [[Int]] {
        var rng = SeededGenerator(seed: seed)
        var g = (0..<m).map { a in (0..<m).map { b in (b - a + m) % m < m / 2 ? 1 : 0 } }
        for _ in 0..<(20 * m * m) {
            let a = rng.nextInt(below: m), a2 = rng.nextInt(below: m)
            let b = rng.nextInt(below: m), b2 = rng.nextInt(below: m)
            if g[a][b] == 1, g[a2][b2] == 1, g[a][b2] == 0, g[a2][b] == 0 {
                g[a][b] = 0; g[a2][b2] = 0; g[a][b2] = 1; g[a2][b] = 1
            }
        }
        return g
    }

    /// A random m×m 0/1 table of independent fair bits.
    public static func randomTable(_ m: Int, seed: UInt64) -> [[Int]] {
        var rng = SeededGenerator(seed: seed)
        return (0..<m).map { _ in (0..<m).map { _ in rng.nextInt(below: 2) } }
    }

    public func episode(_ rng: inout SeededGenerator) -> TokenEpisode {
        var stream: [Int32] = [], targets: [Int32] = []
        stream.reserveCapacity(seqLen + 1)
        for _ in 0..<segments {
            let d = (0...pairs).map { _ in rng.nextInt(below: digits) }
            var sum = 0
            for i in 0..<pairs { sum += table[d[i]][d[i + 1]] }
            stream += d.map { Int32($0) }
            targets += [Int32](repeating: -1, count: d.count)
            stream += [equals, sumToken(sum)]
            targets += [sumToken(sum), -1]
        }
        return TokenEpisode(inputs: Array(stream[..<seqLen]), targets: Array(targets[..<seqLen]))
    }

    public func tokenName(_ id: Int32) -> String {
        let i = Int(id)
        if i < digits { return "\(i)" }
        if id == equals { return "=" }
        if i <= digits + 1 + pairs { return "s\(i - digits - 1)" }
        return "?\(i)"
    }

    /// P(answer = k), k = 0...W, for uniform random digits: a walk over (last digit, sum so far).
    public var answerDistribution: [Double] {
        var p = [[Double]](repeating: [Double](repeating: 0, count: pairs + 1), count: digits)
        for a in 0..<digits { p[a][0] = 1 / Double(digits) }
        for _ in 0..<pairs {
            var next = [[Double]](repeating: [Double](repeating: 0, count: pairs + 1), count: digits)
            for a in 0..<digits {
                for s in 0..<pairs where p[a][s] > 0 {
                    for b in 0..<digits { next[b][s + table[a][b]] += p[a][s] / Double(digits) }
                }
            }
            p = next
        }
        return (0...pairs).map { s in (0..<digits).map { p[$0][s] }.reduce(0, +) }
    }

    public var summary: TokenTaskSummary {
        return TokenTaskSummary(
            name: name,
            definition: "\(segments) segments of \(pairs + 1) random digits d_1..d_\(pairs + 1) then '=' then the answer s_k, k = Σ_{i=1..\(pairs)} g(d_i, d_{i+1}), g a fixed \(balanced ? "balanced " : "")random binary \(digits)×\(digits) table; answer: k at every '='",
            vocabSize: vocabSize, seqLen: seqLen, answersPerEpisode: segments,
            majorityAccuracy: answerDistribution.max() ?? 0,
            parameters: ["digits": digits, "pairs": pairs, "segments": segments, "table_seed": Int(truncatingIfNeeded: tableSeed),
                         "balanced": balanced ? 1 : 0],
            table: table)
    }
}
