import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

final class BonusTests: XCTestCase {
    func tinyConfig(family: ModelConfig.Family = .gpt2) -> TrainConfig {
        var c = TrainConfig()
        c.data = "synthetic-text"
        c.family = family
        c.layers = 2; c.heads = 2; c.dModel = 16; c.seqLen = 16; c.batch = 4
        if family == .llama { c.heads = 4; c.kvHeads = 2 }
        c.steps = 10; c.warmup = 2; c.lr = 3e-3; c.minLR = 3e-4
        c.evalEvery = 5; c.evalWindows = 4; c.logEvery = 1; c.checkpointEvery = 10
        return c
    }

    func firstTrainLoss(_ run: URL) throws -> Double {
        let text = try String(contentsOf: run.appendingPathComponent(Trainer.metricsFile), encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").first)
        return try JSONDecoder().decode(TrainMetrics.self, from: Data(line.utf8)).trainLoss
    }

    /// A small reference, then two seeds of both arms, for GPT-2 and Llama (GQA): bonus.json has every
    /// part, the reference's zero-step local-myopic loss is its own loss exactly, the bonus is the
    /// paired difference, the two arms of one seed see the same first batch from the same weights,
    /// and the reference is not changed.
    func testBonusWritesSummaryWithPairedSeeds() throws {
        for family in [ModelConfig.Family.gpt2, .llama] {
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-bonus-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: root) }
            let text = SyntheticText.generate(bytes: 12_000, seed: 1)
            let dataset = TokenDataset.split(ByteTokenizer().encode(text), validationFraction: 0.1, source: "synthetic-text")
            var referenceConfig = tinyConfig(family: family)
            referenceConfig.steps = 30
            let trainer = try Trainer(config: referenceConfig, dataset: dataset, out: root.appendingPathComponent("reference"))
            try trainer.run()
            let reference = try Checkpoint.loadModel(from: try XCTUnwrap(Checkpoint.latestCheckpoint(in: root.appendingPathComponent("reference"))))
            let before = reference.params.weightArray()

            var fineTune = tinyConfig()   // its shape is replaced by the reference's
            fineTune.lr = 1e-3
            let out = root.appendingPathComponent("bonus")
            let summary = try Bonus.run(Bonus.Options(config: fineTune, seeds: [1, 2], out: out), reference: reference,
                                        referenceSource: "reference", dataset: dataset)
            XCTAssertTrue(reference.params.weightArray() == before, "\(family): the reference changed")

            let decoder = JSONDecoder()
            decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            let saved = try decoder.decode(Bonus.Summary.self, from: Data(contentsOf: out.appendingPathComponent(Bonus.summaryFile)))
            XCTAssertEqual(saved, summary)
            let raw = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(Bonus.summaryFile))) as? [String: Any])
            for key in ["reference", "flows", "bonus", "settings", "seeds", "position_buckets", "validation_tokens"] {
                XCTAssertNotNil(raw[key], key)
            }
            XCTAssertEqual(summary.settings.family, family)
            XCTAssertEqual(summary.settings.heads, referenceConfig.heads)

            // Zero fine-tuning steps: the same past and the same present.
            XCTAssertEqual(summary.reference.localMyopicValLoss, summary.reference.valLoss, "\(family)")
            let t = 16, windows = dataset.validation.count / (t + 1)
            XCTAssertEqual(summary.validationWindows, windows)
            XCTAssertEqual(summary.flows.map(\.flow), ["vanilla", "local-myopic"])
            let control = try XCTUnwrap(summary.flow("vanilla")), local = try XCTUnwrap(summary.flow("local-myopic"))
            XCTAssertEqual(summary.bonus.flow, "vanilla")
            XCTAssertEqual(summary.bonus.baseline, "local-myopic")
            for s in 0..<2 {
                XCTAssertEqual(summary.bonus.valLoss.perSeed[s], control.valLoss.perSeed[s] - local.valLoss.perSeed[s], accuracy: 1e-12)
                XCTAssertEqual(local.positionLossPerSeed[s].reduce(0, +) / Double(t), local.valLoss.perSeed[s], accuracy: 1e-9)
            }
            for j in 0..<t { XCTAssertEqual(summary.bonus.positionLoss[j], control.positionLoss[j] - local.positionLoss[j], accuracy: 1e-12) }
            XCTAssertEqual(summary.bonus.bucketLoss.count, summary.positionBuckets.count)
            XCTAssertNotEqual(summary.bonus.valLoss.perSeed[0], 0)
            // Fine-tuning helps both arms on this easy text.
            XCTAssertLessThan(control.valLoss.mean, summary.reference.valLoss)
            XCTAssertLessThan(local.valLoss.mean, summary.reference.valLoss)

            for f in summary.flows {
                for seed in [1, 2] {
                    let run = out.appendingPathComponent("\(f.flow)-seed\(seed)")
                    XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoint-10/model.safetensors").path))
                    XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("eval.json").path))
                }
            }
            // The report has a bonus section.
            let html = try Report.build(runs: [out])
            XCTAssertTrue(html.contains("The local myopia bonus") && html.contains("vanilla − local-myopic"))

            // One seed: the same first batch from the same weights; the first step's loss is the
            // reference's on it under both arms (local-myopic = the reference at zero steps).
            let c1 = try firstTrainLoss(out.appendingPathComponent("vanilla-seed1"))
            XCTAssertEqual(try firstTrainLoss(out.appendingPathComponent("local-myopic-seed1")), c1)
            XCTAssertNotEqual(try firstTrainLoss(out.appendingPathComponent("vanilla-seed2")), c1)
        }
    }

    /// Under shards both arms train sharded (the local-myopic one running the frozen reference per
    /// shard) and every score is sharded: on 2 and 3 ranks simulated by threads, bonus.json and each
    /// arm's final weights are one process's, bit for bit (the timings aside).
    func testBonusUnderShardsIsTheSameOnOneTwoAndThreeRanks() throws {
        let text = SyntheticText.generate(bytes: 6_000, seed: 2)
        let dataset = TokenDataset.split(ByteTokenizer().encode(text), validationFraction: 0.1, source: "synthetic-text")
        var config = tinyConfig()
        config.steps = 4; config.evalEvery = 4; config.checkpointEvery = 4; config.logEvery = 2
        config.shards = 4; config.logGradientSplit = 2
        let reference = Transformer(config: config.modelConfig(vocabSize: 256))
        reference.initialize(seed: 8)
        func untimed(_ s: Bonus.Summary) -> Bonus.Summary {
            var s = s
            s.seconds = 0
            for f in s.flows.indices { s.flows[f].seconds = [] }
            return s
        }
        var summaries: [Bonus.Summary] = [], weights: [[Data]] = []
        for n in 1...3 {
            let out = try temporaryDirectory(self)
            let all = ThreadGroup.run(ranks: n) { group in
                try! Bonus.run(Bonus.Options(config: config, seeds: [3], out: out), reference: reference,
                               referenceSource: "reference", dataset: dataset, group: group)
            }
            for r in 1..<n { XCTAssertEqual(untimed(all[r]), untimed(all[0]), "\(n) ranks: rank \(r)'s summary") }
            summaries.append(untimed(all[0]))
            weights.append(try ["vanilla-seed3", "local-myopic-seed3"].map {
                try Data(contentsOf: out.appendingPathComponent("\($0)/checkpoint-4/model.safetensors"))
            })
            let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(Bonus.summaryFile))) as? [String: Any]
            XCTAssertNotNil(saved?["bonus"], "\(n) ranks: rank 0 wrote bonus.json")
        }
        for n in 2...3 {
            XCTAssertEqual(summaries[n - 1], summaries[0], "\(n) ranks")
            XCTAssertEqual(weights[n - 1], weights[0], "\(n) ranks: the arms' final weights")
        }
        XCTAssertNotEqual(weights[0][0], weights[0][1], "the two arms trained alike")
        XCTAssertEqual(summaries[0].reference.localMyopicValLoss, summaries[0].reference.valLoss)
        XCTAssertEqual(summaries[0].settings.shards, 4)

        // Fewer shards than ranks: refused on every rank, naming `shards`, before any work.
        config.shards = 1
        let out = try temporaryDirectory(self).appendingPathComponent("refused")
        let errors = ThreadGroup.run(ranks: 2) { group -> String in
            do {
                _ = try Bonus.run(Bonus.Options(config: config, seeds: [3], out: out), reference: reference,
                                  referenceSource: "reference", dataset: dataset, group: group)
                return "no error"
            } catch { return "\(error)" }
        }
        for e in errors { XCTAssertTrue(e.contains("shards") && e.contains("at least the 2 ranks"), e) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "the refused job wrote its folder")
    }
}
