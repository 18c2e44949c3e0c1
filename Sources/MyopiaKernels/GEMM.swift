import CMyopiaKernels

/// Single-precision matrix multiply: packed, register-tiled C kernels (12×32 on AVX-512, 6×16 on
/// AVX2+FMA, a portable 6×16 elsewhere), chosen at run time (KernelChoice.swift). Threads split C into bands of whole tiles (bands of
/// rows share B's packed panels) and never split k, so results are bitwise identical for any thread
/// count.
public enum GEMM {
    /// C[m×n] = (accumulate ? C : 0) + op(A)·op(B), op(A) m×k, op(B) k×n, row-major with leading dims.
    /// transA: A is stored k×m (lda ≥ m) and used transposed; else A is m×k (lda ≥ k). Same for B
    /// (transB: stored n×k, ldb ≥ k; else k×n, ldb ≥ n). k == 0 with accumulate == false zeroes C.
    /// parallel == true spreads work over Parallel.threadCount; false runs on the calling thread.
    /// Safe to call concurrently from several threads (packing buffers are per thread, grown once and
    /// reused; a parallel call made while the pool is busy runs on its own thread). Deterministic for
    /// any thread count.
    public static func multiply(m: Int, n: Int, k: Int,
                                a: UnsafePointer<Float>, lda: Int, transA: Bool,
                                b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                                c: UnsafeMutablePointer<Float>, ldc: Int,
                                accumulate: Bool, parallel: Bool = true) {
        precondition(m >= 0 && n >= 0 && k >= 0, "GEMM: negative dimension")
        guard m > 0, n > 0 else { return }
        precondition(ldc >= n, "GEMM: ldc too small")
        precondition(k == 0 || (transA ? lda >= m : lda >= k), "GEMM: lda too small")
        precondition(k == 0 || (transB ? ldb >= k : ldb >= n), "GEMM: ldb too small")
        let threads = parallel ? Parallel.threadCount : 1
        let kernel = activeKernel
        if !transA && usesFMA && (m <= Int(MYOPIA_GEMM_SMALL_M)
                                  || (transB && m <= fewRowsLimit && streamsFewRows(kernel))) {
            return multiplyStreaming(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, transB: transB, c: c, ldc: ldc,
                                     accumulate: accumulate, threads: threads, kernel: kernel)
        }
        // Below ~1 M multiply-adds a thread hand-off costs more than it saves.
        if threads <= 1 || k == 0 || m * n * k < minParallelWork {
            myopia_sgemm(kernel, m, n, k, a, lda, transA ? 1 : 0, b, ldb, transB ? 1 : 0,
                         c, ldc, accumulate ? 1 : 0)
            return
        }
        // The threads may share packed panels and wait for one another (gemm.c), so they must all run
        // at once. Where the pool cannot promise that (a call inside a parallel-for, another thread's
        // parallel work running), this thread computes C alone, as a parallel-for would run inline.
        if myopia_sgemm_parallel(kernel, threads, m, n, k, a, lda, transA ? 1 : 0, b, ldb, transB ? 1 : 0,
                                 c, ldc, accumulate ? 1 : 0) == 0 {
            myopia_sgemm(kernel, m, n, k, a, lda, transA ? 1 : 0, b, ldb, transB ? 1 : 0, c, ldc, accumulate ? 1 : 0)
        }
    }

    /// Triangular structure `multiplyTriangular` can exploit (causal attention; i row, j column of C,
    /// p the summed index).
    public enum Triangle: Sendable {
        /// Only C's lower triangle (j ≤ i) is wanted; register tiles wholly above it are not written.
        case outputLower
        /// op(A) is lower triangular (zero for p > i, and those zeros are stored).
        case aLower
        /// op(A) is upper triangular (zero for p < i, and those zeros are stored).
        case aUpper
    }

