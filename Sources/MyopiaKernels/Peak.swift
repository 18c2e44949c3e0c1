import CMyopiaKernels
import Dispatch

/// Measured machine FMA peak for `myopia bench`: independent SIMD8 FMA chains in C (avx2 path) on `threads` threads, GFLOP/s.
public enum Peak {
    /// The best of `rounds` runs of about `seconds` each: interference from elsewhere on the
    /// machine only ever lowers a run, and a peak that reads low would flatter every MFU.
    public static func measureFMAPeak(threads: Int, seconds: Double = 0.1, rounds: Int = 5) -> Double {
        let threads = max(1, threads)
        // Calibrate: grow the iteration count until one run takes ≥ 20 ms.
        var iterations = 1 << 16
        var flopsPerRun = 0.0, elapsed = 0.0
        while true {
            let start = DispatchTime.now().uptimeNanoseconds
            flopsPerRun = myopia_fma_peak_loop(iterations)
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            if elapsed >= 0.02 || iterations >= 1 << 40 { break }
            iterations *= 4
        }
        let perThreadSeconds = max(seconds, 0.02)
        let runIterations = max(1, Int(Double(iterations) * perThreadSeconds / max(elapsed, 1e-9)))
        let flops = Double(threads) * flopsPerRun * Double(runIterations) / Double(iterations)
        var best = 0.0
        for _ in 0..<max(1, rounds) {
            let start = DispatchTime.now().uptimeNanoseconds
            Parallel.forEachStatic(threads, threads: threads, runIterations) { runIterations, _ in
                _ = myopia_fma_peak_loop(runIterations)
            }
            let wall = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            best = max(best, flops / wall * 1e-9)
        }
        return best
    }
}
