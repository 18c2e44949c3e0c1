import CMyopiaKernels
import Dispatch

/// Measured machine FMA peak for `myopia bench`: 12 independent FMA chains in C on ymm (8 floats)
/// or zmm (16 floats) registers, on `threads` threads, GFLOP/s.
public enum Peak {
    /// Vector widths this CPU has FMAs for, by name: "ymm" (8 floats, AVX2+FMA), "zmm" (16, AVX-512).
    public static var widths: [(name: String, floats: Int)] {
        let cpu = GEMM.CPUFeatures.current
        return (cpu.avx2FMA ? [("ymm", 8)] : []) + (cpu.avx512 ? [("zmm", 16)] : [])
    }

    /// The best of `rounds` runs of about `seconds` each: interference from elsewhere on the
    /// machine only ever lowers a run, and a peak that reads low would flatter every MFU. `width`:
    /// 8 or 16 floats (0 where the CPU lacks it); nil: the ymm loop where AVX2+FMA exists, else
    /// portable C.
    public static func measureFMAPeak(threads: Int, width: Int? = nil, seconds: Double = 0.1, rounds: Int = 5) -> Double {
        let threads = max(1, threads)
        let loop: (Int) -> Double = { iterations in
            width.map { myopia_fma_peak_loop_width(Int32($0), iterations) } ?? myopia_fma_peak_loop(iterations)
        }
        // Calibrate: grow the iteration count until one run takes ≥ 20 ms.
        var iterations = 1 << 16
        var flopsPerRun = 0.0, elapsed = 0.0
        while true {
            let start = DispatchTime.now().uptimeNanoseconds
            flopsPerRun = loop(iterations)
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            if flopsPerRun == 0 { return 0 }
            if elapsed >= 0.02 || iterations >= 1 << 40 { break }
            iterations *= 4
        }
        let perThreadSeconds = max(seconds, 0.02)
        let runIterations = max(1, Int(Double(iterations) * perThreadSeconds / max(elapsed, 1e-9)))
        let flops = Double(threads) * flopsPerRun * Double(runIterations) / Double(iterations)
        var best = 0.0
        for _ in 0..<max(1, rounds) {
            let start = DispatchTime.now().uptimeNanoseconds
            Parallel.forEachStatic(threads, threads: threads, (runIterations, width)) { args, _ in
                let (runIterations, width) = args
                _ = width.map { myopia_fma_peak_loop_width(Int32($0), runIterations) } ?? myopia_fma_peak_loop(runIterations)
            }
            let wall = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            best = max(best, flops / wall * 1e-9)
        }
        return best
    }

    /// Memory read rate, GB/s: `threads` threads each read their half (third, …) of a buffer of
    /// `bytes` (far beyond the caches) once; the best of `rounds`. The ceiling of decoding one
    /// token at a time, which streams every weight once per token.
    public static func measureReadBandwidth(threads: Int, bytes: Int = 512 << 20, rounds: Int = 5) -> Double {
        let threads = max(1, threads), count = bytes / 4
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        // Touch every page first, on the threads that read it afterwards.
        Parallel.forEachStatic(threads, threads: threads, buffer) { buffer, part in
            let lo = part * count / threads, hi = (part + 1) * count / threads
            (buffer + lo).update(repeating: 1, count: hi - lo)
        }
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: threads)
        defer { sums.deallocate() }
        var best = 0.0
        for _ in 0..<max(1, rounds) {
            let start = DispatchTime.now().uptimeNanoseconds
            Parallel.forEachStatic(threads, threads: threads, (buffer, sums)) { args, part in
                let lo = part * count / threads, hi = (part + 1) * count / threads
                args.1[part] = myopia_stream_read(args.0 + lo, hi - lo)
            }
            let wall = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            best = max(best, Double(4 * count) / wall * 1e-9)
        }
        precondition((0..<threads).reduce(Float(0)) { $0 + sums[$1] } > 0, "the reads were dropped")
        return best
    }

    /// A quick single-thread FMA rate of one vector width (best of five runs of ~0.3 ms), for the
    /// kernel choice; nil where the CPU lacks the width.
    static func singleThreadRate(width: Int) -> Double? {
        var best = 0.0
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            let flops = myopia_fma_peak_loop_width(Int32(width), 1 << 14)
            if flops == 0 { return nil }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            best = max(best, flops / max(seconds, 1e-9) * 1e-9)
        }
        return best
    }
}
