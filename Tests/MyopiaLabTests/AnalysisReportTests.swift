import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

/// What the analysis commands leave in a run folder (RunFolder), how `myopia runs` sums it up and
/// how the report draws it: probe, lens, sine-probe, eval and generation sections, and runs of one
/// kind drawn together.
final class AnalysisReportTests: XCTestCase {
    func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-analysis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Two layers × two offsets; layer 1 beats the current token by 0.25 nats at k = 1.
    func probeTable(shift: Double = 0) -> ProbeTable {
        ProbeTable(layers: [0, 1], offsets: [0, 1], loss: [[2.5, 3.3], [2.25 - shift, 3.0 - shift]], accuracy: [[0.4, 0.3], [0.45, 0.35]],
                   trainLoss: [[2.4, 3.2], [2.2, 2.9]], epochs: [[3, 2], [4, 4]], unigramLoss: [3.6, 3.6], unigramAccuracy: [0.2, 0.2],
                   currentTokenLoss: [2.5, 3.25], currentTokenAccuracy: [0.41, 0.33], currentTokenSmoothing: [1, 2], classes: 17, top: 16,
                   coverage: 0.8, trainPositions: 800, heldOutPositions: 200, counts: [200, 200], settings: ProbeSettings(), seconds: 1)
    }

    func lensTable() -> LensTable {
        LensTable(layers: [0, 1, 2], offsets: [0, 1], loss: [[9.5, 9.75], [5.5, 8], [3.125, 7.5]], accuracy: [[0.01, 0.0], [0.1, 0.02], [0.3, 0.05]],
                  counts: [100, 99], unigramLoss: [4, 4], modelLayers: 2, windows: 4, seqLen: 25)
    }

    func sineTable() -> SineProbeTable {
        SineProbeTable(layers: [0, 1, 2], lags: [0, 1, 2], r2: [[0.003, 0, 0], [0.885, 0.056, 0.052], [0.952, 0.308, 0.227]],
                       p: 1, frequency: 3, window: 10, seqLen: 64, trainSequences: 819, heldOutSequences: 205, ridge: 1e-4, seed: 1)
    }

    /// Nine tokens ending in three repeats of "xy", then (sample 2) the same ending in end-of-text.
    func generation() -> GenerationStudy.Report {
        let texts = ["a", "b", "<c>", "x", "y", "x", "y", "x", "y"]
        func sample(_ i: Int, eos: Bool) -> GenerationStudy.Sample {
            let tokens = (0..<Int32(texts.count + (eos ? 1 : 0))).map { $0 }
            return GenerationStudy.Sample(index: i, seed: UInt64(1 + i), text: texts.joined(), tokens: tokens,
                                          stop_reason: eos ? .endOfText : .maxTokens, loss: ContinuationScore(loss: 1.5, tokens: tokens.count),
                                          loop: .init(eos ? nil : Loop(period: 2, repeats: 3, length: 6)), token_texts: texts + (eos ? [""] : []))
        }
        let options = GenerationStudy.Options(greedy: false, temperature: 0.8, top_k: .init(40), top_p: .init(nil), seed: 1, samples: 2,
                                              max_tokens: 9, eos_token: .init(nil), stop_at_context: false)
        let metrics = GenerationStudy.Metrics(samples: 2, tokens: 19, distinct: RepetitionMetrics.report([[0, 1, 2, 3, 4, 3, 4, 3, 4]]).distinct,
                                              loop_count: 1, loop_share: .init(0.5), free_running: ContinuationScore(loss: 1.5, tokens: 19),
                                              teacher_forced: .init(ContinuationScore(loss: 2.75, tokens: 9)), reference: .init("ref.txt"))
        return GenerationStudy.Report(model: "runs/x/checkpoint-10", prompt: "Q:", prompt_tokens: [81, 58], context: 64, options: options,
                                      samples: [sample(0, eos: false), sample(1, eos: true)], metrics: metrics)
    }

    func record(_ command: String) -> AnalysisRecord {
        AnalysisRecord(command: command, arguments: [command, "--out", "x"], model: "runs/x/checkpoint-10", data: "corpus.txt",
                       settings: ["seq_len": "25"], seconds: 2)
    }

