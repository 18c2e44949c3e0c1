import Foundation
import MyopiaSupport
import MyopiaTokenizers

/// A corpus as one token sequence, split into a training part and a validation tail.
public struct TokenDataset: Sendable {
    public let source: String
    public let train: [Int32]
    public let validation: [Int32]

    public init(train: [Int32], validation: [Int32], source: String) {
        self.train = train
        self.validation = validation
        self.source = source
    }

    /// Reads a text file with `tokenizer` (bytes by default); the last `validationFraction` of the
    /// tokens is validation.
    public static func load(textFile url: URL, tokenizer: any Tokenizer = ByteTokenizer(), validationFraction: Double = 0.1,
                            minimumTokens: Int = 2) throws -> TokenDataset {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw InputError.io(file: url.path, reason: "cannot read the corpus: \(error.localizedDescription)")
        }
        guard data.count >= minimumTokens else {
            throw InputError.invalidValue(file: url.path, field: "(contents)", expected: "at least \(minimumTokens) bytes of text", found: "\(data.count) bytes")
        }
        let tokens = tokenizer is ByteTokenizer ? ByteTokenizer().encode(data) : tokenizer.encode(String(decoding: data, as: UTF8.self))
        return split(tokens, validationFraction: validationFraction, source: url.path)
    }

    public static func split(_ tokens: [Int32], validationFraction: Double, source: String) -> TokenDataset {
        let nVal = Int((Double(tokens.count) * validationFraction).rounded())
        let cut = tokens.count - nVal
        return TokenDataset(train: Array(tokens[..<cut]), validation: Array(tokens[cut...]), source: source)
    }

    /// Consecutive, non-overlapping windows of T+1 tokens (T predictions each); a shorter tail is dropped.
    public static func windows(_ tokens: [Int32], seqLen t: Int) -> Int { tokens.count / (t + 1) }

    /// Copies windows first..<first+count into inputs (their first T tokens) and targets (their last T),
    /// each (count, T) at the front of the arrays.
    public static func fillWindows(_ tokens: [Int32], seqLen t: Int, first: Int, count: Int,
                                   inputs: inout [Int32], targets: inout [Int32]) {
        for i in 0..<count {
            let start = (first + i) * (t + 1)
            for j in 0..<t {
                inputs[i * t + j] = tokens[start + j]
                targets[i * t + j] = tokens[start + j + 1]
            }
        }
    }
}

/// Seeded random windows of T+1 tokens from a token sequence: inputs are the first T, targets the last T.
/// The generator state is the data position, so a resumed run draws the same batches.
public struct Batcher: Sendable {
    public let batch: Int
    public let seqLen: Int
    public var rng: SeededGenerator

    public init(batch: Int, seqLen: Int, seed: UInt64) {
        self.batch = batch
        self.seqLen = seqLen
        rng = SeededGenerator(seed: seed)
    }

    /// Fills inputs and targets (B·T each) from random windows of `tokens` (count ≥ T + 1).
    public mutating func next(from tokens: [Int32], inputs: inout [Int32], targets: inout [Int32]) {
        let t = seqLen
        precondition(tokens.count > t)
        for b in 0..<batch {
            let start = rng.nextInt(below: tokens.count - t)
            for i in 0..<t {
                inputs[b * t + i] = tokens[start + i]
                targets[b * t + i] = tokens[start + i + 1]
            }
        }
    }
}
