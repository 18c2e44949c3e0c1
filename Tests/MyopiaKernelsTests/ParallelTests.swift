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

    func testNestedAndConcurrentForEachRunEveryItemOnce() {
        Parallel.threadCount = 2
        var hits = [Int](repeating: 0, count: 4 * 50)
        hits.withUnsafeMutableBufferPointer { buf in
            let p = SendablePointer(buf.baseAddress!)
            Parallel.forEach(4) { i in
                Parallel.forEach(50) { j in p.pointer[i * 50 + j] += 1 }
            }
        }
        XCTAssertEqual(hits, [Int](repeating: 1, count: 200))

        // Several threads starting parallel-fors at once: one gets the pool, the others run inline.
        var grid = [Int](repeating: 0, count: 8 * 1000)
        grid.withUnsafeMutableBufferPointer { buf in
            let p = SendablePointer(buf.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: 8) { caller in
                for _ in 0..<20 {
                    Parallel.forEach(1000) { j in p.pointer[caller * 1000 + j] += 1 }
                }
            }
        }
        XCTAssertEqual(grid, [Int](repeating: 20, count: 8000))
    }

    func testPeakIsPositive() {
        let gflops = Peak.measureFMAPeak(threads: 1, seconds: 0.02)
        XCTAssertGreaterThan(gflops, 0.1)
    }
}
