import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Optional OpenBLAS comparison for `myopia bench`: dlopen("libopenblas.so.0" / "libopenblas.so") at run time
/// (never a link-time dependency), dlsym cblas_sgemm and openblas_set_num_threads. nil when not installed.
public final class OpenBLAS: @unchecked Sendable {
    private typealias SgemmFn = @convention(c) (
        Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
        UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    private typealias SetThreadsFn = @convention(c) (Int32) -> Void

    private let handle: UnsafeMutableRawPointer
    private let sgemm: SgemmFn
    private let setNumThreads: SetThreadsFn?

    private init(handle: UnsafeMutableRawPointer, sgemm: SgemmFn, setNumThreads: SetThreadsFn?) {
        self.handle = handle
        self.sgemm = sgemm
        self.setNumThreads = setNumThreads
    }

    public static func load() -> OpenBLAS? {
        let names = ["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"]
        for name in names {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { continue }
            guard let sym = dlsym(handle, "cblas_sgemm") else {
                dlclose(handle)
                continue
            }
            let setThreads = dlsym(handle, "openblas_set_num_threads").map {
                unsafeBitCast($0, to: SetThreadsFn.self)
            }
            return OpenBLAS(handle: handle, sgemm: unsafeBitCast(sym, to: SgemmFn.self),
                            setNumThreads: setThreads)
        }
        return nil
    }

    public func setThreads(_ n: Int) {
        setNumThreads?(Int32(max(1, n)))
    }

    /// Same contract as GEMM.multiply (row-major, CblasRowMajor).
    public func multiply(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, transA: Bool,
                         b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                         c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        guard m > 0, n > 0 else { return }
        let rowMajor: Int32 = 101, noTrans: Int32 = 111, trans: Int32 = 112
        sgemm(rowMajor, transA ? trans : noTrans, transB ? trans : noTrans, Int32(m), Int32(n), Int32(k),
              1, a, Int32(lda), b, Int32(ldb), accumulate ? 1 : 0, c, Int32(ldc))
    }
}
