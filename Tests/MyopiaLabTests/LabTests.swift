import XCTest
#if canImport(Glibc)
import Glibc
#endif
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

final class LabTests: XCTestCase {
    /// The FLOP count `myopia bench` divides by is the one the speed targets are stated in.
    func testBenchStepFLOPs() {
        let s = Bench.smallConfig, g = Bench.gpt2Config
        XCTAssertEqual(Bench.trainingFLOPs(s.model, batch: s.batch, seqLen: s.seqLen) / 1e9, 70.9, accuracy: 0.1)
        XCTAssertEqual(Bench.trainingFLOPs(g.model, batch: g.batch, seqLen: g.seqLen) / 1e9, 191.6, accuracy: 0.1)
        XCTAssertEqual(Transformer(config: g.model).params.count, 124_439_808)
    }

    /// The bench's peak-RSS figure reads /proc: after a reset the peak covers a fresh allocation.
    func testResidentSetPeakSeesAnAllocation() throws {
        guard let before = ResidentSet.resetPeak() else { throw XCTSkip("no /proc/self/status") }
        // Fresh pages from the kernel: malloc may hand back a freed, still-resident region of the
        // heap (earlier tests' buffers coalesce), which would not raise the resident set at all.
        let bytes = 64 << 20
        guard let region = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              region != MAP_FAILED else { throw XCTSkip("mmap refused 64 MiB") }
        memset(region, 1, bytes)
        let peak = try XCTUnwrap(ResidentSet.peakMiB())
        munmap(region, bytes)
        XCTAssertGreaterThanOrEqual(peak, before + 60)
    }

    func testSyntheticTextIsSeeded() {
        XCTAssertEqual(SyntheticText.generate(bytes: 500, seed: 3), SyntheticText.generate(bytes: 500, seed: 3))
        XCTAssertNotEqual(SyntheticText.generate(bytes: 500, seed: 3), SyntheticText.generate(bytes: 500, seed: 4))
        XCTAssertGreaterThanOrEqual(SyntheticText.generate(bytes: 500, seed: 3).utf8.count, 500)
    }
}
