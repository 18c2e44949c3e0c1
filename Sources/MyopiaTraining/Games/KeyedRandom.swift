import Foundation

/// Random numbers keyed by what they are for: (seed, purpose, step, sequence, position, draw)
/// hashes to one uniform number. A game's draws therefore do not depend on the thread that makes
/// them, on their order, or on how many draws came before — and a resumed run makes exactly the
/// draws the uninterrupted run would have made, with no generator state to save. Allocates nothing.
public struct KeyedRandom: Sendable, Equatable {
    public let seed: UInt64

    /// What a draw decides; part of the key, so the streams never overlap.
    public enum Purpose: UInt64, Sendable {
        /// Scheduled sampling: whether an input is replaced.
        case replace = 1
        /// The model's own sample (scheduled sampling, consequence game).
        case sample = 2
        /// The consequence game's choice of positions.
        case position = 3
    }

    public init(seed: UInt64) { self.seed = seed }

    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 64 random bits for the key (step counted from 1, sequence = the window's row in the batch).
    @inline(__always)
    public func bits(_ purpose: Purpose, step: Int, sequence: Int, position: Int, draw: Int = 0) -> UInt64 {
        var h = Self.mix(seed ^ 0x6D79_6F70_6961_2167)   // "myopia!g": apart from the data's streams
        h = Self.mix(h ^ purpose.rawValue)
        h = Self.mix(h ^ UInt64(bitPattern: Int64(step)))
        h = Self.mix(h ^ UInt64(bitPattern: Int64(sequence)))
        h = Self.mix(h ^ UInt64(bitPattern: Int64(position)))
        return Self.mix(h ^ UInt64(bitPattern: Int64(draw)))
    }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    public func uniform(_ purpose: Purpose, step: Int, sequence: Int, position: Int, draw: Int = 0) -> Double {
        Double(bits(purpose, step: step, sequence: sequence, position: position, draw: draw) >> 11) * 0x1.0p-53
    }

    /// A token drawn from softmax(logits) (temperature 1) by inverting its distribution at `u` in
    /// [0, 1): the first id whose cumulative probability exceeds u. Sums in Double, in id order,
    /// so the draw is exact up to rounding and the same on every machine.
    public static func sample(logits: UnsafePointer<Float>, count v: Int, u: Double) -> Int32 {
        precondition(v > 0)
        var maxValue = logits[0]
        for j in 1..<v where logits[j] > maxValue { maxValue = logits[j] }
        var total = 0.0
        for j in 0..<v { total += exp(Double(logits[j] - maxValue)) }
        let threshold = u * total
        var running = 0.0
        for j in 0..<v {
            running += exp(Double(logits[j] - maxValue))
            if running > threshold { return Int32(j) }
        }
        // u·total rounded up to the full sum: the last token with any probability.
        var last = v - 1
        while last > 0 && exp(Double(logits[last] - maxValue)) == 0 { last -= 1 }
        return Int32(last)
    }
}
