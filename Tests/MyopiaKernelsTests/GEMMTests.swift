import XCTest
@testable import MyopiaKernels

/// One GEMM problem with stored operands (leading dims may exceed the width).
struct GEMMProblem {
    var m: Int
    let n: Int, k: Int
    let transA: Bool, transB: Bool
    let lda: Int, ldb: Int, ldc: Int
    var a: [Float], b: [Float], c: [Float]

    init(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, pad: Int = 0, seed: UInt64) {
        self.m = m; self.n = n; self.k = k; self.transA = transA; self.transB = transB
        var rng = TestRandom(seed: seed)
        lda = (transA ? m : k) + pad
        ldb = (transB ? k : n) + pad
        ldc = n + pad
        a = rng.floats(max(1, (transA ? k : m) * lda))
        b = rng.floats(max(1, (transB ? n : k) * ldb))
        c = rng.floats(max(1, m * ldc))
    }

    /// The first `rows` rows of another problem (same B, same leading dimensions).
    init(copying other: GEMMProblem, rows: Int) {
        self = other
        self.m = rows
        a = Array(other.a.prefix(rows * other.lda))
        c = Array(other.c.prefix(rows * other.ldc))
    }

    func opA(_ i: Int, _ p: Int) -> Float { transA ? a[p * lda + i] : a[i * lda + p] }
    func opB(_ p: Int, _ j: Int) -> Float { transB ? b[j * ldb + p] : b[p * ldb + j] }

    /// Double-precision reference and the sum of |terms| per element (for the error bound).
    func reference(accumulate: Bool) -> (value: [Double], magnitude: [Double]) {
        var value = c.map(Double.init), magnitude = c.map { Double(abs($0)) }
        for i in 0..<m {
            for j in 0..<n {
                var s = accumulate ? Double(c[i * ldc + j]) : 0
                var mag = accumulate ? Double(abs(c[i * ldc + j])) : 0
                for p in 0..<k {
                    let t = Double(opA(i, p)) * Double(opB(p, j))
                    s += t
                    mag += abs(t)
                }
                value[i * ldc + j] = s
                magnitude[i * ldc + j] = mag
            }
        }
        return (value, magnitude)
    }

    /// Runs GEMM.multiply and returns C.
    func run(accumulate: Bool, parallel: Bool = true) -> [Float] {
        var out = c
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                out.withUnsafeMutableBufferPointer { cp in
                    GEMM.multiply(m: m, n: n, k: k, a: ap.baseAddress!, lda: lda, transA: transA,
                                  b: bp.baseAddress!, ldb: ldb, transB: transB,
                                  c: cp.baseAddress!, ldc: ldc, accumulate: accumulate, parallel: parallel)
                }
            }
        }
        return out
    }
}

final class GEMMTests: KernelTestCase {
    static let shapes: [(Int, Int, Int)] = [
        (1, 1, 1), (5, 7, 3), (7, 5, 17), (17, 33, 5), (33, 17, 100), (6, 16, 256), (12, 32, 8),
        (100, 37, 257), (13, 50, 600), (1, 100, 33), (64, 1, 65), (49, 81, 513),
    ]

    /// Checks every element against the double reference and that the padding of C is untouched.
    func check(_ p: GEMMProblem, accumulate: Bool, parallel: Bool = true, label: String) {
        let got = p.run(accumulate: accumulate, parallel: parallel)
        let ref = p.reference(accumulate: accumulate)
        var worst = 0.0
        for i in 0..<p.m {
            for j in 0..<p.ldc {
                let idx = i * p.ldc + j
                if j >= p.n {
                    XCTAssertEqual(got[idx].bitPattern, p.c[idx].bitPattern, "\(label): padding written at (\(i),\(j))")
                    continue
                }
                let err = abs(Double(got[idx]) - ref.value[idx])
                let bound = 1e-6 * ref.magnitude[idx] + 1e-30
                worst = max(worst, err / bound)
                if err > bound {
                    XCTFail("\(label): C(\(i),\(j)) = \(got[idx]), reference \(ref.value[idx])")
                    return
                }
            }
        }
        // Rows of C past m are not part of the buffer; nothing more to check.
        XCTAssertLessThanOrEqual(worst, 1)
    }

