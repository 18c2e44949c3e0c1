import XCTest
import MyopiaTestSupport
import MyopiaKernels
import Myopia

/// Training: determinism across thread counts, exact resume, the schedule, a non-finite stop, and
/// convergence on real English text.
final class TrainingTests: XCTestCase {
    func smallConfig(steps: Int) -> TrainConfig {
        var c = TrainConfig()
        c.layers = 2; c.heads = 2; c.dModel = 32; c.seqLen = 16; c.batch = 4
        c.steps = steps; c.warmup = 3; c.lr = 3e-3; c.minLR = 3e-4
        c.evalEvery = 5; c.evalWindows = 4; c.logEvery = 2; c.checkpointEvery = 5
        return c
    }

    var text: TokenDataset {
        TokenDataset.split(ByteTokenizer().encode(String(repeating: "to be or not to be, that is the question. ", count: 40)),
                           validationFraction: 0.2, source: "inline")
    }

    /// On every GEMM kernel the CPU has; the AVX2 and AVX-512 kernels sum alike, so their runs agree
    /// bit for bit too.
    func testSameBitsForAnyThreadCount() throws {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        var byKernel: [GEMM.Kernel: [Float]] = [:]
        try forEachKernel { kernel in
            var results: [[Float]] = []
            for threads in [1, 2, 3] {
                Parallel.threadCount = threads
                let trainer = try Trainer(config: smallConfig(steps: 6), dataset: text, out: try temporaryDirectory(self))
                try trainer.run()
                results.append(trainer.model.params.weightArray())
            }
            XCTAssertTrue(results[0] == results[1], "\(kernel): 1 and 2 threads differ")
            XCTAssertTrue(results[0] == results[2], "\(kernel): 1 and 3 threads differ")
            byKernel[kernel] = results[0]
        }
        if let avx2 = byKernel[.avx2], let avx512 = byKernel[.avx512] {
            XCTAssertTrue(avx2.map(\.bitPattern) == avx512.map(\.bitPattern), "avx2 and avx512 runs differ")
        }
    }

