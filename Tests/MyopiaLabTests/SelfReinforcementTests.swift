import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
import MyopiaLab

/// `myopia loops`: sentences cut as documented, and TP / IP equal to probabilities computed one
/// prefix at a time with a full forward pass.
final class SelfReinforcementTests: XCTestCase {
    func testSentencesAreCutAtSentenceEndsAndBlankLines() {
        let text = "Hello world. How are\nyou?\nFine!  Yes...\n\nA title\n\nNo end. 3.5 stays whole.e.g. too"
        XCTAssertEqual(SelfReinforcement.sentences(text),
                       ["Hello world.", "How are you?", "Fine!", "Yes...", "A title", "No end.", "3.5 stays whole.e.g.", "too"])
        XCTAssertEqual(SelfReinforcement.sentences(" \n\n "), [])
    }

    /// p(token i | tokens before it) from the logits of a forward pass over that prefix alone.
    func probability(_ model: Transformer, _ tokens: [Int32], _ i: Int) -> Double {
        let cache = model.makeCache(batch: 1, seqLen: i)
        model.forward(tokens: Array(tokens.prefix(i)), targets: nil, batch: 1, seqLen: i, cache: cache)
        let v = model.config.vocabSize
        let row = cache.logitsArray()[((i - 1) * v)...].map(Double.init)
        let m = row.max()!
        let z = row.reduce(0) { $0 + Foundation.exp($1 - m) }
        return Foundation.exp(row[row.startIndex + Int(tokens[i])] - m) / z
    }

    func testTPAndIPEqualProbabilitiesOfEachPrefix() {
        let model = Transformer(config: ModelConfig(vocabSize: 40, maxPositions: 32, dModel: 16, nLayers: 2, nHeads: 2))
        model.initialize(seed: 5)
        var rng = SeededGenerator(seed: 9)
        for e in model.params.entries where !e.name.contains("ln_") { rng.fillNormal(model.params.weights + e.offset, count: e.count, std: 0.5) }
        let units: [[Int32]] = [[3, 17, 5, 9], [4, 4, 20], [7, 1, 30, 2, 11]]
        let repeats = 3
        let report = SelfReinforcement.compute(model, units: units, maxRepeats: repeats)
        XCTAssertEqual(report.sentences, 3)
        XCTAssertEqual(report.meanTokens, 4, accuracy: 1e-12)
        XCTAssertEqual(report.points.map(\.n), [1, 2, 3])
        for point in report.points {
            var tps: [Double] = [], ips: [Double] = []
            for unit in units {
                let text = (0...repeats).flatMap { _ in unit }, u = unit.count
                let now = (1..<u).map { probability(model, text, point.n * u + $0) }
                let first = (1..<u).map { probability(model, text, $0) }
                tps.append(now.reduce(0, +) / Double(u - 1))
                ips.append(Double(zip(now, first).filter { $0 > $1 }.count) / Double(u - 1))
            }
            let tp = tps.reduce(0, +) / 3
            XCTAssertEqual(point.tp, tp, accuracy: 1e-6)
            XCTAssertEqual(point.ip, ips.reduce(0, +) / 3, accuracy: 1e-9)
            let sd = (tps.reduce(0) { $0 + ($1 - tp) * ($1 - tp) } / 2).squareRoot()
            XCTAssertEqual(point.tpInterval[0], tp - 1.96 * sd / 3.0.squareRoot(), accuracy: 1e-6)
            XCTAssertEqual(point.tpInterval[1], tp + 1.96 * sd / 3.0.squareRoot(), accuracy: 1e-6)
        }
    }

    func testUnitsSkipSentencesThatDoNotFit() {
        let text = "ab. abcdefghij. abcd. a."
        // Byte tokens of " " + sentence: 4, 12, 6, 3; with 3 repeats (4 copies) in 24 positions: ≤ 6 tokens fit.
        let units = SelfReinforcement.units(text, tokenizer: ByteTokenizer(), maxRepeats: 3, maxPositions: 24, count: 10)
        XCTAssertEqual(units.map(\.count), [4, 6, 3])
        XCTAssertEqual(SelfReinforcement.units(text, tokenizer: ByteTokenizer(), maxRepeats: 3, maxPositions: 24, count: 2).count, 2)
    }

    /// `measure` on a split of byte tokens scores the sentences that fit; `SeedSummary` averages
    /// seeds at each n; `sideBySide` puts flows in columns.
    func testMeasureOnTokensAndSummaryOverSeeds() throws {
        let model = Transformer(config: ModelConfig(vocabSize: 260, maxPositions: 64, dModel: 16, nLayers: 1, nHeads: 2))
        model.initialize(seed: 3)
        let tok = ByteTokenizer()
        let text = "One two. Three four five! Six?\n\nSeven eight nine ten eleven twelve thirteen fourteen."
        let report = try XCTUnwrap(SelfReinforcement.measure(model, tokens: tok.encode(text), tokenizer: tok, maxRepeats: 3, sentences: 10))
        // " One two." (9 bytes) and " Six?" (5) fit 4 times in 64 positions; the others do not.
        XCTAssertEqual(report, SelfReinforcement.compute(model, units: [tok.encode(" One two."), tok.encode(" Six?")], maxRepeats: 3))
        XCTAssertEqual(report.sentences, 2)
        XCTAssertNil(SelfReinforcement.measure(model, tokens: tok.encode("Far too long a sentence for sixty-four positions."),
                                               tokenizer: tok, maxRepeats: 3))
        var other = report
        other.points = report.points.map { p in
            var p = p
            p.tp += 0.1
            p.ip = 1 - p.ip
            return p
        }
        let summary = try XCTUnwrap(SelfReinforcement.SeedSummary([report, other]))
        XCTAssertEqual(summary.n, [1, 2, 3])
        XCTAssertEqual(summary.perSeed, [report, other])
        for i in 0..<3 {
            XCTAssertEqual(summary.tp[i], report.points[i].tp + 0.05, accuracy: 1e-12)
            XCTAssertEqual(summary.ip[i], 0.5, accuracy: 1e-12)
        }
        XCTAssertNil(SelfReinforcement.SeedSummary([]))
        let table = SelfReinforcement.sideBySide([("vanilla", summary), ("myopic", nil)])
        XCTAssertEqual(table.count, 5)
        XCTAssertTrue(table[1].hasPrefix("n   vanilla"), table[1])
        XCTAssertTrue(table[2].hasPrefix("1   " + String(format: "%.3f / %.2f", summary.tp[0], summary.ip[0])), table[2])
        XCTAssertEqual(SelfReinforcement.sideBySide([("myopic", nil)]), [])
    }
}
