import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaModel

/// Attention over strips of queries (Attention.swift): with the pattern kept in memory or rebuilt
/// from the row statistics, every result is bitwise the same; and both match a direct
/// double-precision attention, over lengths that span several strips.
final class AttentionStripTests: XCTestCase {
    /// Multi-head (GPT-2-like) and grouped-query (Llama-like) shapes.
    let shapes = [AttentionShape(nh: 2, nkv: 2, hs: 8), AttentionShape(nh: 4, nkv: 2, hs: 5)]
    /// One row, inside one strip, one strip exactly, one row past it, several strips.
    let lengths = [1, 7, Attention.stripRows, Attention.stripRows + 1, 2 * Attention.stripRows + 22]

    struct Run {
        var z: [Float], stats: [Float], probs: [Float]?
        var dqkv: [Float], dqkvInput: [Float]?
    }

    /// Forward and backward on random q/k/v, keeping the pattern or not; `share` < 1 also forms the
    /// input's gradient of a myopic flow.
    func run(_ sh: AttentionShape, b: Int, t: Int, keep: Bool, share: Float = 1, seed: UInt64) -> Run {
        let qkv = Buffer(randomFloats(b * t * sh.width, seed: seed, std: 1.5))
        let dz = Buffer(randomFloats(b * t * sh.out, seed: seed + 1))
        let z = Buffer(zeros: b * t * sh.out), stats = Buffer(zeros: b * sh.nh * t * 2)
        let probs = keep ? Buffer(zeros: b * sh.nh * t * t) : nil
        let scores = keep ? Buffer(zeros: b * sh.nh * t * t) : nil
        Attention.forward(z: z.p, statistics: stats.p, probs: probs?.p, qkv: qkv.p, b: b, t: t, shape: sh)
        let dqkv = Buffer(zeros: qkv.count), input = share < 1 ? Buffer(zeros: qkv.count) : nil
        Attention.backward(dqkv: dqkv.p, dz: dz.p, qkv: qkv.p, statistics: stats.p, probs: probs.map { UnsafePointer($0.p) },
                           scoreGradients: scores?.p, b: b, t: t, shape: sh, dqkvInput: input?.p, inputShare: share)
        return Run(z: z.array, stats: stats.array, probs: probs?.array, dqkv: dqkv.array, dqkvInput: input?.array)
    }

    func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

    func testKeptAndRebuiltPatternsGiveBitwiseTheSameResults() {
        for sh in shapes {
            for t in lengths {
                for share: Float in [1, 0.5, 0] {
                    let label = "nh \(sh.nh) nkv \(sh.nkv) t \(t) share \(share)"
                    let kept = run(sh, b: 2, t: t, keep: true, share: share, seed: UInt64(t) * 7)
                    let rebuilt = run(sh, b: 2, t: t, keep: false, share: share, seed: UInt64(t) * 7)
                    XCTAssertEqual(bits(kept.z), bits(rebuilt.z), "z, \(label)")
                    XCTAssertEqual(bits(kept.stats), bits(rebuilt.stats), "statistics, \(label)")
                    XCTAssertEqual(bits(kept.dqkv), bits(rebuilt.dqkv), "dqkv, \(label)")
                    XCTAssertEqual(kept.dqkvInput.map(bits), rebuilt.dqkvInput.map(bits), "dqkv input, \(label)")
                }
            }
        }
    }

    /// `rebuildPattern` (what `ActivationCache.pattern(layer:)` serves when the forward kept only
    /// statistics) writes bitwise the pattern a forward keeping it writes: rows sum to one, zeros above
    /// the diagonal.
    func testRebuiltPatternIsBitwiseTheKeptOne() {
        for sh in shapes {
            for t in lengths {
                let b = 2
                let qkv = Buffer(randomFloats(b * t * sh.width, seed: UInt64(t), std: 1.5))
                let z = Buffer(zeros: b * t * sh.out), stats = Buffer(zeros: b * sh.nh * t * 2)
                let kept = Buffer(zeros: b * sh.nh * t * t), rebuilt = Buffer(randomFloats(b * sh.nh * t * t, seed: 3))
                Attention.forward(z: z.p, statistics: stats.p, probs: kept.p, qkv: qkv.p, b: b, t: t, shape: sh)
                Attention.rebuildPattern(rebuilt.p, statistics: stats.p, qkv: qkv.p, b: b, t: t, shape: sh)
                XCTAssertEqual(bits(kept.array), bits(rebuilt.array), "nh \(sh.nh) t \(t)")
                let p = kept.array
                for row in 0..<(b * sh.nh * t) {
                    let query = row % t, r = p[(row * t)..<((row + 1) * t)]
                    XCTAssertEqual(r.prefix(query + 1).reduce(0, +), 1, accuracy: 1e-5)
                    XCTAssertEqual(r.dropFirst(query + 1).reduce(0) { $0 + abs($1) }, 0)
                }
            }
        }
    }

