import XCTest
import CMyopiaKernels
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

    func testArgsFormsVisitEveryIndexOnce() {
        for threads in [1, 2, 3] {
            Parallel.threadCount = threads
            for count in [0, 1, 7, 100, 1000] {
                var hits = [Int](repeating: 0, count: count)
                hits.withUnsafeMutableBufferPointer { buf in
                    let p = SendablePointer(buf.baseAddress ?? UnsafeMutablePointer<Int>.allocate(capacity: 1))
                    Parallel.forEach(count, (p, 1)) { args, i in args.0.pointer[i] += args.1 }
                    Parallel.forEachStatic(count, threads: threads, (p, 10)) { args, i in args.0.pointer[i] += args.1 }
                    for chunk in [1, 3, 64] {
                        Parallel.forEachChunk(of: count, chunk: chunk, p) { p, lo, hi in
                            precondition(lo < hi && hi - lo <= chunk && (lo % chunk == 0))
                            for i in lo..<hi { p.pointer[i] += 100 }
                        }
                    }
                }
                XCTAssertEqual(hits, [Int](repeating: 311, count: count), "threads \(threads) count \(count)")
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

    /// The read loop sums what it reads (every width, and the tail past the last full vector
    /// group), so the rate it reports is of reads that happened.
    func testStreamReadSumsEveryValue() {
        for count in [0, 1, 7, 64, 127, 128, 1000, 4099] {
            let values = (0..<count).map { Float($0 % 5) }
            let sum = values.withUnsafeBufferPointer { myopia_stream_read($0.baseAddress, count) }
            XCTAssertEqual(sum, Float(values.reduce(0, +)), "\(count) values")
        }
        let rate = Peak.measureReadBandwidth(threads: 2, bytes: 8 << 20, rounds: 2)
        XCTAssertTrue(rate.isFinite && rate > 0.1, "\(rate) GB/s")
    }
}
