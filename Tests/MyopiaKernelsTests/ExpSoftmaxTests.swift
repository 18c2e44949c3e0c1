import Foundation
import XCTest
@testable import MyopiaKernels

final class ExpSoftmaxTests: KernelTestCase {
    func testExpRelativeErrorDenseSweep() {
        forEachRowOpsPath { path in checkExpRelativeErrorDenseSweep(path) }
    }

    func checkExpRelativeErrorDenseSweep(_ path: String) {
        // Every step of 2^-12 over [-87, 88] plus random points: ~720k values.
        var xs = stride(from: -87.0, through: 88.0, by: 1.0 / 4096).map { Float($0) }
        var rng = TestRandom(seed: 42)
        xs += rng.floats(100_000, -87, 88)
        var ys = [Float](repeating: 0, count: xs.count)
        RowOps.exp(xs, &ys, count: xs.count)
        var worst = 0.0, worstX: Float = 0
        for (x, y) in zip(xs, ys) {
            let ref = Foundation.exp(Double(x))
            let rel = abs(Double(y) - ref) / ref
            if rel > worst { worst = rel; worstX = x }
        }
        print("exp (\(path)): max relative error \(worst) at x = \(worstX)")
        XCTAssertLessThanOrEqual(worst, 2e-7, "\(path): worst relative error \(worst) at x = \(worstX)")
    }

    func testExpExtremesAndTails() {
        forEachRowOpsPath { path in checkExpExtremesAndTails(path) }
    }

    func checkExpExtremesAndTails(_ path: String) {
        let xs: [Float] = [-.infinity, -1e30, -100, -87.5, 0, 1, 88, 88.7, 89, 1000, .infinity, .nan, -0.0]
        var ys = [Float](repeating: -1, count: xs.count)
        RowOps.exp(xs, &ys, count: xs.count)
        XCTAssertEqual(ys[0], 0)
        XCTAssertEqual(ys[1], 0)
        XCTAssertEqual(ys[2], 0)
        XCTAssertTrue(ys[3] >= 0 && ys[3] < 1.2e-38, "exp(-87.5) = \(ys[3])")
        XCTAssertEqual(ys[4], 1)
        XCTAssertEqual(Double(ys[5]), M_E, accuracy: 1e-6)
        XCTAssertEqual(Double(ys[6]) / Foundation.exp(88.0), 1, accuracy: 2e-7)
        XCTAssertEqual(Double(ys[7]) / Foundation.exp(Double(Float(88.7))), 1, accuracy: 2e-7)
        XCTAssertEqual(ys[8], .infinity)
        XCTAssertEqual(ys[9], .infinity)
        XCTAssertEqual(ys[10], .infinity)
        XCTAssertTrue(ys[11].isNaN)
        XCTAssertEqual(ys[12], 1)
        // In place, every tail length.
        for count in 0..<20 {
            var v = (0..<count).map { Float($0) * 0.25 - 2 }
            let expected = v.map { Float(Foundation.exp(Double($0))) }
            v.withUnsafeMutableBufferPointer { p in
                if let base = p.baseAddress { RowOps.exp(base, base, count: count) }
            }
            for i in 0..<count { XCTAssertEqual(v[i], expected[i], accuracy: expected[i] * 3e-7) }
        }
    }

    func testSoftmaxMatchesDoubleReference() {
        forEachRowOpsPath { path in checkSoftmaxMatchesDoubleReference(path) }
    }

    func checkSoftmaxMatchesDoubleReference(_ path: String) {
        var rng = TestRandom(seed: 9)
        for count in [1, 2, 7, 8, 9, 33, 100, 1000] {
            for scale: Float in [1, 0.125, -2] {
                for offset: Float in [0, 1000] {
                    let x = rng.floats(count, -5, 5).map { $0 + offset }
                    var y = x
                    let logZ = RowOps.softmax(&y, count: count, scale: scale)
                    let s = x.map { Double(scale) * Double($0) }
                    let mx = s.max()!
                    let z = s.reduce(0) { $0 + Foundation.exp($1 - mx) }
                    let refLogZ = mx + Foundation.log(z)
                    XCTAssertEqual(Double(logZ), refLogZ, accuracy: 2e-6 * max(1, abs(refLogZ)),
                                   "\(path) logZ count \(count) scale \(scale) offset \(offset)")
                    var total = 0.0
                    for i in 0..<count {
                        let ref = Foundation.exp(s[i] - mx) / z
                        XCTAssertEqual(Double(y[i]), ref, accuracy: 1e-6 * ref + 1e-9,
                                       "p[\(i)] count \(count) scale \(scale)")
                        total += Double(y[i])
                    }
                    XCTAssertEqual(total, 1, accuracy: 1e-5)
                }
            }
        }
    }

    /// Attention's backward rebuilds probabilities from the row statistics instead of keeping them:
    /// the rebuilt row must be bitwise the softmax's, on both paths, for body and tail lengths.
    func testSoftmaxRecomputedFromStatisticsIsBitwiseTheSoftmax() {
        forEachRowOpsPath { path in
            var rng = TestRandom(seed: 21)
            for count in [1, 5, 8, 13, 64, 100, 257] {
                for scale: Float in [1, 0.125] {
                    let x = rng.floats(count, -8, 8)
                    var y = x, again = x, statistics: [Float] = [0, 0]
                    RowOps.softmax(&y, count: count, scale: scale, statistics: &statistics)
                    var plain = x
                    RowOps.softmax(&plain, count: count, scale: scale)
                    RowOps.softmaxRecompute(&again, count: count, scale: scale, statistics: statistics)
                    XCTAssertEqual(y.map(\.bitPattern), plain.map(\.bitPattern), "\(path) count \(count) scale \(scale)")
                    XCTAssertEqual(again.map(\.bitPattern), y.map(\.bitPattern), "\(path) count \(count) scale \(scale)")
                    XCTAssertEqual(Double(statistics[0]), Double(x.map { $0 * scale }.max()!), "\(path) max")
                }
            }
        }
    }

    func testSoftmaxHandlesMaskedEntriesAndEmptyRows() {
        forEachRowOpsPath { path in checkSoftmaxHandlesMaskedEntriesAndEmptyRows(path) }
    }

    func checkSoftmaxHandlesMaskedEntriesAndEmptyRows(_ path: String) {
        var x: [Float] = [0, -.infinity, 1, -.infinity, 2, -.infinity, -.infinity, -.infinity, 3]
        let logZ = RowOps.softmax(&x, count: x.count)
        let z = (0...3).reduce(0.0) { $0 + Foundation.exp(Double($1)) }
        XCTAssertEqual(Double(logZ), Foundation.log(z), accuracy: 1e-6)
        XCTAssertEqual(x[1], 0)
        XCTAssertEqual(Double(x[8]), Foundation.exp(3) / z, accuracy: 1e-6)
        var empty: [Float] = []
        XCTAssertEqual(RowOps.softmax(&empty, count: 0), -.infinity)
    }
}