    func testAllLayoutsAgainstDoubleReference() {
        forEachKernel { _ in
            for (s, shape) in Self.shapes.enumerated() {
                for transA in [false, true] {
                    for transB in [false, true] {
                        for pad in [0, 3] {
                            for accumulate in [false, true] {
                                let p = GEMMProblem(m: shape.0, n: shape.1, k: shape.2, transA: transA,
                                                    transB: transB, pad: pad, seed: UInt64(s * 31 + pad))
                                check(p, accumulate: accumulate,
                                      label: "\(GEMM.kernelName) \(shape) tA=\(transA) tB=\(transB) pad=\(pad) acc=\(accumulate)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testLargeParallelProblemsAgainstReference() {
        Parallel.threadCount = 2
        forEachKernel { kernel in
            for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
                let p = GEMMProblem(m: 150, n: 170, k: 300, transA: transA, transB: transB, pad: 5, seed: 7)
                check(p, accumulate: true, label: "\(kernel) 150x170x300 tA=\(transA) tB=\(transB)")
                let q = GEMMProblem(m: 20, n: 1000, k: 70, transA: transA, transB: transB, pad: 1, seed: 8)
                check(q, accumulate: false, label: "\(kernel) 20x1000x70 tA=\(transA) tB=\(transB)")
            }
        }
    }

    /// Up to MYOPIA_GEMM_SMALL_M rows (one token), and up to MYOPIA_GEMM_FEW_M against a transposed
    /// B (a batch of samples), take the unpacked streaming paths; they sum every element as the
    /// packed path does, so they agree bit for bit with the same rows computed in a larger product
    /// (more rows than MYOPIA_GEMM_FEW_M: packed), for row counts on both sides of every group size.
    func testFewRowsAreBitwiseIdenticalToThePackedPath() throws {
        let fmaKernels = GEMM.Kernel.available.filter { $0 != .portable }
        guard !fmaKernels.isEmpty else { throw XCTSkip("the few-rows path needs AVX2+FMA") }
        for kernel in fmaKernels {
        GEMM.kernel = kernel
        for (n, k) in [(7, 5), (40, 300), (129, 64), (1000, 600), (33, 513)] {
            for transB in [false, true] {
                for accumulate in [false, true] {
                    let big = GEMMProblem(m: GEMM.fewRowsLimit + 3, n: n, k: k, transA: false, transB: transB, pad: 3,
                                          seed: UInt64(n * k))
                    let packed = big.run(accumulate: accumulate)
                    for rows in [1, 2, 3, 4, 5, 8, 12, 13, 16, 17, 24, 25, 33, GEMM.fewRowsLimit] {
                        for parallel in [false, true] {
                            let few = GEMMProblem(copying: big, rows: rows)
                            let got = few.run(accumulate: accumulate, parallel: parallel)
                            XCTAssertEqual(got.map(\.bitPattern), Array(packed.prefix(rows * big.ldc)).map(\.bitPattern),
                                           "\(kernel) n \(n) k \(k) transB \(transB) accumulate \(accumulate) rows \(rows)")
                        }
                    }
                }
            }
        }
        }
    }

    func testZeroK() {
        for accumulate in [false, true] {
            let p = GEMMProblem(m: 9, n: 21, k: 0, transA: false, transB: false, pad: 2, seed: 3)
            let got = p.run(accumulate: accumulate)
            for i in 0..<p.m {
                for j in 0..<p.ldc {
                    let idx = i * p.ldc + j
                    let expected: Float = (j < p.n && !accumulate) ? 0 : p.c[idx]
                    XCTAssertEqual(got[idx], expected, "k=0 acc=\(accumulate) at (\(i),\(j))")
                }
            }
        }
    }

    func testBitwiseIdenticalAcrossThreadCounts() {
        forEachKernel { _ in
            let shapes = [(200, 300, 520), (30, 700, 300), (333, 50, 129), (7, 2000, 100)]
            for (m, n, k) in shapes {
                for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
                    for accumulate in [false, true] {
                        let p = GEMMProblem(m: m, n: n, k: k, transA: transA, transB: transB, pad: 1, seed: 11)
                        let results = withThreadCounts { p.run(accumulate: accumulate) }
                        let label = "\(GEMM.kernelName) \(m)x\(n)x\(k) tA=\(transA) tB=\(transB) acc=\(accumulate)"
                        assertBitwiseEqual(results[0], results[1], label + " 1 vs 2 threads")
                        assertBitwiseEqual(results[0], results[2], label + " 1 vs 3 threads")
                        assertBitwiseEqual(results[0], p.run(accumulate: accumulate, parallel: false),
                                           label + " serial")
                    }
                }
            }
        }
    }

    /// The threads of a parallel product take bands of rows, which share B's packed panels, or of
    /// columns: panels shared out unevenly, bands wider than one B panel (4096 columns), several K
    /// blocks, threads with no rows that only pack. Every thread count gives the serial result bit
    /// for bit.
    func testSharedPackingIsBitwiseIdenticalToSerial() {
        // (m, n, k); which band each thread count gets is in the comment.
        let shapes = [
            (60, 4200, 20),   // 2: rows, two B panels; 3, 4: columns
            (13, 9000, 20),   // 2: columns, two B panels per band; 3: rows, three B panels; 4: columns
            (7, 2000, 100),   // 2: rows of one tile each; 3, 4: columns
            (200, 300, 520),  // rows, three K blocks
            (30, 700, 300),   // columns, two K blocks
            (5, 10, 30000),   // rows: one row tile, so the other threads only pack
        ]
        forEachKernel { kernel in
        for (m, n, k) in shapes {
            for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
                for accumulate in [false, true] {
                    let p = GEMMProblem(m: m, n: n, k: k, transA: transA, transB: transB, pad: 1, seed: UInt64(m + n))
                    let serial = p.run(accumulate: accumulate, parallel: false)
                    for threads in [2, 3, 4] {
                        Parallel.threadCount = threads
                        assertBitwiseEqual(p.run(accumulate: accumulate), serial,
                                           "\(kernel) \(m)x\(n)x\(k) tA=\(transA) tB=\(transB) acc=\(accumulate) \(threads) threads")
                    }
                }
            }
        }
        }
    }

    /// A parallel product started where the pool cannot give it all its threads at once (inside a
    /// parallel-for, or from several threads at the same time) runs on its calling thread instead of
    /// waiting for threads that would never come, with the same result.
    func testParallelCallsInsideParallelForAndFromSeveralThreads() {
        Parallel.threadCount = 2
        let problems = (0..<6).map { i in
            GEMMProblem(m: 120 + 10 * i, n: 130, k: 200, transA: i % 2 == 1, transB: i % 3 == 1, pad: 1,
                        seed: UInt64(200 + i))
        }
        let expected = problems.map { $0.run(accumulate: true, parallel: false) }
        var nested = [[Float]](repeating: [], count: problems.count)
        nested.withUnsafeMutableBufferPointer { buf in
            let out = SendablePointer(buf.baseAddress!)
            Parallel.forEach(problems.count) { i in out.pointer[i] = problems[i].run(accumulate: true) }
        }
        let callers = 4
        var concurrent = [[Float]](repeating: [], count: callers * problems.count)
        concurrent.withUnsafeMutableBufferPointer { buf in
            let out = SendablePointer(buf.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: callers) { caller in
                for i in problems.indices { out.pointer[caller * problems.count + i] = problems[i].run(accumulate: true) }
            }
        }
        for i in problems.indices {
            assertBitwiseEqual(nested[i], expected[i], "problem \(i) inside a parallel-for")
            for caller in 0..<callers {
                assertBitwiseEqual(concurrent[caller * problems.count + i], expected[i], "problem \(i), caller \(caller)")
            }
        }
    }

    func testConcurrentSerialCallsFromParallelForEach() {
        Parallel.threadCount = 3
        let problems = (0..<12).map { i in
            GEMMProblem(m: 20 + 7 * i, n: 64 + 5 * i, k: 64 + 30 * i, transA: i % 2 == 1, transB: i % 3 == 1,
                        pad: i % 2, seed: UInt64(100 + i))
        }
        let expected = problems.map { $0.run(accumulate: true, parallel: false) }
        for _ in 0..<3 {
            var results = [[Float]](repeating: [], count: problems.count)
            results.withUnsafeMutableBufferPointer { buf in
                let out = SendablePointer(buf.baseAddress!)
                Parallel.forEach(problems.count) { i in
                    out.pointer[i] = problems[i].run(accumulate: true, parallel: false)
                }
            }
            for i in problems.indices {
                assertBitwiseEqual(results[i], expected[i], "problem \(i)")
            }
        }
        check(problems[5], accumulate: true, parallel: false, label: "problem 5")
    }

    func testKernelSelection() {
        let selection = GEMM.selection
        XCTAssertTrue(GEMM.Kernel.available.contains(selection.kernel))
        XCTAssertEqual(GEMM.kernel, selection.kernel)
        #if arch(x86_64)
        if GEMM.CPUFeatures.current.avx2FMA {
            XCTAssertTrue(GEMM.usesFMA)
            XCTAssertNotEqual(selection.kernel, .portable)
        }
        if GEMM.CPUFeatures.current.avx512 && selection.reason == "timed" {
            // Both kernels were timed and both widths measured.
            XCTAssertEqual(Set(selection.tileGflops.keys), ["avx2", "avx512"])
            XCTAssertGreaterThan(selection.ymmGflops ?? 0, 0)
            XCTAssertGreaterThan(selection.zmmGflops ?? 0, 0)
        }
        #else
        XCTAssertFalse(GEMM.usesFMA)
        #endif
        GEMM.kernel = .portable
        XCTAssertFalse(GEMM.usesFMA)
        XCTAssertFalse(RowOps.usesAVX2)
        XCTAssertEqual(GEMM.kernelName, "portable 6x16")
    }

    /// MYOPIA_KERNEL names a kernel; one the CPU cannot run is a typed error naming what it lacks.
    func testForcedKernelFromTheEnvironment() throws {
        let zen3 = GEMM.CPUFeatures(avx2FMA: true, avx512: false)
        let old = GEMM.CPUFeatures(avx2FMA: false, avx512: false)
        let zen4 = GEMM.CPUFeatures(avx2FMA: true, avx512: true)
        XCTAssertNil(try GEMM.forcedKernel(nil, cpu: zen3))
        XCTAssertNil(try GEMM.forcedKernel("", cpu: zen3))
        XCTAssertEqual(try GEMM.forcedKernel("avx2", cpu: zen3), .avx2)
        XCTAssertEqual(try GEMM.forcedKernel("AVX512", cpu: zen4), .avx512)
        XCTAssertEqual(try GEMM.forcedKernel("portable", cpu: old), .portable)
        XCTAssertThrowsError(try GEMM.forcedKernel("avx512", cpu: zen3)) { error in
            XCTAssertEqual(error as? GEMM.KernelError, GEMM.KernelError(requested: "avx512", missingFeatures: ["avx512f"]))
            XCTAssertTrue("\(error)".contains("this CPU lacks avx512f"), "\(error)")
        }
        XCTAssertThrowsError(try GEMM.forcedKernel("avx2", cpu: old)) { error in
            XCTAssertEqual((error as? GEMM.KernelError)?.missingFeatures, ["avx2", "fma"])
        }
        XCTAssertThrowsError(try GEMM.forcedKernel("avx1024", cpu: zen4)) { error in
            XCTAssertTrue("\(error)".contains("unknown kernel"), "\(error)")
        }
    }

    func testOpenBLASAgreesWhenInstalled() throws {
        guard let blas = OpenBLAS.load() else { throw XCTSkip("OpenBLAS not installed") }
        blas.setThreads(1)
        for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
            let p = GEMMProblem(m: 37, n: 45, k: 70, transA: transA, transB: transB, pad: 2, seed: 5)
            let ours = p.run(accumulate: true)
            var theirs = p.c
            p.a.withUnsafeBufferPointer { ap in
                p.b.withUnsafeBufferPointer { bp in
                    theirs.withUnsafeMutableBufferPointer { cp in
                        blas.multiply(m: p.m, n: p.n, k: p.k, a: ap.baseAddress!, lda: p.lda, transA: transA,
                                      b: bp.baseAddress!, ldb: p.ldb, transB: transB,
                                      c: cp.baseAddress!, ldc: p.ldc, accumulate: true)
                    }
                }
            }
            for i in ours.indices { XCTAssertEqual(ours[i], theirs[i], accuracy: 1e-4) }
        }
    }
}
