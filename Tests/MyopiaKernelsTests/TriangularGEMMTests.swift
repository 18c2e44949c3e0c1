import XCTest
@testable import MyopiaKernels

/// The causal-attention products skip what a triangle makes unnecessary and equal the full GEMM.
final class TriangularGEMMTests: KernelTestCase {
    func testTriangularProductsEqualTheFullProduct() {
        var rng = TestRandom(seed: 11)
        forEachKernel { kernel in
            for (t, hs) in [(1, 8), (5, 3), (17, 16), (64, 64), (97, 24), (300, 20)] {
                let lower = (0..<(t * t)).map { i in i % t <= i / t ? rng.float() : 0 }  // (T, T), zero above the diagonal
                let x = rng.floats(t * hs), y = rng.floats(t * hs), c0 = rng.floats(t * max(t, hs))
                func run(_ tri: GEMM.Triangle?, m: Int, n: Int, k: Int, a: [Float], lda: Int, transA: Bool,
                         b: [Float], ldb: Int, transB: Bool, accumulate: Bool) -> [Float] {
                    var c = Array(c0.prefix(m * n))
                    if let tri {
                        GEMM.multiplyTriangular(tri, m: m, n: n, k: k, a: a, lda: lda, transA: transA, b: b, ldb: ldb,
                                                transB: transB, c: &c, ldc: n, accumulate: accumulate)
                    } else {
                        GEMM.multiply(m: m, n: n, k: k, a: a, lda: lda, transA: transA, b: b, ldb: ldb, transB: transB,
                                      c: &c, ldc: n, accumulate: accumulate, parallel: false)
                    }
                    return c
                }
                let label = "T \(t), HS \(hs), \(kernel)"
                for accumulate in [false, true] {
                    // S = X·Yᵀ, lower triangle only.
                    let s = run(.outputLower, m: t, n: t, k: hs, a: x, lda: hs, transA: false, b: y, ldb: hs, transB: true,
                                accumulate: accumulate)
                    let sFull = run(nil, m: t, n: t, k: hs, a: x, lda: hs, transA: false, b: y, ldb: hs, transB: true,
                                    accumulate: accumulate)
                    for i in 0..<t {
                        for j in 0...i where s[i * t + j] != sFull[i * t + j] {
                            XCTFail("\(label) outputLower (\(i), \(j))")
                        }
                    }
                    // Z = L·X (L lower), and Lᵀ·X (upper).
                    for (tri, transA) in [(GEMM.Triangle.aLower, false), (.aUpper, true)] {
                        let z = run(tri, m: t, n: hs, k: t, a: lower, lda: t, transA: transA, b: x, ldb: hs, transB: false,
                                    accumulate: accumulate)
                        let zFull = run(nil, m: t, n: hs, k: t, a: lower, lda: t, transA: transA, b: x, ldb: hs, transB: false,
                                        accumulate: accumulate)
                        XCTAssertEqual(z, zFull, "\(label) \(tri) accumulate \(accumulate)")
                    }
                }
            }
        }
    }
}
