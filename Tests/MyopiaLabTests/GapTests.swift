import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

final class GapTests: XCTestCase {
    func tinyConfig() -> TrainConfig {
        var c = TrainConfig()
        c.data = "synthetic-text"
        c.layers = 1; c.heads = 2; c.dModel = 16; c.seqLen = 16; c.batch = 4
        c.steps = 12; c.warmup = 2; c.lr = 3e-3; c.minLR = 3e-4
        c.evalEvery = 6; c.evalWindows = 4; c.logEvery = 1; c.checkpointEvery = 12
        return c
    }

    func firstTrainLoss(_ run: URL) throws -> Double {
        let text = try String(contentsOf: run.appendingPathComponent(Trainer.metricsFile), encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").first)
        return try JSONDecoder().decode(TrainMetrics.self, from: Data(line.utf8)).trainLoss
    }

    /// Two seeds, three flows on a small corpus: gap.json has every part, the gap is the difference
    /// of the flows' means (and of their per-seed values), and runs of one seed start identically.
    func testGapWritesSummaryWithPairedSeeds() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-gap-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let text = SyntheticText.generate(bytes: 12_000, seed: 1)
        let dataset = TokenDataset.split(ByteTokenizer().encode(text), validationFraction: 0.1, source: "synthetic-text")
        let options = Gap.Options(config: tinyConfig(), seeds: [1, 2], flows: [.vanilla, .myopic, .bigram], out: out)
        let summary = try Gap.run(options, dataset: dataset)

        // The file holds what the call returned.
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let saved = try decoder.decode(Gap.Summary.self, from: Data(contentsOf: out.appendingPathComponent(Gap.summaryFile)))
        XCTAssertEqual(saved, summary)
        let raw = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(Gap.summaryFile))) as? [String: Any])
        for key in ["flows", "gap", "differences", "settings", "seeds", "position_buckets", "validation_tokens"] {
            XCTAssertNotNil(raw[key], key)
        }

        let t = 16, windows = dataset.validation.count / (t + 1)
        XCTAssertEqual(summary.validationWindows, windows)
        XCTAssertEqual(summary.validationTokens, windows * t)
        XCTAssertEqual(summary.flows.map(\.flow), ["vanilla", "myopic", "bigram"])
        XCTAssertEqual(summary.positionBuckets, [[0, 0], [1, 1], [2, 3], [4, 7], [8, 15]])
        for f in summary.flows {
            XCTAssertEqual(f.valLoss.perSeed.count, 2)
            XCTAssertEqual(f.positionLoss.count, t)
            XCTAssertEqual(f.positionLossPerSeed.count, 2)
            XCTAssertEqual(f.bucketLoss.count, 5)
            let (a, b) = (f.valLoss.perSeed[0], f.valLoss.perSeed[1])
            XCTAssertEqual(f.valLoss.mean, (a + b) / 2, accuracy: 1e-12)
            XCTAssertEqual(try XCTUnwrap(f.valLoss.std), abs(a - b) / 2.0.squareRoot(), accuracy: 1e-12)
            // The validation loss is the mean of the per-position losses (every window has T predictions).
            for s in 0..<2 {
                XCTAssertEqual(f.positionLossPerSeed[s].reduce(0, +) / Double(t), f.valLoss.perSeed[s], accuracy: 1e-9)
            }
            XCTAssertTrue(f.valLoss.mean < Foundation.log(256.0))
            for seed in [1, 2] {
                let run = out.appendingPathComponent("\(f.flow)-seed\(seed)")
                XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoint-12/model.safetensors").path))
                XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("eval.json").path))
            }
        }
        let vanilla = try XCTUnwrap(summary.flow("vanilla")), myopic = try XCTUnwrap(summary.flow("myopic"))
        let gap = try XCTUnwrap(summary.gap)
        XCTAssertEqual(gap.flow, "myopic")
        XCTAssertEqual(gap.baseline, "vanilla")
        XCTAssertEqual(gap.valLoss.mean, myopic.valLoss.mean - vanilla.valLoss.mean, accuracy: 1e-12)
        for s in 0..<2 {
            XCTAssertEqual(gap.valLoss.perSeed[s], myopic.valLoss.perSeed[s] - vanilla.valLoss.perSeed[s], accuracy: 1e-12)
        }
        for j in 0..<t { XCTAssertEqual(gap.positionLoss[j], myopic.positionLoss[j] - vanilla.positionLoss[j], accuracy: 1e-12) }
        XCTAssertEqual(summary.differences.map(\.flow), ["myopic", "bigram"])
        // Myopic training changes the weights: after 12 steps the two flows differ.
        XCTAssertNotEqual(gap.valLoss.perSeed[0], 0)

        // Same seed ⇒ same initial weights and first batch: the first step's loss agrees across
        // vanilla and myopic (whose forward passes are the same), and differs between seeds.
        let v1 = try firstTrainLoss(out.appendingPathComponent("vanilla-seed1"))
        XCTAssertEqual(try firstTrainLoss(out.appendingPathComponent("myopic-seed1")), v1)
        XCTAssertNotEqual(try firstTrainLoss(out.appendingPathComponent("vanilla-seed2")), v1)
    }

    /// --resume re-scores finished runs without training them again.
    func testResumeReusesFinishedRuns() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-gap-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let text = SyntheticText.generate(bytes: 8_000, seed: 2)
        let dataset = TokenDataset.split(ByteTokenizer().encode(text), validationFraction: 0.1, source: "synthetic-text")
        let first = try Gap.run(Gap.Options(config: tinyConfig(), seeds: [3], out: out), dataset: dataset)
        XCTAssertNil(first.flows[0].valLoss.std)   // one seed: no spread
        var trained = 0
        let again = try Gap.run(Gap.Options(config: tinyConfig(), seeds: [3], out: out, resume: true), dataset: dataset,
                                onTrainLog: { _ in trained += 1 })
        XCTAssertEqual(trained, 0)
        XCTAssertEqual(again.flows.map(\.valLoss), first.flows.map(\.valLoss))
        XCTAssertEqual(again.gap?.valLoss.mean, first.gap?.valLoss.mean)
    }

    func testPositionBuckets() {
        XCTAssertEqual(Gap.positionBuckets(seqLen: 1), [[0, 0]])
        XCTAssertEqual(Gap.positionBuckets(seqLen: 6), [[0, 0], [1, 1], [2, 3], [4, 5]])
        let b = Gap.positionBuckets(seqLen: 128)
        XCTAssertEqual(b.count, 8)
        XCTAssertEqual(b.last, [64, 127])
    }
}