    func testResultsAndRecordsRoundTripAndBadFilesAreTypedErrors() throws {
        let dir = try folder()
        try RunFolder.write(probeTable(), as: ProbeTable.fileName, record: record("probe"), to: dir)
        try RunFolder.write(lensTable(), as: LensTable.fileName, record: record("lens"), to: dir)
        let records = try RunFolder.records(in: dir)
        XCTAssertEqual(Set(records.keys), ["probe.json", "lens.json"])
        XCTAssertEqual(records["lens.json"], record("lens").withCreated(records["lens.json"]!.created))
        XCTAssertEqual(try RunFolder.load(ProbeTable.self, ProbeTable.fileName, in: dir)?.loss, probeTable().loss)
        XCTAssertNil(try RunFolder.load(LensTable.self, "absent.json", in: dir))

        try Data(#"{"layers": [0], "offsets": "zero"}"#.utf8).write(to: dir.appendingPathComponent(ProbeTable.fileName))
        XCTAssertThrowsError(try Report.build(runs: [dir])) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(dir.appendingPathComponent(ProbeTable.fileName).path) && text.contains("offsets"), text)
        }
        XCTAssertNil(Runs.figures(dir)[ProbeTable.fileName], "an unreadable result has no figure")
    }

    func testKeyFiguresForMyopiaRuns() throws {
        let dir = try folder()
        try RunFolder.write(probeTable(), as: ProbeTable.fileName, record: record("probe"), to: dir)
        try RunFolder.write(lensTable(), as: LensTable.fileName, record: record("lens"), to: dir)
        try RunFolder.write(sineTable(), as: SineProbeTable.fileName, record: record("probe"), to: dir)
        try RunFolder.write(generation(), as: GenerationStudy.fileName, record: record("generate"), to: dir)
        let figures = Runs.figures(dir)
        XCTAssertEqual(figures["probe.json"], "k=1 gain over the current token +0.250 nats (layer 1)")
        XCTAssertEqual(figures["lens.json"], "layer 2 at k=0: 3.125 nats")
        XCTAssertEqual(figures["sine_probe.json"], "R² of sin(f·x_n) 0.952 (layer 2)")
        XCTAssertEqual(figures["generation.json"], "1/2 in a loop, distinct-4 0.833")
        let entry = try XCTUnwrap(Runs.list(dir).first)
        XCTAssertEqual(entry.kind, .analysis)
        XCTAssertEqual(entry.data, "corpus.txt")
        XCTAssertTrue(Runs.format([entry]).contains("probe: k=1 gain over the current token +0.250 nats (layer 1)"))
    }

    func testLoopTokensAreMarkedRepeatByRepeat() {
        let g = generation()
        // Repeats counted back from the end: the last one is "loopa".
        XCTAssertEqual(Report.sampleText(g.samples[0]),
                       "ab&lt;c&gt;<mark class=\"loopa\">xy</mark><mark class=\"loopb\">xy</mark><mark class=\"loopa\">xy</mark>")
        XCTAssertEqual(Report.sampleText(g.samples[1]), "ab&lt;c&gt;xyxyxy", "no loop, and the end-of-text token is not text")
    }

    func testSectionsOfEveryAnalysisAndTheirComparison() throws {
        let root = try folder()
        let a = root.appendingPathComponent("vanilla"), b = root.appendingPathComponent("myopic")
        for (dir, shift) in [(a, 0.0), (b, -0.5)] {
            try RunFolder.write(probeTable(shift: shift), as: ProbeTable.fileName, record: record("probe"), to: dir)
            try RunFolder.write(lensTable(), as: LensTable.fileName, record: record("lens"), to: dir)
            try RunFolder.write(sineTable(), as: SineProbeTable.fileName, record: record("probe"), to: dir)
            try RunFolder.write(generation(), as: GenerationStudy.fileName, record: record("generate"), to: dir)
            let eval = try JSONDecoder().decode(EvaluationResult.self, from: Data(#"{"loss": 2, "tokens": 8, "windows": 2, "position_loss": [3, 2, 1.5, 1.5]}"#.utf8))
            try RunFolder.write(eval, as: EvaluationResult.fileName, record: record("eval"), to: dir)
        }
        // The parent folder holds no run of its own: it stands for the two inside it.
        let html = try Report.build(runs: [root])
        for text in ["Comparison of 2 runs", "Future-token probes — vanilla", "Logit lens — myopic", "Sine-task regression probes",
                     "Generation samples", "Evaluation — vanilla", "how probe.json was made: myopia probe",
                     "Best layer's probe gain over the current token", "Lens loss of the next token by layer",
                     "R² of sin(f·x_n) at lag 0 by layer", "Eval loss by position", "<td>2.7500</td>", "0.952", "3.250", "35.0"] {
            XCTAssertTrue(html.contains(text), "missing: \(text)")
        }
        // Per run: probe 2 heatmaps + gain chart, lens 2 heatmaps, sine 1 heatmap, eval 1 chart = 7;
        // the comparison: eval, probe gain, lens and sine lines = 4.
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 2 * 7 + 4)
        // Probe cells: (2 layers + 2 baselines) × 2 offsets × 2 heatmaps; lens (3 + unigram) × 2 + 3 × 2; sine 3 × 3.
        XCTAssertEqual(html.components(separatedBy: "class=\"cell\"").count - 1, 2 * (16 + 14 + 9))
        XCTAssertEqual(html.components(separatedBy: "<mark class=\"loop").count - 1, 2 * 3)
        XCTAssertFalse(html.contains("no data"))
        XCTAssertFalse(html.contains("<script"))
    }
}

extension AnalysisRecord {
    func withCreated(_ created: String) -> AnalysisRecord {
        var r = self
        r.created = created
        return r
    }
}