    /// `multiply` on the calling thread, skipping the work `triangle` makes unnecessary: about half
    /// of a causal attention's products. Every element it writes equals `multiply`'s.
    public static func multiplyTriangular(_ triangle: Triangle, m: Int, n: Int, k: Int,
                                          a: UnsafePointer<Float>, lda: Int, transA: Bool,
                                          b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                                          c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        precondition(m >= 0 && n >= 0 && k >= 0, "GEMM: negative dimension")
        guard m > 0, n > 0 else { return }
        precondition(ldc >= n, "GEMM: ldc too small")
        precondition(k == 0 || (transA ? lda >= m : lda >= k), "GEMM: lda too small")
        precondition(k == 0 || (transB ? ldb >= k : ldb >= n), "GEMM: ldb too small")
        let tri: Int32
        switch triangle {
        case .outputLower: tri = Int32(MYOPIA_TRI_OUTPUT_LOWER)
        case .aLower: tri = Int32(MYOPIA_TRI_A_LOWER)
        case .aUpper: tri = Int32(MYOPIA_TRI_A_UPPER)
        }
        myopia_sgemm_tri(activeKernel, tri, m, n, k, a, lda, transA ? 1 : 0, b, ldb, transB ? 1 : 0,
                         c, ldc, accumulate ? 1 : 0)
    }

    /// A few rows of C (decoding one token, or a batch of samples): B streamed once, unpacked, its
    /// columns split between threads; up to MYOPIA_GEMM_SMALL_M rows straight from memory
    /// (myopia_sgemm_small_m), more against a transposed B a tile at a time through L1
    /// (myopia_sgemm_few_rows). Bitwise identical to the packed path, so which path ran never shows
    /// in the results.
    private static func multiplyStreaming(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                          b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                                          c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, threads: Int,
                                          kernel: Int32) {
        // Reading B is the cost: a thread hand-off pays once B passes ~256 KiB.
        guard threads > 1, n * k >= minParallelStream, n >= 32 else {
            streamColumns(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, transB: transB, c: c, ldc: ldc,
                          accumulate: accumulate, kernel: kernel)
            return
        }
        let cols = ((n + threads - 1) / threads + 15) / 16 * 16
        let aP = SendablePointer(a), bP = SendablePointer(b), cP = SendablePointer(c)
        let args = (aP, bP, cP, m, n, k, lda, ldb, ldc, transB, accumulate, cols, kernel)
        Parallel.forEachStatic(threads, args) { args, t in
            let (aP, bP, cP, m, n, k, lda, ldb, ldc, transB, accumulate, cols, kernel) = args
            let j0 = t * cols, width = min(cols, n - j0)
            guard width > 0 else { return }
            streamColumns(m: m, n: width, k: k, a: aP.pointer, lda: lda, b: transB ? bP.pointer + j0 * ldb : bP.pointer + j0,
                          ldb: ldb, transB: transB, c: cP.pointer + j0, ldc: ldc, accumulate: accumulate, kernel: kernel)
        }
    }

    private static func streamColumns(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                      b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                                      c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, kernel: Int32) {
        if m <= Int(MYOPIA_GEMM_SMALL_M) {
            _ = myopia_sgemm_small_m(m, n, k, a, lda, b, ldb, transB ? 1 : 0, c, ldc, accumulate ? 1 : 0)
        } else {
            _ = myopia_sgemm_few_rows(kernel, m, n, k, a, lda, b, ldb, c, ldc, accumulate ? 1 : 0)
        }
    }

    /// Rows of A up to which a product against a transposed B streams B instead of packing it.
    public static let fewRowsLimit = Int(MYOPIA_GEMM_FEW_M)

    /// Whether `myopia_sgemm_few_rows` runs with `kernel` (AVX2+FMA and AVX-512; the others pack).
    static func streamsFewRows(_ kernel: Int32) -> Bool {
        kernel == Int32(MYOPIA_KERNEL_AVX2_FMA) || kernel == Int32(MYOPIA_KERNEL_AVX512)
    }

    static let minParallelStream = 1 << 16

    /// True when an FMA kernel (AVX2 or AVX-512) is in use: the few-rows path sums as both do.
    public static var usesFMA: Bool { kernel != .portable }

    /// Name of the active kernel and its tile, e.g. "avx512 12x32", "avx2-fma 6x16" or "portable 6x16".
    public static var kernelName: String { kernel.name }

    /// The kernel GEMMs run: `selection.kernel` (KernelChoice.swift) unless set. Setting it (tests,
    /// benchmarks) requires a kernel this CPU can run; set it before starting work, not while GEMMs
    /// run. Row operations follow it to their portable path when it is `.portable`.
    public static var kernel: Kernel {
        get { kernelOverride ?? selection.kernel }
        set {
            precondition(newValue.missingFeatures.isEmpty, "GEMM.kernel: this CPU cannot run \(newValue.name)")
            kernelOverride = newValue
        }
    }

    nonisolated(unsafe) static var kernelOverride: Kernel?

    static var activeKernel: Int32 { kernel.id }

    static let minParallelWork = 1 << 20
}
