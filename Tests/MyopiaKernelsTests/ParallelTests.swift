import XCTest
@testable import MyopiaKernels

final class ParallelTests: KernelTestCase {
    func testForEachVisitsEveryIndexOnce() {
        for threads in [1, 2, 3, 8] {
            Parallel.threadCount = threads
            for count in [0, 1, 2, 7, 100, 1000] {
                var hits = [Int](repeating: 0, count: count)
                hits.withUnsafeMutableBufferPointer { buf in
                    let p = SendablePointer(buf.baseAddress ?? UnsafeMutablePointer<Int>.allocate(capacity: 1))
                    Parallel.forEach(count) { i in p.pointer[i] += 1 }
                }
                XCTAssertEqual(hits, [Int](repeating: 1, count: count), "threads \(threads) count \(count)")
            }
        }
    }

    func testPeakIsPositive() {
        let gflops = Peak.measureFMAPeak(threads: 1, seconds: 0.02)
        XCTAssertGreaterThan(gflops, 0.1)
    }
}
