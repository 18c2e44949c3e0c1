import Foundation
import XCTest
@testable import MyopiaKernels

final class GELUTests: KernelTestCase {
    static func geluDouble(_ x: Double) -> Double {
        0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    }

    func testForwardMatchesDouble() {
        forEachRowOpsPath { path in checkForwardMatchesDouble(path) }
    }

    func checkForwardMatchesDouble(_ path: String) {
        var xs = stride(from: -10.0, through: 10.0, by: 1.0 / 1024).map { Float($0) }
        var rng = TestRandom(seed: 1)
        xs += rng.floats(50_001, -10, 10)
        var ys = [Float](repeating: .nan, count: xs.count)
        RowOps.geluForward(out: &ys, input: xs, count: xs.count)
        var worst = 0.0
        for (x, y) in zip(xs, ys) { worst = max(worst, abs(Double(y) - Self.geluDouble(Double(x)))) }
        print("gelu (\(path)): max abs error \(worst) on [-10, 10]")
        XCTAssertLessThanOrEqual(worst, 1e-6, path)
    }

    func testForwardExtremes() {
        forEachRowOpsPath { path in checkForwardExtremes(path) }
    }

    func checkForwardExtremes(_ path: String) {
        let xs: [Float] = [-1e4, -100, -30, 30, 100, 1e4, 0]
        var ys = [Float](repeating: .nan, count: xs.count)
        RowOps.geluForward(out: &ys, input: xs, count: xs.count)
        XCTAssertEqual(ys[0], 0); XCTAssertEqual(ys[1], 0)
        XCTAssertEqual(ys[2], 0)
        XCTAssertEqual(ys[3], 30); XCTAssertEqual(ys[4], 100); XCTAssertEqual(ys[5], 1e4)
        XCTAssertEqual(ys[6], 0)
    }

    func testBackwardMatchesFiniteDifferencesAndAliases() {
        forEachRowOpsPath { path in checkBackwardMatchesFiniteDifferencesAndAliases(path) }
    }

    func checkBackwardMatchesFiniteDifferencesAndAliases(_ path: String) {
        var xs = stride(from: -10.0, through: 10.0, by: 1.0 / 256).map { Float($0) }
        xs += [-1e4, -100, -30, 30, 100, 1e4]
        var rng = TestRandom(seed: 2)
        let dy = rng.floats(xs.count, -2, 2)
        var dx = [Float](repeating: .nan, count: xs.count)
        RowOps.geluBackward(dInput: &dx, input: xs, dOut: dy, count: xs.count)
        let h = 1e-5
        for i in xs.indices {
            let x = Double(xs[i])
            let fd = (Self.geluDouble(x + h) - Self.geluDouble(x - h)) / (2 * h)
            XCTAssertFalse(dx[i].isNaN, "\(path) NaN at x = \(x)")
            XCTAssertEqual(Double(dx[i]), Double(dy[i]) * fd, accuracy: 2e-6 * max(1, abs(fd)), "\(path) x = \(x)")
        }
        // dInput may alias dOut.
        var inPlace = dy
        inPlace.withUnsafeMutableBufferPointer { p in
            RowOps.geluBackward(dInput: p.baseAddress!, input: xs, dOut: p.baseAddress!, count: xs.count)
        }
        assertBitwiseEqual(inPlace, dx, "aliased backward")
    }
}
