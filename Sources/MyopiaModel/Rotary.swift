import Foundation
import MyopiaKernels

// Dimensions: HS head size, H = HS/2 rotated pairs, P positions (maxPositions).

/// Rotary position embedding: at position p, pair i of every query and key head is rotated by the
/// angle p·ω_i with ω_i = θ^(−2i/RD), where RD ≤ HS is the number of dimensions rotated (the first
/// RD of each head; GPT-NeoX rotates a fraction, the others all: RD = HS). The pairs are (i, i + RD/2)
/// in Hugging Face's layout (rotate_half) or (2i, 2i + 1) when interleaved. Angles are formed in fp32 as
/// `LlamaRotaryEmbedding` forms them (ω in fp32, p·ω rounded to fp32), so the rotation matches.
///
/// A rotation is orthogonal: its backward is the rotation by −p·ω_i, so backward needs only the
/// rotated q and k the forward pass keeps.
final class RotaryEmbedding {
    let headSize: Int
    /// RD: the dimensions of each head that rotate (the first RD).
    let rotaryDims: Int
    let interleaved: Bool
    let positions: Int
    private let cos: UnsafeMutablePointer<Float>   // (P, RD/2)
    private let sin: UnsafeMutablePointer<Float>   // (P, RD/2)

    init(headSize: Int, rotaryDims: Int? = nil, positions: Int, theta: Double, interleaved: Bool) {
        self.headSize = headSize
        let rd = rotaryDims ?? headSize
        self.rotaryDims = rd
        self.interleaved = interleaved
        self.positions = positions
        let half = rd / 2
        cos = .allocate(capacity: max(1, positions * half))
        sin = .allocate(capacity: max(1, positions * half))
        for i in 0..<half {
            let omega = 1 / powf(Float(theta), Float(2 * i) / Float(rd))
            for p in 0..<positions {
                let angle = Float(p) * omega
                cos[p * half + i] = Foundation.cos(angle)
                sin[p * half + i] = Foundation.sin(angle)
            }
        }
    }

    deinit {
        cos.deallocate()
        sin.deallocate()
    }

    /// Rotates `heads` consecutive heads of HS floats in each of `rows` rows of `x` (row stride
    /// `ld`); row r sits at position `base + firstPosition + r`, or at `base + (firstPosition + r) %
    /// period` when a period is given (sequences of `period` rows each). `inverse` rotates back
    /// (backward).
    func rotate(_ x: UnsafeMutablePointer<Float>, ld: Int, rows: Int, heads: Int, firstPosition: Int = 0,
                period: Int? = nil, base: Int = 0, inverse: Bool = false) {
        let half = rotaryDims / 2
        let sign: Float = inverse ? -1 : 1
        let (lowStep, highOffset) = interleaved ? (2, 1) : (1, half)
        for r in 0..<rows {
            let position = base + (period.map { (firstPosition + r) % $0 } ?? firstPosition + r)
            precondition(position < positions, "position \(position) is past the model's context")
            let cs = cos + position * half, sn = sin + position * half
            for h in 0..<heads {
                let v = x + r * ld + h * headSize
                for i in 0..<half {
                    let a = v + i * lowStep, b = a + highOffset
                    let c = cs[i], s = sign * sn[i]
                    let x0 = a.pointee, x1 = b.pointee
                    a.pointee = x0 * c - x1 * s
                    b.pointee = x1 * c + x0 * s
                }
            }
        }
    }
}
