import XCTest
@testable import MyopiaKernels

/// Deterministic xorshift generator for test data.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    /// Uniform in [lo, hi).
    mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }
    mutating func floats(_ count: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<count).map { _ in float(lo, hi) }
    }
}

/// Restores the global kernel settings that tests change.
class KernelTestCase: XCTestCase {
    private var savedThreads = 1
    private var savedKernel: GEMM.Kernel?
    private var savedRowPortable = false

    override func setUp() {
        super.setUp()
        savedThreads = Parallel.threadCount
        savedKernel = GEMM.kernelOverride
        savedRowPortable = RowOps.forcePortable
    }

    override func tearDown() {
        Parallel.threadCount = savedThreads
        GEMM.kernelOverride = savedKernel
        RowOps.forcePortable = savedRowPortable
        super.tearDown()
    }

    /// Runs `body` once with each vectorised row-operation path the CPU has (AVX-512, AVX2: they
    /// follow GEMM.kernel) and once with the portable Swift one.
    func forEachRowOpsPath(_ body: (String) -> Void) {
        RowOps.forcePortable = false
        for kernel in GEMM.Kernel.available where kernel != .portable {
            GEMM.kernel = kernel
            body(RowOps.usesAVX512 ? "avx512" : "avx2")
        }
        RowOps.forcePortable = true
        body("portable")
    }

    /// Runs `body` once with each GEMM kernel this CPU can run (GEMM.kernel set to it).
    func forEachKernel(_ body: (GEMM.Kernel) throws -> Void) rethrows {
        for kernel in GEMM.Kernel.available {
            GEMM.kernel = kernel
            try body(kernel)
        }
    }

    /// Runs `body` with each thread count and returns its results, for bitwise comparison.
    func withThreadCounts<T>(_ counts: [Int] = [1, 2, 3], _ body: () -> T) -> [T] {
        counts.map { n in
            Parallel.threadCount = n
            return body()
        }
    }

    func assertBitwiseEqual(_ a: [Float], _ b: [Float], _ message: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, message, file: file, line: line)
        let firstDiff = a.indices.first { $0 < b.count && a[$0].bitPattern != b[$0].bitPattern }
        XCTAssertNil(firstDiff, "\(message): first difference at \(firstDiff ?? -1)", file: file, line: line)
    }
}
