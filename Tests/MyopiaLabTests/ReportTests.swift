import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

final class ReportTests: XCTestCase {
    /// A gap study with a horizon table beside it: the report has every section, every chart has
    /// drawn data, and it needs nothing from the network.
    func testReportFromAGapStudyAndAHorizonTable() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-report-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var config = TrainConfig()
        config.data = "synthetic-text"
        config.layers = 1; config.heads = 2; config.dModel = 16; config.seqLen = 16; config.batch = 4
        config.steps = 8; config.warmup = 1; config.evalEvery = 4; config.evalWindows = 2; config.logEvery = 2
        config.checkpointEvery = 8; config.logGradientSplit = 4
        let text = SyntheticText.generate(bytes: 8_000, seed: 3)
        let dataset = TokenDataset.split(ByteTokenizer().encode(text), validationFraction: 0.1, source: "synthetic-text")
        let out = root.appendingPathComponent("gap")
        _ = try Gap.run(Gap.Options(config: config, seeds: [1, 2], flows: [.vanilla, .myopic, .bigram], out: out), dataset: dataset)
        let model = try Checkpoint.loadModel(from: XCTUnwrap(Checkpoint.latestCheckpoint(in: out.appendingPathComponent("vanilla-seed1"))))
        let table = Horizon.compute(model, tokens: dataset.validation, seqLen: 16, maxOffset: 6, sequences: 4)
        try JSONEncoder().encode(table).write(to: out.appendingPathComponent("horizon-vanilla.json"))

        let html = try Report.build(runs: [out, out.appendingPathComponent("vanilla-seed1")], title: "test report")
        for section in ["The myopia gap", "Validation loss during training", "Loss by position in the window",
                        "The gap by position", "Gradient horizon", "Mean gradient norm", "Share of each layer",
                        "Training run", "Loss during training", "g_future", "run_config.json", "Evaluation — vanilla-seed1"] {
            XCTAssertTrue(html.contains(section), "missing: \(section)")
        }
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 8)   // 3 gap, 2 horizon, 2 training run, 1 its eval.json
        XCTAssertGreaterThanOrEqual(html.components(separatedBy: "<polyline").count - 1, 10)
        XCTAssertEqual(html.components(separatedBy: "class=\"cell\"").count - 1, 2 * 7)
        XCTAssertFalse(html.contains("no data"))
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http"))

        // A damaged horizon table is an error naming the file, not a section quietly left out.
        let damaged = out.appendingPathComponent("horizon-damaged.json")
        try Data("{\"layers\": [1, 2".utf8).write(to: damaged)
        XCTAssertThrowsError(try Report.build(runs: [out])) { error in
            XCTAssertTrue("\(error)".contains(damaged.path), "\(error)")
        }
        try FileManager.default.removeItem(at: damaged)

        // A folder with no run in it, nor in the folders inside it.
        let empty = root.appendingPathComponent("empty/inside")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try Report.build(runs: [empty.deletingLastPathComponent()])) { error in
            XCTAssertTrue("\(error)".contains(empty.deletingLastPathComponent().path), "\(error)")
        }
    }

    func testTicksAreRoundNumbersCoveringTheRange() {
        for (got, want) in zip(SVG.ticks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1.0]) { XCTAssertEqual(got, want, accuracy: 1e-12) }
        XCTAssertEqual(SVG.ticks(0, 1).count, 6)
        XCTAssertEqual(SVG.ticks(1.3, 3.1), [1.5, 2, 2.5, 3])
        XCTAssertEqual(SVG.label(0.000012), "1.2e-05")
        XCTAssertEqual(SVG.label(1200), "1200")
        XCTAssertEqual(SVG.escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;")
        // The legend takes the corner its box hides the fewest drawn points in: a rising line
        // (top right busy) leaves the top left; a line across the top leaves the bottom right.
        let plot = (x: 0.0, y: 0.0, width: 400.0, height: 200.0), box = (width: 100.0, height: 40.0)
        let rising = [[(x: 0.0, y: 200.0), (x: 400.0, y: 0.0)]]
        XCTAssertEqual(SVG.legendCorner(lines: rising, box: box, plot: plot).x, 6)
        XCTAssertEqual(SVG.legendCorner(lines: rising, box: box, plot: plot).y, 6)
        let acrossTheTop = [[(x: 0.0, y: 10.0), (x: 400.0, y: 10.0)], [(x: 0.0, y: 190.0), (x: 150.0, y: 190.0)]]
        let corner = SVG.legendCorner(lines: acrossTheTop, box: box, plot: plot)
        XCTAssertEqual(corner.x, 294)
        XCTAssertEqual(corner.y, 154)
        // An empty plot keeps the top right.
        XCTAssertEqual(SVG.legendCorner(lines: [], box: box, plot: plot).x, 294)
    }
}
