import CMyopiaKernels
import XCTest
@testable import MyopiaKernels

/// The AVX-512 kernel's 12×32 tile is one C source compiled twice: for AVX-512 (zmm registers) and
/// for the default target (MYOPIA_KERNEL_AVX512_EMULATED, any CPU). The emulated build is checked
/// bit for bit against a scalar model of its sums everywhere, and against the real one and the AVX2
/// kernel where the CPU has them.
final class WideKernelTests: KernelTestCase {
    static let shapes: [(Int, Int, Int)] = [
        (1, 1, 1), (12, 32, 8), (13, 33, 9), (5, 70, 300), (40, 31, 257), (100, 96, 513), (25, 5, 64),
    ]

    /// C from myopia_sgemm with a kernel id (single-threaded).
    func run(_ p: GEMMProblem, kernel: Int32, accumulate: Bool, tri: Int32 = Int32(MYOPIA_TRI_NONE)) -> [Float] {
        var out = p.c
        myopia_sgemm_tri(kernel, tri, p.m, p.n, p.k, p.a, p.lda, p.transA ? 1 : 0, p.b, p.ldb, p.transB ? 1 : 0,
                         &out, p.ldc, accumulate ? 1 : 0)
        return out
    }

    /// Every element as the FMA kernels sum it: K blocks of ⌈k / ⌈k/256⌉⌉, each a sequential FMA
    /// chain from zero, added to C (or stored, for the first block without accumulate).
    func fmaModel(_ p: GEMMProblem, accumulate: Bool) -> [Float] {
        var out = p.c
        let blocks = (p.k + 255) / 256
        let kcb = blocks == 0 ? 1 : (p.k + blocks - 1) / blocks
        for i in 0..<p.m {
            for j in 0..<p.n {
                var c = accumulate ? p.c[i * p.ldc + j] : 0
                var pc = 0
                while pc < p.k {
                    var s: Float = 0
                    for q in pc..<min(p.k, pc + kcb) { s = s.addingProduct(p.opA(i, q), p.opB(q, j)) }
                    c = (pc == 0 && !accumulate) ? s : c + s
                    pc += kcb
                }
                out[i * p.ldc + j] = c
            }
        }
        return out
    }

    func forEachProblem(_ body: (GEMMProblem, Bool, String) -> Void) {
        for (s, (m, n, k)) in Self.shapes.enumerated() {
            for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
                for accumulate in [false, true] {
                    let p = GEMMProblem(m: m, n: n, k: k, transA: transA, transB: transB, pad: s % 2 * 3, seed: UInt64(90 + s))
                    body(p, accumulate, "\(m)x\(n)x\(k) tA=\(transA) tB=\(transB) acc=\(accumulate)")
                }
            }
        }
    }

    /// Runs on every CPU: the emulated tile equals the scalar model of the FMA kernels' sums.
    func testEmulatedTileEqualsTheScalarModelBitwise() {
        forEachProblem { p, accumulate, label in
            assertBitwiseEqual(run(p, kernel: Int32(MYOPIA_KERNEL_AVX512_EMULATED), accumulate: accumulate),
                               fmaModel(p, accumulate: accumulate), "emulated vs model " + label)
        }
    }

    func testAVX512EqualsItsEmulationBitwise() throws {
        guard GEMM.CPUFeatures.current.avx512 else { throw XCTSkip("this CPU has no AVX-512; the emulated build is tested alone") }
        forEachProblem { p, accumulate, label in
            let emulated = run(p, kernel: Int32(MYOPIA_KERNEL_AVX512_EMULATED), accumulate: accumulate)
            assertBitwiseEqual(run(p, kernel: Int32(MYOPIA_KERNEL_AVX512), accumulate: accumulate), emulated,
                               "avx512 vs emulated " + label)
            if p.m == p.n || !p.transA {
                for tri in [MYOPIA_TRI_OUTPUT_LOWER, MYOPIA_TRI_A_LOWER, MYOPIA_TRI_A_UPPER] where p.m == p.k || tri == MYOPIA_TRI_OUTPUT_LOWER {
                    assertBitwiseEqual(run(p, kernel: Int32(MYOPIA_KERNEL_AVX512), accumulate: accumulate, tri: Int32(tri)),
                                       run(p, kernel: Int32(MYOPIA_KERNEL_AVX512_EMULATED), accumulate: accumulate, tri: Int32(tri)),
                                       "avx512 vs emulated tri \(tri) " + label)
                }
            }
        }
    }

    /// The AVX2 (6×16) and AVX-512 (12×32) kernels sum in the same order with the same roundings, so
    /// the timed choice between them never changes a result; at any thread count.
    func testAVX2AndAVX512AgreeBitwise() throws {
        let fma = GEMM.Kernel.available.filter { $0 != .portable }
        guard GEMM.CPUFeatures.current.avx2FMA else { throw XCTSkip("this CPU has no AVX2+FMA") }
        forEachProblem { p, accumulate, label in
            assertBitwiseEqual(run(p, kernel: Int32(MYOPIA_KERNEL_AVX2_FMA), accumulate: accumulate),
                               fmaModel(p, accumulate: accumulate), "avx2 vs model " + label)
        }
        for (m, n, k) in [(300, 200, 700), (7, 2000, 100), (2048, 64, 256)] {
            let p = GEMMProblem(m: m, n: n, k: k, transA: false, transB: true, pad: 1, seed: 5)
            var results: [[Float]] = []
            for kernel in fma {
                GEMM.kernel = kernel
                results += withThreadCounts([1, 2]) { p.run(accumulate: true) }
            }
            for r in results.dropFirst() { assertBitwiseEqual(r, results[0], "\(m)x\(n)x\(k) kernels \(fma)") }
        }
    }

    /// The portable kernel multiplies and adds separately; its difference to the FMA kernels is that
    /// rounding alone, within the bound of the double-precision check (GEMMTests).
    func testPortableDiffersFromFMAKernelsOnlyByRounding() throws {
        guard GEMM.CPUFeatures.current.avx2FMA else { throw XCTSkip("this CPU has no AVX2+FMA") }
        let p = GEMMProblem(m: 256, n: 768, k: 256, transA: false, transB: false, seed: 21)
        let fma = run(p, kernel: Int32(MYOPIA_KERNEL_AVX2_FMA), accumulate: false)
        let portable = run(p, kernel: Int32(MYOPIA_KERNEL_PORTABLE), accumulate: false)
        // Largest difference relative to the largest |C| (an element near zero by cancellation
        // differs relatively much while both are within the rounding of its terms).
        let differing = zip(fma, portable).filter { $0 != $1 }.count
        let worst = Double(zip(fma, portable).map { abs($0 - $1) }.max()!) / Double(fma.map(abs).max()!)
        print("portable vs FMA kernels, 256x768x256: \(differing) of \(fma.count) elements differ, "
              + "largest difference \(worst) of the largest |C|")
        XCTAssertGreaterThan(differing, 0)
        XCTAssertLessThan(worst, 1e-6)
    }
}
