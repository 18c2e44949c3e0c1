import XCTest
import MyopiaLab

/// The rules reproduce applies, on hand-made tables.
final class VerdictRulesTests: XCTestCase {
    func interval(_ values: [Double]) -> MeasuredValue { MeasuredValue(GamesExperiment.Interval(values)) }

    func testSameSignRows() {
        // The paper's gap (myopic − vanilla) is +0.12.
        let sameSign = VerdictRules.sameSign(paper: 0.12, measured: interval([0.05, 0.06, 0.07]))
        XCTAssertEqual(sameSign.verdict, .agrees, sameSign.detail)
        let opposite = VerdictRules.sameSign(paper: 0.12, measured: interval([-0.05, -0.06, -0.07]))
        XCTAssertEqual(opposite.verdict, .disagrees, opposite.detail)
        let straddles = VerdictRules.sameSign(paper: 0.12, measured: interval([-0.05, 0.02, 0.06]))
        XCTAssertEqual(straddles.verdict, .inconclusive, straddles.detail)
        let oneSeed = VerdictRules.sameSign(paper: 0.12, measured: interval([0.3]))
        XCTAssertEqual(oneSeed.verdict, .inconclusive, "one seed has no interval")
        XCTAssertTrue(oneSeed.detail.contains("one seed"))
    }

    func testWithinAFactor() {
        XCTAssertEqual(VerdictRules.withinFactor(3, paper: 0.12, measured: MeasuredValue(mean: 0.05)).verdict, .agrees)
        XCTAssertEqual(VerdictRules.withinFactor(3, paper: 0.12, measured: MeasuredValue(mean: 0.03)).verdict, .disagrees)
        XCTAssertEqual(VerdictRules.withinFactor(3, paper: 0.12, measured: MeasuredValue(mean: 0.37)).verdict, .disagrees)
        XCTAssertEqual(VerdictRules.withinFactor(3, paper: 0.12, measured: MeasuredValue(mean: -0.12)).verdict, .disagrees)
    }

    func testCrossoverCurves() {
        // Myopic − vanilla by position over three seeds: ahead (< 0) early, behind (> 0) later.
        let crossing = [[-0.10, -0.12, -0.11], [-0.05, -0.02, -0.04], [0.0, 0.01, -0.01], [0.06, 0.05, 0.07], [0.09, 0.08, 0.1]]
        let present = VerdictRules.crossover(crossing.map(interval))
        XCTAssertEqual(present.verdict, .agrees, present.detail)
        XCTAssertTrue(present.detail.contains("ahead from position 0, behind from position 3"), present.detail)
        // Behind everywhere: no crossover.
        let behind = [[0.02, 0.03, 0.025], [0.05, 0.04, 0.06], [0.08, 0.09, 0.07]]
        XCTAssertEqual(VerdictRules.crossover(behind.map(interval)).verdict, .disagrees)
        // Ahead everywhere: no crossover either.
        let ahead = [[-0.02, -0.03, -0.025], [-0.05, -0.04, -0.06]]
        XCTAssertEqual(VerdictRules.crossover(ahead.map(interval)).verdict, .disagrees)
        // Every interval reaches 0: cannot tell.
        let flat = [[-0.01, 0.01, 0.0], [0.02, -0.02, 0.01]]
        XCTAssertEqual(VerdictRules.crossover(flat.map(interval)).verdict, .inconclusive)
    }

    func testARowIsItsWorstRule() {
        XCTAssertEqual(Verdict.combined([.agrees, .agrees]), .agrees)
        XCTAssertEqual(Verdict.combined([.agrees, .inconclusive]), .inconclusive)
        XCTAssertEqual(Verdict.combined([.inconclusive, .disagrees, .agrees]), .disagrees)
        XCTAssertEqual(Verdict.combined([]), .notMeasured)
    }
}

/// The paper's figures come from the data file, each with its scale and source.
final class PaperFiguresTests: XCTestCase {
    func testTheEmbeddedFiguresReadWithScalesAndSources() throws {
        let figures = try PaperFigures.wu2024()
        XCTAssertEqual(figures.paper.arxiv, "2404.00859")
        XCTAssertEqual(figures.figure("text.myopia_gap")?.value, 0.12)
        XCTAssertEqual(figures.figure("text.bigram_loss")?.value, 5.33)
        XCTAssertEqual(Set(figures.figures.map(\.id)).count, figures.figures.count, "ids are unique")
        for f in figures.figures {
            XCTAssertFalse(f.source.isEmpty, f.id)
            XCTAssertGreaterThan(f.scale.parameters, 0, f.id)
        }
    }
}
