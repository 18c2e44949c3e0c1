import Foundation
import XCTest
@testable import MyopiaKernels

final class LayerNormTests: KernelTestCase {
    struct Case {
        let rows: Int, cols: Int
        let x: [Float], w: [Float], b: [Float], dy: [Float]
        let eps: Float = 1e-5
        init(rows: Int, cols: Int, seed: UInt64) {
            self.rows = rows; self.cols = cols
            var rng = TestRandom(seed: seed)
            x = rng.floats(rows * cols, -2, 3)
            w = rng.floats(cols, 0.5, 1.5)
            b = rng.floats(cols)
            dy = rng.floats(rows * cols)
        }

        func forward() -> (out: [Float], mean: [Float], rstd: [Float]) {
            var out = [Float](repeating: .nan, count: rows * cols)
            var mean = [Float](repeating: .nan, count: rows), rstd = mean
            RowOps.layerNormForward(out: &out, mean: &mean, rstd: &rstd, input: x, weight: w, bias: b,
                                    rows: rows, cols: cols, eps: eps)
            return (out, mean, rstd)
        }

        /// Backward starting from the given accumulators.
        func backward(dx0: [Float], dw0: [Float], db0: [Float]) -> (dx: [Float], dw: [Float], db: [Float]) {
            let f = forward()
            var dx = dx0, dw = dw0, db = db0
            RowOps.layerNormBackward(dInput: &dx, dWeight: &dw, dBias: &db, dOut: dy, input: x, weight: w,
                                     mean: f.mean, rstd: f.rstd, rows: rows, cols: cols)
            return (dx, dw, db)
        }

        /// Double reference of forward and backward.
        func reference() -> (out: [Double], mean: [Double], rstd: [Double], dx: [Double], dw: [Double], db: [Double]) {
            var out = [Double](repeating: 0, count: rows * cols), mean = [Double](repeating: 0, count: rows)
            var rstd = mean
            var dx = out, dw = [Double](repeating: 0, count: cols), db = dw
            let n = Double(cols)
            for r in 0..<rows {
                let row = (0..<cols).map { Double(x[r * cols + $0]) }
                let m = row.reduce(0, +) / n
                let v = row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / n
                let rs = 1 / (v + Double(eps)).squareRoot()
                mean[r] = m; rstd[r] = rs
                var a = 0.0, bb = 0.0
                for j in 0..<cols {
                    let xhat = (row[j] - m) * rs
                    out[r * cols + j] = xhat * Double(w[j]) + Double(b[j])
                    let g = Double(dy[r * cols + j])
                    a += g * Double(w[j]); bb += g * Double(w[j]) * xhat
                    dw[j] += g * xhat; db[j] += g
                }
                for j in 0..<cols {
                    let xhat = (row[j] - m) * rs
                    let g = Double(dy[r * cols + j])
                    dx[r * cols + j] = (g * Double(w[j]) - a / n - xhat * bb / n) * rs
                }
            }
            return (out, mean, rstd, dx, dw, db)
        }
    }

    func testForwardAndBackwardMatchDoubleReference() {
        for (rows, cols) in [(1, 1), (3, 7), (5, 8), (37, 100), (70, 64), (4, 771)] {
            let c = Case(rows: rows, cols: cols, seed: UInt64(rows * 1000 + cols))
            let f = c.forward()
            let ref = c.reference()
            for r in 0..<rows {
                XCTAssertEqual(Double(f.mean[r]), ref.mean[r], accuracy: 1e-6)
                XCTAssertEqual(Double(f.rstd[r]), ref.rstd[r], accuracy: 1e-5 * ref.rstd[r])
            }
            for i in 0..<rows * cols { XCTAssertEqual(Double(f.out[i]), ref.out[i], accuracy: 1e-5) }
            // Backward accumulates into non-zero buffers.
            var rng = TestRandom(seed: 77)
            let dx0 = rng.floats(rows * cols), dw0 = rng.floats(cols), db0 = rng.floats(cols)
            let g = c.backward(dx0: dx0, dw0: dw0, db0: db0)
            for i in 0..<rows * cols {
                XCTAssertEqual(Double(g.dx[i]), Double(dx0[i]) + ref.dx[i], accuracy: 3e-5 * (1 + abs(ref.dx[i])),
                               "dx[\(i)] \(rows)x\(cols)")
            }
            for j in 0..<cols {
                XCTAssertEqual(Double(g.dw[j]), Double(dw0[j]) + ref.dw[j], accuracy: 1e-5 * Double(rows) + 1e-5)
                XCTAssertEqual(Double(g.db[j]), Double(db0[j]) + ref.db[j], accuracy: 1e-5 * Double(rows) + 1e-5)
            }
        }
    }

    /// Loss L = Σ out·dy; central differences of the Float forward against the backward.
    func testBackwardAgainstFiniteDifferences() {
        let base = Case(rows: 3, cols: 19, seed: 5)
        let g = base.backward(dx0: .init(repeating: 0, count: 57), dw0: .init(repeating: 0, count: 19),
                              db0: .init(repeating: 0, count: 19))
        func loss(x: [Float], w: [Float], b: [Float]) -> Double {
            var out = [Float](repeating: 0, count: 57), mean = [Float](repeating: 0, count: 3), rstd = mean
            RowOps.layerNormForward(out: &out, mean: &mean, rstd: &rstd, input: x, weight: w, bias: b,
                                    rows: 3, cols: 19, eps: base.eps)
            return zip(out, base.dy).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        let h: Float = 1e-2
        for i in stride(from: 0, to: 57, by: 4) {
            var xp = base.x, xm = base.x
            xp[i] += h; xm[i] -= h
            let fd = (loss(x: xp, w: base.w, b: base.b) - loss(x: xm, w: base.w, b: base.b)) / Double(2 * h)
            XCTAssertEqual(Double(g.dx[i]), fd, accuracy: 2e-3 * max(1, abs(fd)), "dx[\(i)]")
        }
        for j in stride(from: 0, to: 19, by: 3) {
            var wp = base.w, wm = base.w
            wp[j] += h; wm[j] -= h
            let fdw = (loss(x: base.x, w: wp, b: base.b) - loss(x: base.x, w: wm, b: base.b)) / Double(2 * h)
            XCTAssertEqual(Double(g.dw[j]), fdw, accuracy: 2e-3 * max(1, abs(fdw)), "dw[\(j)]")
            var bp = base.b, bm = base.b
            bp[j] += h; bm[j] -= h
            let fdb = (loss(x: base.x, w: base.w, b: bp) - loss(x: base.x, w: base.w, b: bm)) / Double(2 * h)
            XCTAssertEqual(Double(g.db[j]), fdb, accuracy: 2e-3 * max(1, abs(fdb)), "db[\(j)]")
        }
    }

    func testBitwiseIdenticalAcrossThreadCounts() {
        let c = Case(rows: 1000, cols: 77, seed: 12)
        let zeros = [Float](repeating: 0, count: 77)
        let results = withThreadCounts { () -> [Float] in
            let f = c.forward()
            let g = c.backward(dx0: .init(repeating: 0, count: 1000 * 77), dw0: zeros, db0: zeros)
            return f.out + f.mean + f.rstd + g.dx + g.dw + g.db
        }
        assertBitwiseEqual(results[0], results[1], "layernorm 1 vs 2 threads")
        assertBitwiseEqual(results[0], results[2], "layernorm 1 vs 3 threads")
    }
}
