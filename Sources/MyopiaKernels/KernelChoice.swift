import CMyopiaKernels
import Foundation

/// Which GEMM micro-kernel runs, chosen once per process.
///
/// Flags alone mislead: some CPUs with AVX-512 split each 512-bit operation into two 256-bit halves
/// (AMD Zen 4), so zmm registers bring no more FLOP/s than ymm. Where the CPU has AVX-512 the choice
/// therefore times both: the FMA rate of each vector width, and one product of each kernel
/// (192×256 by 256×256, single-threaded, best of five, alternating); the faster kernel wins. The
/// AVX2 and AVX-512 kernels agree bit for bit (gemm.c), so a choice that falls either way on a noisy
/// machine never changes a result. `MYOPIA_KERNEL=portable|avx2|avx512` forces one.
extension GEMM {
    /// A GEMM micro-kernel (its register tile in `name`).
    public enum Kernel: String, CaseIterable, Sendable, Codable {
        /// 6×16 tile in plain C (any CPU; multiplies and adds separately).
        case portable
        /// 6×16 tile on ymm registers (AVX2 + FMA).
        case avx2
        /// 12×32 tile on zmm registers (AVX-512F).
        case avx512

        /// The id myopia_sgemm takes.
        var id: Int32 {
            switch self {
            case .portable: Int32(MYOPIA_KERNEL_PORTABLE)
            case .avx2: Int32(MYOPIA_KERNEL_AVX2_FMA)
            case .avx512: Int32(MYOPIA_KERNEL_AVX512)
            }
        }

        /// The kernel and its register tile, e.g. "avx512 12x32".
        public var name: String {
            switch self {
            case .portable: "portable 6x16"
            case .avx2: "avx2-fma 6x16"
            case .avx512: "avx512 12x32"
            }
        }

        /// The CPU features this kernel needs that this machine lacks (empty: it can run).
        public var missingFeatures: [String] {
            GEMM.missingFeatures(self, cpu: .current)
        }

        /// The kernels this machine can run, slowest first.
        public static var available: [Kernel] { allCases.filter { $0.missingFeatures.isEmpty } }
    }

    /// The instruction-set features the kernels need, as this CPU reports them.
    public struct CPUFeatures: Sendable, Equatable {
        public var avx2FMA: Bool
        public var avx512: Bool

        public init(avx2FMA: Bool, avx512: Bool) {
            self.avx2FMA = avx2FMA
            self.avx512 = avx512
        }

        public static let current = CPUFeatures(avx2FMA: myopia_cpu_has_avx2_fma() != 0,
                                                avx512: myopia_cpu_has_avx512() != 0)
    }

    static func missingFeatures(_ kernel: Kernel, cpu: CPUFeatures) -> [String] {
        switch kernel {
        case .portable: []
        case .avx2: cpu.avx2FMA ? [] : ["avx2", "fma"]
        case .avx512: (cpu.avx2FMA ? [] : ["avx2", "fma"]) + (cpu.avx512 ? [] : ["avx512f"])
        }
    }

    /// A `MYOPIA_KERNEL` setting that cannot be honoured.
    public struct KernelError: Error, CustomStringConvertible, Equatable {
        /// The value of MYOPIA_KERNEL.
        public var requested: String
        /// CPU features the requested kernel needs and this machine lacks (empty: unknown name).
        public var missingFeatures: [String]

        public var description: String {
            if missingFeatures.isEmpty {
                return "MYOPIA_KERNEL=\(requested): unknown kernel (expected one of "
                    + Kernel.allCases.map(\.rawValue).joined(separator: ", ") + ")"
            }
            return "MYOPIA_KERNEL=\(requested): this CPU lacks \(missingFeatures.joined(separator: ", ")), which the "
                + "\(requested) kernel needs (it can run: \(Kernel.available.map(\.rawValue).joined(separator: ", ")))"
        }
    }

    /// The kernel `MYOPIA_KERNEL` asks for on a CPU with `cpu`'s features: nil when unset or empty.
    public static func forcedKernel(_ value: String?, cpu: CPUFeatures = .current) throws(KernelError) -> Kernel? {
        guard let value, !value.isEmpty else { return nil }
        guard let kernel = Kernel(rawValue: value.lowercased()) else {
            throw KernelError(requested: value, missingFeatures: [])
        }
        let missing = missingFeatures(kernel, cpu: cpu)
        guard missing.isEmpty else { throw KernelError(requested: value, missingFeatures: missing) }
        return kernel
    }

