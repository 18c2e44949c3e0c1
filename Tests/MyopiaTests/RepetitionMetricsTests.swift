import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

final class RepetitionMetricsTests: XCTestCase {
    // MARK: distinct-n

    func testDistinctOfOneSampleByHand() {
        let s: [[Int32]] = [[1, 2, 3, 1, 2]]
        // unigrams 1 2 3 1 2: 3 of 5; bigrams 12 23 31 12: 3 of 4; trigrams 123 231 312: 3 of 3;
        // 4-grams 1231 2312: 2 of 2.
        let d = (1...4).map { RepetitionMetrics.distinct(s, n: $0) }
        XCTAssertEqual(d.map(\.ngrams), [5, 4, 3, 2])
        XCTAssertEqual(d.map(\.distinctNgrams), [3, 3, 3, 2])
        XCTAssertEqual(d.map(\.pooled), [0.6, 0.75, 1, 1])
        // One sample: the per-sample mean is its own ratio.
        XCTAssertEqual(d.map(\.perSampleMean), d.map(\.pooled))
    }

    func testDistinctPoolsNgramsAcrossSamples() {
        // Two identical samples: each is all-distinct on its own, but pooled half the n-grams repeat.
        let twice: [[Int32]] = [[1, 2], [1, 2]]
        let d1 = RepetitionMetrics.distinct(twice, n: 1), d2 = RepetitionMetrics.distinct(twice, n: 2)
        XCTAssertEqual(d1.pooled, 0.5)
        XCTAssertEqual(d1.perSampleMean, 1)
        XCTAssertEqual(d2.pooled, 0.5)
        XCTAssertEqual(d2.perSampleMean, 1)
        // An n-gram shared between samples counts once in the pooled set.
        let shared = RepetitionMetrics.distinct([[1, 2, 3], [3, 4]], n: 1)
        XCTAssertEqual(shared.distinctNgrams, 4)
        XCTAssertEqual(shared.ngrams, 5)
    }

