import XCTest
@testable import MyopiaKernels

final class AdamWKernelTests: XCTestCase {
    /// The fused pass (clip scale + AdamW) is the scalar loop it replaced, element for element and
    /// bit for bit, on the AVX2 and portable paths, at any thread count, tail elements included.
    func testFusedStepMatchesTheScalarLoopBitForBit() {
        let count = 70_003   // several chunks and a ragged tail
        var rng = UInt64(12345)
        func next() -> Float {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: rng >> 11) % 2_000_001 - 1_000_000) / 1e6
        }
        let w0 = (0..<count).map { _ in next() }, g0 = (0..<count).map { _ in next() * 3 }
        let m0 = (0..<count).map { _ in next() * 0.1 }, v0 = (0..<count).map { _ in abs(next()) * 0.01 }
        let (lr, step, wd, scale): (Double, Int, Double, Float) = (3e-4, 7, 0.1, 0.37)
        let k = AdamWConstants(gradScale: scale, decay: Float(1 - lr * wd), beta1: 0.9, beta2: 0.95, eps: 1e-8, lr: lr, step: step)

        // The reference: clipping's scaling loop, then AdamW's scalar loop, as Swift wrote them.
        var w = w0, g = g0, m = m0, v = v0
        let stepSize = Float(lr / (1 - pow(0.9, Double(step))))
        let bc2Sqrt = Float((1 - pow(0.95, Double(step))).squareRoot())
        let decay = Float(1 - lr * wd), lerpWeight = Float(1 - 0.9), b2 = Float(0.95), oneMinusB2 = Float(1 - 0.95)
        for i in 0..<count { g[i] *= scale }
        for i in 0..<count {
            let gi = g[i]
            w[i] *= decay
            let mi = m[i] + lerpWeight * (gi - m[i])
            let vi = v[i] * b2 + oneMinusB2 * gi * gi
            m[i] = mi
            v[i] = vi
            w[i] -= stepSize * (mi / (vi.squareRoot() / bc2Sqrt + Float(1e-8)))
        }

        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        for (portable, threads) in [(false, 1), (false, 2), (false, 3), (true, 1), (true, 2)] {
            Parallel.threadCount = threads
            var fw = w0, fg = g0, fm = m0, fv = v0
            var kk = k
            kk.portable = portable
            fw.withUnsafeMutableBufferPointer { pw in
                fg.withUnsafeMutableBufferPointer { pg in
                    fm.withUnsafeMutableBufferPointer { pm in
                        fv.withUnsafeMutableBufferPointer { pv in
                            RowOps.adamW(weights: pw.baseAddress!, grads: pg.baseAddress!, moment1: pm.baseAddress!,
                                         moment2: pv.baseAddress!, count: count, kk)
                        }
                    }
                }
            }
            let label = "portable \(portable), \(threads) thread(s)"
            XCTAssertEqual(fw.map(\.bitPattern), w.map(\.bitPattern), label)
            XCTAssertEqual(fg.map(\.bitPattern), g.map(\.bitPattern), label)
            XCTAssertEqual(fm.map(\.bitPattern), m.map(\.bitPattern), label)
            XCTAssertEqual(fv.map(\.bitPattern), v.map(\.bitPattern), label)
        }
    }

    /// The fused pass reports whether every updated weight and moment is finite: a NaN or
    /// infinite weight anywhere (vector body or scalar tail), and a second moment that overflows
    /// from finite inputs, all read false; finite updates read true.
    func testFusedStepReportsNonFiniteResults() {
        let count = 70_003
        let k = AdamWConstants(gradScale: 1, decay: 1, beta1: 0.9, beta2: 0.95, eps: 1e-8, lr: 1e-3, step: 1)
        func finite(portable: Bool, threads: Int, _ plant: (inout [Float], inout [Float]) -> Void) -> Bool {
            let saved = Parallel.threadCount
            defer { Parallel.threadCount = saved }
            Parallel.threadCount = threads
            var w = [Float](repeating: 0.5, count: count), g = [Float](repeating: 0.25, count: count)
            var m = [Float](repeating: 0, count: count), v = [Float](repeating: 0, count: count)
            plant(&w, &g)
            var kk = k
            kk.portable = portable
            return w.withUnsafeMutableBufferPointer { pw in
                g.withUnsafeMutableBufferPointer { pg in
                    m.withUnsafeMutableBufferPointer { pm in
                        v.withUnsafeMutableBufferPointer { pv in
                            RowOps.adamW(weights: pw.baseAddress!, grads: pg.baseAddress!, moment1: pm.baseAddress!,
                                         moment2: pv.baseAddress!, count: count, kk)
                        }
                    }
                }
            }
        }
        for (portable, threads) in [(false, 1), (false, 2), (true, 2)] {
            let label = "portable \(portable), \(threads) thread(s)"
            XCTAssertTrue(finite(portable: portable, threads: threads) { _, _ in }, label)
            XCTAssertFalse(finite(portable: portable, threads: threads) { w, _ in w[40_000] = .nan }, label)
            XCTAssertFalse(finite(portable: portable, threads: threads) { w, _ in w[count - 1] = .infinity }, label)
            XCTAssertFalse(finite(portable: portable, threads: threads) { _, g in g[123] = 1e30 }, label)  // g² overflows v
        }
    }

    func testFillAndScaleCoverEveryElement() {
        let count = (1 << 16) * 3 + 5
        var x = [Float](repeating: 2, count: count)
        x.withUnsafeMutableBufferPointer { RowOps.scale($0.baseAddress!, count: count, by: 1.5) }
        XCTAssertTrue(x.allSatisfy { $0 == 3 })
        x.withUnsafeMutableBufferPointer { RowOps.fill($0.baseAddress!, count: count, with: 0) }
        XCTAssertTrue(x.allSatisfy { $0 == 0 })
    }
}