    /// Against attention written out in double precision: z, and the gradients of q, k and v, with
    /// a myopic flow's input share for keys and values.
    func testStripsMatchADirectDoubleAttention() {
        let b = 2, share: Float = 0.25
        for sh in shapes {
            for t in [5, 2 * Attention.stripRows + 22] {
                let seed = UInt64(100 + t)
                let got = run(sh, b: b, t: t, keep: false, share: share, seed: seed)
                let want = directAttention(sh, b: b, t: t, share: Double(share),
                                           qkv: randomFloats(b * t * sh.width, seed: seed, std: 1.5),
                                           dz: randomFloats(b * t * sh.out, seed: seed + 1))
                let label = "nh \(sh.nh) nkv \(sh.nkv) t \(t)"
                XCTAssertLessThan(maxRelativeError(got.z, want.z), 1e-5, "z, \(label)")
                XCTAssertLessThan(maxRelativeError(got.dqkv, want.dqkv), 1e-5, "dqkv, \(label)")
                XCTAssertLessThan(maxRelativeError(got.dqkvInput!, want.dqkvInput), 1e-5, "dqkv input, \(label)")
            }
        }
    }

    /// Causal attention in double: a = softmax(q·kᵀ/√HS), z = a·v, and its backward.
    func directAttention(_ sh: AttentionShape, b: Int, t: Int, share: Double, qkv: [Float], dz: [Float])
        -> (z: [Float], dqkv: [Float], dqkvInput: [Float]) {
        let hs = sh.hs, w = sh.width, out = sh.out, scale = 1 / Double(hs).squareRoot()
        var z = [Double](repeating: 0, count: b * t * out)
        var dqkv = [Double](repeating: 0, count: qkv.count), input = [Double](repeating: 0, count: qkv.count)
        func x(_ bi: Int, _ row: Int, _ column: Int) -> Double { Double(qkv[(bi * t + row) * w + column]) }
        for bi in 0..<b {
            for h in 0..<sh.nh {
                let qc = h * hs, kc = sh.keyColumn + (h / sh.group) * hs, vc = sh.valueColumn + (h / sh.group) * hs
                for i in 0..<t {
                    var s = (0...i).map { j in (0..<hs).reduce(0.0) { $0 + x(bi, i, qc + $1) * x(bi, j, kc + $1) } * scale }
                    let m = s.max()!
                    s = s.map { Foundation.exp($0 - m) }
                    let total = s.reduce(0, +)
                    let p = s.map { $0 / total }
                    let g = (0..<hs).map { Double(dz[(bi * t + i) * out + qc + $0]) }
                    let dp = (0...i).map { j in (0..<hs).reduce(0.0) { $0 + g[$1] * x(bi, j, vc + $1) } }
                    let dot = (0...i).reduce(0.0) { $0 + p[$1] * dp[$1] }
                    for j in 0...i {
                        let ds = p[j] * (dp[j] - dot) * scale
                        for e in 0..<hs {
                            z[(bi * t + i) * out + qc + e] += p[j] * x(bi, j, vc + e)
                            dqkv[(bi * t + i) * w + qc + e] += ds * x(bi, j, kc + e)
                            dqkv[(bi * t + j) * w + kc + e] += ds * x(bi, i, qc + e)
                            dqkv[(bi * t + j) * w + vc + e] += p[j] * g[e]
                            // What a myopic flow sends to the input: the diagonal term in full, a
                            // share of the rest (queries: the ordinary gradient).
                            let weight = j == i ? 1 : share
                            input[(bi * t + i) * w + qc + e] += ds * x(bi, j, kc + e)
                            input[(bi * t + j) * w + kc + e] += weight * ds * x(bi, i, qc + e)
                            input[(bi * t + j) * w + vc + e] += weight * p[j] * g[e]
                        }
                    }
                }
            }
        }
        return (z.map(Float.init), dqkv.map(Float.init), input.map(Float.init))
    }
}
