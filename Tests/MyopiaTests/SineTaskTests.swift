import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// The synthetic pre-caching task's generator and its exact baselines (docs/DESIGN.md §5).
final class SineTaskTests: XCTestCase {
    func batch(_ task: SineTask, b: Int = 4, t: Int = 24, seed: UInt64 = 1) -> SineBatch {
        var rng = SeededGenerator(seed: seed)
        return task.makeBatch(batch: b, seqLen: t, rng: &rng)
    }

    /// Every target against the definition, written out directly: zero padding before the start,
    /// the window excludes the position itself.
    func testTargetsFollowTheDefinition() {
        let task = SineTask(p: 0.5, frequency: 3, window: 4)
        let data = batch(task, b: 3, t: 11)
        XCTAssertEqual(data.features.count, 3 * 11 * 2)
        XCTAssertEqual(data.targets.count, 3 * 11)
        for s in 0..<3 {
            for n in 0..<11 {
                let r = s * 11 + n
                XCTAssertEqual(data.features[2 * r], data.x[r])
                XCTAssertEqual(data.features[2 * r + 1], data.z[r])
                var sum = 0.0
                for i in 1...4 where n - i >= 0 { sum += Foundation.sin(3 * Double(data.x[r - i])) }
                let expected = data.z[r] == 1 ? Float(sum) : data.x[r]
                XCTAssertEqual(data.targets[r], expected, accuracy: 1e-5, "sequence \(s) position \(n)")
            }
        }
        // The first position of every sequence has nothing to sum.
        for s in 0..<3 where data.z[s * 11] == 1 { XCTAssertEqual(data.targets[s * 11], 0) }
    }

    func testSeededAndDistributed() {
        let task = SineTask(p: 0.3, frequency: 10, window: 10)
        XCTAssertEqual(batch(task, seed: 5), batch(task, seed: 5))
        XCTAssertNotEqual(batch(task, seed: 5).x, batch(task, seed: 6).x)
        let big = batch(task, b: 64, t: 64)
        let zShare = Double(big.z.reduce(0, +)) / Double(big.z.count)
        XCTAssertEqual(zShare, 0.3, accuracy: 0.03)
        XCTAssertTrue(big.z.allSatisfy { $0 == 0 || $0 == 1 })
        let mean = big.x.reduce(0.0) { $0 + Double($1) } / Double(big.x.count)
        let variance = big.x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(big.x.count) - mean * mean
        XCTAssertEqual(mean, 0, accuracy: 0.05)
        XCTAssertEqual(variance, 1, accuracy: 0.06)
        XCTAssertTrue(batch(SineTask(p: 1), b: 8, t: 8).z.allSatisfy { $0 == 1 })
        XCTAssertTrue(batch(SineTask(p: 0), b: 8, t: 8).z.allSatisfy { $0 == 0 })
    }

    func testCachedFeature() {
        let task = SineTask(p: 1, frequency: 3, window: 10)
        let data = batch(task, b: 2, t: 7)
        for lag in [0, 1, 3, 7, 9] {
            let feature = data.cachedFeature(lag: lag)
            for s in 0..<2 {
                for n in 0..<7 {
                    let expected = n - lag >= 0 ? Float(Foundation.sin(3 * Double(data.x[s * 7 + n - lag]))) : 0
                    XCTAssertEqual(feature[s * 7 + n], expected, accuracy: 1e-6)
                }
            }
        }
        // With p = 1 each target is the sum of the cached features at lags 1...W.
        let sum = (1...10).map { data.cachedFeature(lag: $0) }.reduce([Float](repeating: 0, count: 14)) { zip($0, $1).map(+) }
        for (a, b) in zip(sum, data.targets) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    }

    /// The baselines, computed by hand on the same data.
    func testBaselines() {
        let task = SineTask(p: 0.3, frequency: 3, window: 10)
        let data = batch(task, b: 16, t: 32)
        func huber(_ d: Double) -> Double { abs(d) < 1 ? 0.5 * d * d : abs(d) - 0.5 }
        var zero = 0.0, floor = 0.0
        for r in 0..<data.targets.count {
            let y = Double(data.targets[r])
            zero += huber(y)
            floor += huber(y - (data.z[r] == 1 ? 0 : Double(data.x[r])))
        }
        let n = Double(data.targets.count)
        XCTAssertEqual(data.predictZeroLoss(), zero / n, accuracy: 1e-9)
        XCTAssertEqual(data.floorLoss(), floor / n, accuracy: 1e-9)
        // Where z = 0 the floor is exact, so its loss comes from the z = 1 positions only.
        XCTAssertLessThan(data.floorLoss(), data.predictZeroLoss())
        // With p = 1 the floor is predict-zero.
        let all = batch(SineTask(p: 1, frequency: 3, window: 10), b: 8, t: 32)
        XCTAssertEqual(all.floorLoss(), all.predictZeroLoss())
        // With p = 0 the floor is perfect.
        XCTAssertEqual(batch(SineTask(p: 0), b: 4, t: 8).floorLoss(), 0)
    }

    func testValidation() {
        XCTAssertNoThrow(try SineTask(p: 0.3).validate())
        XCTAssertThrowsError(try SineTask(p: 1.5).validate())
        XCTAssertThrowsError(try SineTask(p: 1, frequency: .infinity).validate())
        XCTAssertThrowsError(try SineTask(p: 1, frequency: 3, window: 0).validate())
    }
}
