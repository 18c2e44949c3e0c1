import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

final class RunsTests: XCTestCase {
    /// A gap study (two flows, one seed) lists as one gap entry and two training runs, with the
    /// figures its files hold.
    func testListsGapAndTrainingRuns() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-runs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let out = root.appendingPathComponent("gap")
        var config = TrainConfig()
        config.data = "synthetic-text"
        config.layers = 1; config.heads = 2; config.dModel = 16; config.seqLen = 16; config.batch = 4
        config.steps = 6; config.warmup = 1; config.evalEvery = 3; config.evalWindows = 2; config.logEvery = 1
        config.checkpointEvery = 6
        let text = SyntheticText.generate(bytes: 8_000, seed: 2)
        let dataset = TokenDataset.split(ByteTokenizer().encode(text), validationFraction: 0.1, source: "synthetic-text")
        let summary = try Gap.run(Gap.Options(config: config, seeds: [4], flows: [.vanilla, .myopic], out: out), dataset: dataset)

        let entries = try Runs.list(root)
        XCTAssertEqual(entries.map(\.path), ["gap", "gap/myopic-seed4", "gap/vanilla-seed4"])
        let gap = entries[0]
        XCTAssertEqual(gap.kind, .gap)
        XCTAssertEqual(gap.gap, summary.gap?.valLoss.mean)
        XCTAssertEqual(gap.valLoss, summary.flow("vanilla")?.valLoss.mean)
        XCTAssertEqual(gap.seeds, 1)
        let vanilla = entries[2]
        XCTAssertEqual(vanilla.kind, .train)
        XCTAssertEqual(vanilla.flow, "vanilla")
        XCTAssertEqual(vanilla.steps, 6)
        XCTAssertEqual(vanilla.valLoss, summary.flow("vanilla")?.valLoss.perSeed.first)
        XCTAssertNotNil(vanilla.trainLoss)
        let table = Runs.format(entries)
        XCTAssertTrue(table.contains("gap/myopic-seed4"), table)
        XCTAssertEqual(table.split(separator: "\n").count, 4)

        XCTAssertThrowsError(try Runs.list(root.appendingPathComponent("missing")))
    }
}