    func testDistinctEdgeCases() {
        // No samples, an empty sample, samples shorter than n: no n-grams, no ratio.
        for samples in [[], [[]], [[1, 2, 3]]] as [[[Int32]]] {
            let d = RepetitionMetrics.distinct(samples, n: 4)
            XCTAssertEqual(d.ngrams, 0)
            XCTAssertNil(d.pooled)
            XCTAssertNil(d.perSampleMean)
        }
        // A sample shorter than n adds nothing and is left out of the per-sample mean.
        let mixed: [[Int32]] = [[1, 1], [5]]
        let d2 = RepetitionMetrics.distinct(mixed, n: 2)
        XCTAssertEqual(d2.ngrams, 1)
        XCTAssertEqual(d2.pooled, 1)
        XCTAssertEqual(d2.perSampleMean, 1)
        let d1 = RepetitionMetrics.distinct(mixed, n: 1)
        XCTAssertEqual(d1.pooled!, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(d1.perSampleMean!, (0.5 + 1) / 2, accuracy: 1e-12)
        // A sample of exactly n tokens has one n-gram.
        XCTAssertEqual(RepetitionMetrics.distinct([[7, 7, 7]], n: 3).pooled, 1)
        // A constant sample: one distinct n-gram however long.
        XCTAssertEqual(RepetitionMetrics.distinct([[Int32](repeating: 4, count: 11)], n: 2).pooled, 0.1)
    }

    // MARK: loops

    func testExactlyThreeRepeatsIsALoopAndTwoIsNot() {
        XCTAssertEqual(RepetitionMetrics.loop([9, 1, 2, 3, 1, 2, 3, 1, 2, 3]), Loop(period: 3, repeats: 3, length: 9))
        XCTAssertNil(RepetitionMetrics.loop([9, 1, 2, 3, 1, 2, 3]))
        XCTAssertEqual(RepetitionMetrics.loop([5, 5, 5]), Loop(period: 1, repeats: 3, length: 3))
        XCTAssertNil(RepetitionMetrics.loop([4, 5, 5]))
        // Asking for two repeats finds the shorter one.
        XCTAssertEqual(RepetitionMetrics.loop([9, 1, 2, 3, 1, 2, 3], minRepeats: 2), Loop(period: 3, repeats: 2, length: 6))
    }

    func testNestedPeriodsReportTheSmallest() {
        // "abab" three times is period 2 (six repeats), not period 4.
        let abab: [Int32] = Array([[1, 2, 1, 2], [1, 2, 1, 2], [1, 2, 1, 2]].joined())
        XCTAssertEqual(RepetitionMetrics.loop(abab), Loop(period: 2, repeats: 6, length: 12))
        // A run of one token is period 1, whatever else divides its length.
        XCTAssertEqual(RepetitionMetrics.loop([Int32](repeating: 3, count: 6)), Loop(period: 1, repeats: 6, length: 6))
        // "aab" × 3 has no shorter period.
        XCTAssertEqual(RepetitionMetrics.loop([1, 1, 2, 1, 1, 2, 1, 1, 2]), Loop(period: 3, repeats: 3, length: 9))
    }

    func testLoopAlignsToTheEndAndCountsAPartialCycle() {
        // Ends mid-cycle: the cycle ending the sample is "2 3 1"; ten tokens have period 3.
        XCTAssertEqual(RepetitionMetrics.loop([1, 2, 3, 1, 2, 3, 1, 2, 3, 1]), Loop(period: 3, repeats: 3, length: 10))
        // A partial cycle before the whole ones is covered too.
        XCTAssertEqual(RepetitionMetrics.loop([7, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]), Loop(period: 3, repeats: 3, length: 10))
        // A cycle earlier in the sample does not count: only the tail matters.
        XCTAssertNil(RepetitionMetrics.loop([1, 2, 1, 2, 1, 2, 1, 2, 8, 9]))
    }

    func testPeriod32IsALoopAnd33IsNot() {
        func cycled(_ period: Int, repeats: Int) -> [Int32] {
            [99] + (0..<(period * repeats)).map { Int32($0 % period) }
        }
        XCTAssertEqual(RepetitionMetrics.loop(cycled(32, repeats: 3)), Loop(period: 32, repeats: 3, length: 96))
        XCTAssertNil(RepetitionMetrics.loop(cycled(33, repeats: 3)))
        XCTAssertNil(RepetitionMetrics.loop(cycled(33, repeats: 5)))
        XCTAssertEqual(RepetitionMetrics.loop(cycled(33, repeats: 3), maxPeriod: 33), Loop(period: 33, repeats: 3, length: 99))
        XCTAssertEqual(RepetitionMetrics.maxLoopPeriod, 32)
        XCTAssertEqual(RepetitionMetrics.minLoopRepeats, 3)
    }

    func testShortSequencesHaveNoLoop() {
        XCTAssertNil(RepetitionMetrics.loop([]))
        XCTAssertNil(RepetitionMetrics.loop([1]))
        XCTAssertNil(RepetitionMetrics.loop([1, 1]))
        XCTAssertNil(RepetitionMetrics.loop([1, 2, 3, 4, 5, 6, 7, 8]))
    }

    // MARK: report

    func testReportCountsTheShareOfLoopingSamples() {
        let samples: [[Int32]] = [[1, 2, 1, 2, 1, 2], [1, 2, 3], [], [4, 4, 4, 4]]
        let r = RepetitionMetrics.report(samples)
        XCTAssertEqual(r.samples, 4)
        XCTAssertEqual(r.loops, [Loop(period: 2, repeats: 3, length: 6), nil, nil, Loop(period: 1, repeats: 4, length: 4)])
        XCTAssertEqual(r.loopCount, 2)
        XCTAssertEqual(r.loopShare, 0.5)
        XCTAssertEqual(r.distinct.map(\.n), [1, 2, 3, 4])
        XCTAssertEqual(r.distinct[0], RepetitionMetrics.distinct(samples, n: 1))

        let none = RepetitionMetrics.report([])
        XCTAssertEqual(none.samples, 0)
        XCTAssertNil(none.loopShare)
        XCTAssertTrue(none.distinct.allSatisfy { $0.pooled == nil })
    }

    /// Absent values are written as null so that every object has the same keys.
    func testJSONWritesNulls() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(RepetitionMetrics.report([[1]], orders: 1...2)), as: UTF8.self)
        XCTAssertTrue(json.contains(#""loops":[null]"#), json)
        XCTAssertTrue(json.contains(#"{"distinct_ngrams":0,"n":2,"ngrams":0,"per_sample_mean":null,"pooled":null}"#), json)
        XCTAssertTrue(json.contains(#""loop_share":0"#), json)
        let back = try JSONDecoder().decode(RepetitionReport.self, from: Data(json.utf8))
        XCTAssertEqual(back, RepetitionMetrics.report([[1]], orders: 1...2))
    }
}
