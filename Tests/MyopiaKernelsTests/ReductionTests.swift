import Foundation
import XCTest
@testable import MyopiaKernels

final class ReductionTests: KernelTestCase {
    func testAddColumnSumsAccumulates() {
        var rng = TestRandom(seed: 3)
        for (rows, cols) in [(1, 1), (3, 5), (31, 8), (33, 9), (100, 77), (257, 16)] {
            let src = rng.floats(rows * cols)
            let dst0 = rng.floats(cols)
            var dst = dst0
            RowOps.addColumnSums(into: &dst, src, rows: rows, cols: cols)
            for j in 0..<cols {
                let ref = Double(dst0[j]) + (0..<rows).reduce(0.0) { $0 + Double(src[$1 * cols + j]) }
                XCTAssertEqual(Double(dst[j]), ref, accuracy: 1e-5 * Double(rows).squareRoot() + 1e-6)
            }
        }
    }

    func testReductionsBitwiseIdenticalAcrossThreadCounts() {
        var rng = TestRandom(seed: 4)
        let rows = 1234, cols = 45
        let src = rng.floats(rows * cols)
        let big = rng.floats(1_000_003)
        let results = withThreadCounts { () -> [Float] in
            var dst = [Float](repeating: 0.5, count: cols)
            RowOps.addColumnSums(into: &dst, src, rows: rows, cols: cols)
            let s = RowOps.sumOfSquares(big, count: big.count)
            return dst + [Float(s), Float(s - Double(Float(s)))]
        }
        assertBitwiseEqual(results[0], results[1], "1 vs 2 threads")
        assertBitwiseEqual(results[0], results[2], "1 vs 3 threads")
    }

    func testSumOfSquares() {
        var rng = TestRandom(seed: 5)
        for count in [0, 1, 3, 4, 7, 1000, 200_001] {
            let x = rng.floats(count, -3, 3)
            let ref = x.reduce(0.0) { $0 + Double($1) * Double($1) }
            XCTAssertEqual(RowOps.sumOfSquares(x, count: count), ref, accuracy: 1e-12 * max(1, ref))
        }
    }

    func testBroadcastRows() {
        let row: [Float] = [1, 2, 3]
        var dst = [Float](repeating: 0, count: 12)
        RowOps.broadcastRows(&dst, row: row, rows: 4, cols: 3)
        XCTAssertEqual(dst, [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3])
    }
}
