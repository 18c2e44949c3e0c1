import XCTest
import MyopiaTestSupport
import Myopia

/// The token-task generators: seeded, and every answer equal to one recomputed here from the inputs alone.
final class TokenTaskTests: XCTestCase {
    func testRecallIsSeeded() throws {
        let task = try DelayedRecallTask()
        var a = SeededGenerator(seed: 7), b = SeededGenerator(seed: 7), c = SeededGenerator(seed: 8)
        let ea = task.batch(5, rng: &a), eb = task.batch(5, rng: &b), ec = task.batch(5, rng: &c)
        XCTAssertEqual(ea.inputs, eb.inputs)
        XCTAssertEqual(ea.targets, eb.targets)
        XCTAssertNotEqual(ea.inputs, ec.inputs)
        XCTAssertEqual(ea.inputs.count, 5 * task.seqLen)
    }

    func testRecallAnswersAreTheNameAfterTheMarker() throws {
        for (t, names, fillers, cues) in [(32, 16, 16, 3), (64, 8, 4, 5), (8, 2, 1, 1)] {
            let task = try DelayedRecallTask(seqLen: t, names: names, fillers: fillers, cues: cues)
            XCTAssertEqual(task.vocabSize, names + fillers + 2)
            var rng = SeededGenerator(seed: 1)
            for _ in 0..<200 {
                let e = task.episode(&rng)
                XCTAssertEqual(e.inputs.count, t)
                XCTAssertEqual(e.targets.count, t)
                // Independently: the one marker sits in the first quarter and is followed by a name.
                let markers = e.inputs.indices.filter { e.inputs[$0] == Int32(fillers + names) }
                XCTAssertEqual(markers.count, 1)
                let p = try XCTUnwrap(markers.first)
                XCTAssertLessThan(p + 1, max(2, t / 4))
                let name = e.inputs[p + 1]
                XCTAssertTrue((fillers..<(fillers + names)).contains(Int(name)))
                let cuePositions = e.inputs.indices.filter { e.inputs[$0] == Int32(fillers + names + 1) }
                XCTAssertEqual(cuePositions.count, cues)
                XCTAssertEqual(e.answerPositions, cuePositions)
                for q in cuePositions {
                    XCTAssertGreaterThanOrEqual(q, t / 2)
                    XCTAssertEqual(e.targets[q], name)
                    if q + 1 < t { XCTAssertEqual(e.inputs[q + 1], name) }   // the answer is in the stream too
                }
                // Everything else is a filler (or the name copies after cues).
                for i in 0..<t where i != p && !cuePositions.contains(i) {
                    XCTAssertTrue(Int(e.inputs[i]) < fillers || e.inputs[i] == name, "position \(i)")
                }
            }
        }
    }

    func testTableSumIsSeeded() throws {
        let task = try TableSumTask()
        XCTAssertEqual(task.table, try TableSumTask().table)
        XCTAssertNotEqual(task.table, try TableSumTask(tableSeed: 2).table)
        var a = SeededGenerator(seed: 3), b = SeededGenerator(seed: 3)
        XCTAssertEqual(task.batch(4, rng: &a).inputs, task.batch(4, rng: &b).inputs)
    }

    func testTableSumAnswersAreTheSumOverPairs() throws {
        for (digits, pairs, segments, balanced) in [(8, 8, 4, false), (4, 3, 2, true), (6, 1, 5, false)] {
            let task = try TableSumTask(digits: digits, pairs: pairs, segments: segments, tableSeed: 9, balanced: balanced)
            XCTAssertEqual(task.seqLen, segments * (pairs + 3) - 1)
            XCTAssertEqual(task.vocabSize, digits + 2 + pairs)
            var rng = SeededGenerator(seed: 2)
            var counts = [Int](repeating: 0, count: pairs + 1)
            for _ in 0..<300 {
                let e = task.episode(&rng)
                // Independently: split the inputs at '=' and sum the table over adjacent digits.
                var digitsSoFar: [Int] = [], answers: [Int] = []
                for (i, token) in e.inputs.enumerated() {
                    if Int(token) < digits {
                        digitsSoFar.append(Int(token))
                        XCTAssertEqual(e.targets[i], -1)
                    } else if Int(token) == digits {
                        XCTAssertEqual(digitsSoFar.count, pairs + 1)
                        let sum = (0..<pairs).map { task.table[digitsSoFar[$0]][digitsSoFar[$0 + 1]] }.reduce(0, +)
                        XCTAssertEqual(e.targets[i], Int32(digits + 1 + sum))
                        if i + 1 < e.inputs.count { XCTAssertEqual(e.inputs[i + 1], e.targets[i]) }
                        answers.append(sum)
                        counts[sum] += 1
                        digitsSoFar = []
                    } else {
                        XCTAssertEqual(e.targets[i], -1)   // the answer token itself asks nothing
                    }
                }
                XCTAssertEqual(answers.count, segments)
                XCTAssertEqual(e.answerPositions.count, segments)
            }
            // The exact answer distribution matches the observed frequencies.
            let p = task.answerDistribution
            XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-12)
            let n = Double(counts.reduce(0, +))
            for k in 0...pairs {
                let sd = (p[k] * (1 - p[k]) / n).squareRoot()
                XCTAssertEqual(Double(counts[k]) / n, p[k], accuracy: 5 * sd + 1e-9, "P(sum = \(k))")
            }
        }
    }

    /// A balanced table has m/2 ones in every row and column, which makes the terms fair coins:
    /// the answer is exactly Binomial(W, ½).
    func testBalancedTableGivesABinomialSum() throws {
        for (m, seed) in [(8, UInt64(1)), (4, 5), (10, 3)] {
            let task = try TableSumTask(digits: m, pairs: 6, tableSeed: seed, balanced: true)
            for row in task.table { XCTAssertEqual(row.reduce(0, +), m / 2) }
            for b in 0..<m { XCTAssertEqual(task.table.map { $0[b] }.reduce(0, +), m / 2) }
            let binomial = [1.0, 6, 15, 20, 15, 6, 1].map { $0 / 64 }
            for (p, q) in zip(task.answerDistribution, binomial) { XCTAssertEqual(p, q, accuracy: 1e-12) }
            XCTAssertEqual(task.summary.majorityAccuracy, 20.0 / 64, accuracy: 1e-12)
        }
        // Shuffled away from the circulant it starts from.
        let g = TableSumTask.balancedTable(8, seed: 1)
        XCTAssertNotEqual(g, (0..<8).map { a in (0..<8).map { b in (b - a + 8) % 8 < 4 ? 1 : 0 } })
    }

    func testBadSettingsAreRejected() {
        XCTAssertThrowsError(try DelayedRecallTask(seqLen: 16, cues: 5))
        XCTAssertThrowsError(try DelayedRecallTask(names: 1))
        XCTAssertThrowsError(try TableSumTask(digits: 5))
        XCTAssertThrowsError(try TableSumTask(pairs: 0))
    }
}
