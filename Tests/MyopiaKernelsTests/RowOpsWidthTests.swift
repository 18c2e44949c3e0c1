import XCTest
@testable import MyopiaKernels

/// The AVX-512 row operations against the AVX2 ones: bitwise the same results (the same operations
/// per element; softmax's sum in 8 lanes, chunk by chunk, as AVX2 adds them), for every row length
/// around the 8- and 16-lane boundaries and values that reach exp's clamps, infinities and NaN.
final class RowOpsWidthTests: KernelTestCase {
    func inputs(_ count: Int, seed: UInt64) -> [Float] {
        var rng = TestRandom(seed: seed)
        var x = rng.floats(count, -12, 12)
        let specials: [Float] = [0, -0.0, 90, -90, 200, -200, .infinity, -.infinity, 1e-30, -1e-30, 88.7, -87.3]
        for (i, v) in specials.enumerated() where i * 7 < count { x[i * 7] = v }
        return x
    }

    /// Runs `body` with the AVX2 and with the AVX-512 row operations and returns both results.
    func bothWidths<T>(_ body: () -> T) throws -> (avx2: T, avx512: T) {
        try XCTSkipUnless(GEMM.Kernel.available.contains(.avx512), "this CPU has no AVX-512: the AVX2 path alone runs")
        RowOps.forcePortable = false
        GEMM.kernel = .avx2
        XCTAssertTrue(RowOps.usesAVX2 && !RowOps.usesAVX512)
        let a = body()
        GEMM.kernel = .avx512
        XCTAssertTrue(RowOps.usesAVX512)
        return (a, body())
    }

    func testElementwiseOperationsAreBitwiseTheAVX2Ones() throws {
        for count in [1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 64, 100, 1027] {
            let x = inputs(count, seed: UInt64(count))
            let dy = inputs(count, seed: UInt64(count) + 1000)
            let exp = try bothWidths { () -> [Float] in
                var y = [Float](repeating: 0, count: count)
                RowOps.exp(x, &y, count: count)
                return y
            }
            assertBitwiseEqual(exp.avx2, exp.avx512, "exp, \(count)")
            let gelu = try bothWidths { () -> [Float] in
                var y = [Float](repeating: 0, count: count)
                RowOps.geluForward(out: &y, input: x, count: count)
                return y
            }
            assertBitwiseEqual(gelu.avx2, gelu.avx512, "gelu, \(count)")
            let dgelu = try bothWidths { () -> [Float] in
                var dx = [Float](repeating: 0, count: count)
                RowOps.geluBackward(dInput: &dx, input: x, dOut: dy, count: count)
                return dx
            }
            assertBitwiseEqual(dgelu.avx2, dgelu.avx512, "gelu backward, \(count)")
        }
    }

    func testSoftmaxAndItsRecomputeAreBitwiseTheAVX2Ones() throws {
        for count in [1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 64, 100, 1027] {
            var rng = TestRandom(seed: UInt64(count) &* 31)
            let x = rng.floats(count, -20, 20)
            for scale: Float in [1, 0.125] {
                let softmax = try bothWidths { () -> [Float] in
                    var y = x, statistics: [Float] = [0, 0]
                    RowOps.softmax(&y, count: count, scale: scale, statistics: &statistics)
                    var again = x
                    RowOps.softmaxRecompute(&again, count: count, scale: scale, statistics: statistics)
                    return y + statistics + again
                }
                assertBitwiseEqual(softmax.avx2, softmax.avx512, "softmax, statistics and recompute, \(count), scale \(scale)")
                // The recompute rebuilds the row bitwise on each path.
                assertBitwiseEqual(Array(softmax.avx512[0..<count]), Array(softmax.avx512[(count + 2)...]), "recompute, \(count)")
            }
        }
    }
}