    func testResumeContinuesBitForBit() throws {
        let straight = try temporaryDirectory(self)
        let full = try Trainer(config: smallConfig(steps: 10), dataset: text, out: straight)
        try full.run()

        // Interrupted after step 7 (not a multiple of checkpoint_every), then resumed.
        let split = try temporaryDirectory(self)
        let part = try Trainer(config: smallConfig(steps: 10), dataset: text, out: split)
        try part.run(stoppingAfter: 7)
        let resumed = try Trainer(config: smallConfig(steps: 10), dataset: text, out: split, resume: true)
        XCTAssertEqual(resumed.step, 7)
        try resumed.run()

        XCTAssertTrue(resumed.model.params.weightArray() == full.model.params.weightArray(), "weights differ after resume")
        let a = try String(contentsOf: straight.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let b = try String(contentsOf: split.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        // The log windows around the stop differ (a window restarts at the resume), so compare the
        // lines both runs logged at the same steps.
        let steps = { (s: String) in s.split(separator: "\n").map { try! JSONDecoder().decode(TrainMetrics.self, from: Data($0.utf8)) } }
        let sa = steps(a), sb = steps(b)
        XCTAssertEqual(sa.last?.step, 10)
        XCTAssertEqual(sa.last?.valLoss, sb.last?.valLoss)
        XCTAssertEqual(sa.filter { $0.step <= 6 }.map(\.trainLoss), sb.filter { $0.step <= 6 }.map(\.trainLoss))
    }

    /// Logging the gradient split measures without touching the run: same weights, and the split
    /// in metrics.jsonl at exactly those steps, for every parameter group.
    func testGradientSplitIsLoggedAndChangesNothing() throws {
        let plain = try Trainer(config: smallConfig(steps: 6), dataset: text, out: try temporaryDirectory(self))
        try plain.run()
        var config = smallConfig(steps: 6)
        config.logGradientSplit = 3
        config.flow = .myopic
        let dir = try temporaryDirectory(self)
        var myopicPlain = smallConfig(steps: 6)
        myopicPlain.flow = .myopic
        let reference = try Trainer(config: myopicPlain, dataset: text, out: try temporaryDirectory(self))
        try reference.run()
        let logged = try Trainer(config: config, dataset: text, out: dir)
        try logged.run()
        XCTAssertTrue(logged.model.params.weightArray() == reference.model.params.weightArray())
        XCTAssertFalse(logged.model.params.weightArray() == plain.model.params.weightArray(), "myopic and vanilla runs should differ")
        let lines = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        let metrics = try lines.map { try JSONDecoder().decode(TrainMetrics.self, from: Data($0.utf8)) }
        XCTAssertEqual(metrics.filter { $0.gradientSplit != nil }.map(\.step), [3, 6])
        let split = try XCTUnwrap(metrics.last?.gradientSplit)
        XCTAssertEqual(Set(split.keys), ["embeddings", "h.0.attn", "h.0.mlp", "h.1.attn", "h.1.mlp", "final"])
        XCTAssertEqual(split["final"]?.futureNorm, 0)
        XCTAssertGreaterThan(split["embeddings"]?.futureNorm ?? 0, 0)
    }

    func testResumeRefusesAChangedConfig() throws {
        let dir = try temporaryDirectory(self)
        try Trainer(config: smallConfig(steps: 5), dataset: text, out: dir).run()
        var other = smallConfig(steps: 10)
        other.dModel = 64
        XCTAssertThrowsError(try Trainer(config: other, dataset: text, out: dir, resume: true)) {
            guard case .resumeMismatch = $0 as? TrainingError else { return XCTFail("\($0)") }
        }
    }

    func testNonFiniteLossStopsWithTheLastCheckpoint() throws {
        let dir = try temporaryDirectory(self)
        var config = smallConfig(steps: 20)
        config.lr = 1e30
        config.minLR = 1e29
        config.warmup = 0
        config.clip = 1e30
        XCTAssertThrowsError(try Trainer(config: config, dataset: text, out: dir).run()) {
            guard case .nonFinite(let step, _, _) = $0 as? TrainingError else { return XCTFail("\($0)") }
            XCTAssertGreaterThan(step, 1)
        }
    }

    func testScheduleWarmsUpThenDecaysToMin() {
        let s = LearningRateSchedule(maxLR: 1, minLR: 0.1, warmupSteps: 4, totalSteps: 20)
        XCTAssertEqual(s.rate(at: 0), 0.25)
        XCTAssertEqual(s.rate(at: 3), 1)
        XCTAssertEqual(s.rate(at: 4), 1)
        XCTAssertEqual(s.rate(at: 12), 0.55, accuracy: 1e-12)
        XCTAssertGreaterThan(s.rate(at: 19), 0.1)
        XCTAssertEqual(s.rate(at: 20), 0.1, accuracy: 1e-12)
    }

    /// `checkpoint_at` keeps its steps for good beside the two rolling checkpoints, and a kept
    /// checkpoint is the model at that step: a run stopped there ends with the same weights.
    func testScheduledCheckpointsAreKeptAndAreTheModelAtThatStep() throws {
        XCTAssertEqual(try TrainConfig.scheduledSteps("log:5", steps: 10_000), [1, 10, 100, 1000, 10_000])
        XCTAssertEqual(try TrainConfig.scheduledSteps("log:4", steps: 8), [1, 2, 4, 8])
        XCTAssertEqual(try TrainConfig.scheduledSteps("3, 7", steps: 8), [3, 7])
        for bad in ["log:1", "log:x", "0,3", "3,,4", "9"] {
            assertInputError(try TrainConfig.scheduledSteps(bad, steps: 8), "invalidValue", field: "checkpoint_at")
        }
        var config = smallConfig(steps: 12)
        config.checkpointAt = "log:4"          // steps 1, 2, 5, 12 (12^(1/3) = 2.29, 12^(2/3) = 5.24)
        let dir = try temporaryDirectory(self)
        let trainer = try Trainer(config: config, dataset: text, out: dir)
        try trainer.run()
        // Rolling: the newest two of 5, 10, 12; scheduled: 1, 2, 5, 12.
        XCTAssertEqual(try Checkpoint.checkpointSteps(in: dir), [1, 2, 5, 10, 12])
        let short = try Trainer(config: smallConfig(steps: 12), dataset: text, out: try temporaryDirectory(self))
        try short.run(stoppingAfter: 2)
        let kept = try Checkpoint.loadModel(from: dir.appendingPathComponent("checkpoint-2"))
        XCTAssertTrue(kept.params.weightArray() == short.model.params.weightArray())
    }

    func testConfigFileKeysMatchTheFlags() throws {
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("c.json")
        try Data(#"{"d-model": 48, "heads": 4, "seq_len": 20, "lr": 0.002}"#.utf8).write(to: url)
        let c = try TrainConfig.load(from: url)
        XCTAssertEqual(c.dModel, 48)
        XCTAssertEqual(c.seqLen, 20)
        XCTAssertEqual(c.layers, TrainConfig().layers)
        try Data(#"{"d_modle": 48}"#.utf8).write(to: url)
        XCTAssertThrowsError(try TrainConfig.load(from: url)) { XCTAssertEqual(($0 as? InputError)?.field, "d_modle") }
        try Data(#"{"heads": 5, "d_model": 48}"#.utf8).write(to: url)
        XCTAssertThrowsError(try TrainConfig.load(from: url)) { XCTAssertEqual(($0 as? InputError)?.field, "heads") }
    }

}