    /// How the kernel of this process was chosen, with the measurements behind the choice.
    public struct KernelSelection: Codable, Sendable {
        /// The kernel chosen.
        public var kernel: Kernel
        /// Why: "MYOPIA_KERNEL", "no AVX2+FMA", "no AVX-512", or "timed".
        public var reason: String
        /// One thread's FMA rate on ymm and on zmm registers, GFLOP/s (nil: not measured or no such width).
        public var ymmGflops: Double?
        public var zmmGflops: Double?
        /// One thread's rate on a 192×256·256×256 product with each kernel timed, GFLOP/s.
        public var tileGflops: [String: Double]

        enum CodingKeys: String, CodingKey {
            case kernel, reason
            case ymmGflops = "ymm_fma_gflops", zmmGflops = "zmm_fma_gflops", tileGflops = "tile_gflops"
        }
    }

    /// The choice of this process, made at the first use of GEMM (or of `selection`). An invalid
    /// MYOPIA_KERNEL falls back to the automatic choice here (never an illegal instruction);
    /// `checkEnvironment()` reports it.
    public static let selection: KernelSelection = {
        if let forced = try? forcedKernel(ProcessInfo.processInfo.environment["MYOPIA_KERNEL"]) {
            return KernelSelection(kernel: forced, reason: "MYOPIA_KERNEL", tileGflops: [:])
        }
        return chooseKernel()
    }()

    /// Throws when MYOPIA_KERNEL names an unknown kernel or one this CPU cannot run.
    public static func checkEnvironment() throws(KernelError) {
        _ = try forcedKernel(ProcessInfo.processInfo.environment["MYOPIA_KERNEL"])
    }

    static func chooseKernel() -> KernelSelection {
        let cpu = CPUFeatures.current
        guard cpu.avx2FMA else { return KernelSelection(kernel: .portable, reason: "no AVX2+FMA", tileGflops: [:]) }
        let ymm = Peak.singleThreadRate(width: 8)
        guard cpu.avx512 else {
            return KernelSelection(kernel: .avx2, reason: "no AVX-512", ymmGflops: ymm, tileGflops: [:])
        }
        let zmm = Peak.singleThreadRate(width: 16)
        let tiles = timeTiles([.avx2, .avx512])
        let kernel: Kernel = tiles[Kernel.avx512.rawValue]! > tiles[Kernel.avx2.rawValue]! ? .avx512 : .avx2
        return KernelSelection(kernel: kernel, reason: "timed", ymmGflops: ymm, zmmGflops: zmm, tileGflops: tiles)
    }

    /// GFLOP/s of one 192×256·256×256 product per kernel on this thread, best of five, alternating.
    static func timeTiles(_ kernels: [Kernel]) -> [String: Double] {
        let m = 192, n = 256, k = 256
        var a = [Float](repeating: 0, count: m * k), b = [Float](repeating: 0, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        for i in a.indices { a[i] = Float(i % 17) * 0.01 }
        for i in b.indices { b[i] = Float(i % 13) * 0.01 }
        var best = [String: Double]()
        for _ in 0..<5 {
            for kernel in kernels {
                let start = DispatchTime.now().uptimeNanoseconds
                myopia_sgemm(kernel.id, m, n, k, a, k, 0, b, n, 0, &c, n, 0)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                best[kernel.rawValue] = max(best[kernel.rawValue] ?? 0, 2.0 * Double(m * n * k) / max(seconds, 1e-9) * 1e-9)
            }
        }
        return best
    }
}

extension GEMM {
    /// One line on how the kernel was chosen, e.g. "timed: avx512 118.2, avx2 104.5 GFLOP/s on one
    /// thread; FMA ymm 95.1, zmm 96.0".
    public static var kernelSelectionSummary: String {
        let s = selection
        var parts: [String] = []
        if kernelOverride != nil { parts.append("set by the caller") }
        switch s.reason {
        case "timed":
            parts.append("timed: " + s.tileGflops.sorted { $0.value > $1.value }
                .map { String(format: "%@ %.1f", $0.key, $0.value) }.joined(separator: ", ") + " GFLOP/s on one thread")
        default:
            parts.append(s.reason)
        }
        let fma = [("ymm", s.ymmGflops), ("zmm", s.zmmGflops)].compactMap { name, v in v.map { String(format: "%@ %.1f", name, $0) } }
        if !fma.isEmpty { parts.append("FMA " + fma.joined(separator: ", ")) }
        return parts.joined(separator: "; ")
    }
}
