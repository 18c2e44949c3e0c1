import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

/// The synthetic pre-caching experiment: the separation it exists to show, and its run folder.
final class SineExperimentTests: XCTestCase {
    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-sine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// A small model on a short window (W = 3, f = 3, p = 1), a few seconds per run: vanilla learns
    /// to cache sin(3x) and goes far below the no-pre-caching floor; myopic stays near it. This fails
    /// if myopic training leaks the later positions' gradient into earlier activations, or if vanilla
    /// training cannot use it.
    static func small(_ flow: GradientFlow) -> SineExperiment.Options {
        var o = SineExperiment.Options()
        o.task = SineTask(p: 1, frequency: 3, window: 3)
        o.flow = flow
        o.layers = 2; o.heads = 2; o.dModel = 32
        o.seqLen = 16; o.batch = 32
        o.steps = 800; o.warmup = 50; o.lr = 3e-3; o.minLR = 3e-4
        o.validationSequences = 256
        o.evalEvery = 400; o.logEvery = 100
        return o
    }

    func testVanillaPreCachesAndMyopicStaysAtTheFloor() throws {
        let vanilla = try SineExperiment.run(Self.small(.vanilla), out: try temporaryDirectory())
        let myopic = try SineExperiment.run(Self.small(.myopic), out: try temporaryDirectory())
        // Same validation data, so the same baselines.
        XCTAssertEqual(vanilla.floorLoss, myopic.floorLoss)
        XCTAssertEqual(vanilla.floorLoss, vanilla.predictZeroLoss, "with p = 1 the floor is predict-zero")
        XCTAssertLessThan(vanilla.ratio, 0.3, "vanilla should learn to pre-cache: \(vanilla.valLoss) vs floor \(vanilla.floorLoss)")
        XCTAssertGreaterThan(myopic.ratio, 0.85, "myopic should stay near the floor: \(myopic.valLoss) vs floor \(myopic.floorLoss)")
    }

    /// The run folder holds what it promises, and a run is a function of its options.
    func testRunFolderAndDeterminism() throws {
        var options = Self.small(.vanilla)
        options.steps = 30; options.logEvery = 10; options.evalEvery = 20; options.warmup = 5
        options.validationSequences = 32
        let out = try temporaryDirectory()
        let first = try SineExperiment.run(options, out: out)
        let second = try SineExperiment.run(options, out: try temporaryDirectory())
        XCTAssertEqual(first.valLoss, second.valLoss)
        XCTAssertEqual(first.trainLoss, second.trainLoss)
        XCTAssertEqual(first.positionLoss, second.positionLoss)
        XCTAssertEqual(first.steps, 30)
        XCTAssertEqual(first.positionLoss.count, 16)
        XCTAssertEqual(first.ratio, first.valLoss / first.floorLoss)
        XCTAssertFalse(first.stoppedByTimeLimit)

        let fm = FileManager.default
        let lines = try String(contentsOf: out.appendingPathComponent(SineExperiment.metricsFile), encoding: .utf8)
            .split(separator: "\n")
        let metrics = try lines.map { try JSONDecoder().decode(SineExperiment.Metrics.self, from: Data($0.utf8)) }
        XCTAssertEqual(metrics.map(\.step), [10, 20, 30])
        XCTAssertEqual(metrics.map { $0.valLoss != nil }, [false, true, true])
        XCTAssertEqual(metrics.last?.valLoss, first.valLoss)
        // The same lines read as a token run's metrics (what `myopia report` draws).
        let asTraining = try lines.map { try JSONDecoder().decode(TrainMetrics.self, from: Data($0.utf8)) }
        XCTAssertEqual(asTraining.map(\.trainLoss), metrics.map(\.trainLoss))
        XCTAssertTrue(metrics.allSatisfy { $0.tokensPerSecond > 0 })
        let results = try JSONDecoder().decode(SineExperiment.Result.self,
                                               from: Data(contentsOf: out.appendingPathComponent(SineExperiment.resultsFile)))
        XCTAssertEqual(results, first)
        let saved = try JSONDecoder().decode(SineExperiment.Options.self,
                                             from: Data(contentsOf: out.appendingPathComponent(SineExperiment.runConfigFile)))
        XCTAssertEqual(saved, options)

        // The checkpoint scores the same on the validation data.
        let model = try Checkpoint.loadModel(from: URL(fileURLWithPath: first.checkpoint))
        XCTAssertEqual(model.config.inputFeatures, 2)
        var rng = SeededGenerator(seed: options.validationSeed)
        let validation = options.task.makeBatch(batch: options.validationSequences, seqLen: options.seqLen, rng: &rng)
        XCTAssertEqual(SineExperiment.evaluate(model, on: validation, batch: 7).loss, first.valLoss, accuracy: 1e-6)

        // A rerun into the same folder replaces the old run.
        options.steps = 20
        _ = try SineExperiment.run(options, out: out)
        XCTAssertFalse(fm.fileExists(atPath: out.appendingPathComponent("checkpoint-30").path))
        XCTAssertTrue(fm.fileExists(atPath: out.appendingPathComponent("checkpoint-20/model.safetensors").path))
        let rerun = try String(contentsOf: out.appendingPathComponent(SineExperiment.metricsFile), encoding: .utf8)
        XCTAssertEqual(rerun.split(separator: "\n").count, 2)
    }

    func testTimeLimitStopsEarly() throws {
        var options = Self.small(.myopic)
        options.steps = 1_000_000
        options.timeLimit = 0.5
        options.validationSequences = 16
        let result = try SineExperiment.run(options, out: try temporaryDirectory())
        XCTAssertTrue(result.stoppedByTimeLimit)
        XCTAssertGreaterThan(result.steps, 0)
        XCTAssertLessThan(result.steps, options.steps)
        XCTAssertEqual(result.stepsPlanned, options.steps)
        XCTAssertGreaterThanOrEqual(result.seconds, 0.5)
        XCTAssertTrue(result.valLoss.isFinite)
    }

    func testOptionsAreValidated() {
        var options = SineExperiment.Options()
        options.task.p = 2
        XCTAssertThrowsError(try options.validate())
        options = SineExperiment.Options()
        options.heads = 3
        XCTAssertThrowsError(try options.validate())
        options = SineExperiment.Options()
        options.timeLimit = 0
        XCTAssertThrowsError(try options.validate())
        XCTAssertEqual(SineExperiment.Options().defaultOut, "runs/sine-vanilla-p1-f3")
        options = SineExperiment.Options()
        options.flow = .myopic
        options.task = SineTask(p: 0.3, frequency: 10)
        XCTAssertEqual(options.defaultOut, "runs/sine-myopic-p0.3-f10")
    }
}
