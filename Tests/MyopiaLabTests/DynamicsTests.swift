import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

/// `myopia dynamics`: at each kept checkpoint, the numbers `horizon`, `probe` and `eval` give on
/// that checkpoint by hand, and the gap against the myopic twin `gap` trained beside it.
final class DynamicsTests: XCTestCase {
    func testEachCheckpointMeasuresAsTheAnalysesDoByHand() throws {
        let out = try temporaryDirectory(self)
        let textFile = out.appendingPathComponent("text.txt")
        try SyntheticText.generate(bytes: 12_000, seed: 1).write(to: textFile, atomically: true, encoding: .utf8)
        var c = TrainConfig()
        c.data = textFile.path
        c.layers = 1; c.heads = 2; c.dModel = 16; c.seqLen = 16; c.batch = 4
        c.steps = 12; c.warmup = 2; c.lr = 3e-3; c.minLR = 3e-4
        c.evalEvery = 6; c.evalWindows = 4; c.logEvery = 1; c.checkpointEvery = 12; c.logGradientSplit = 4
        c.checkpointAt = "log:3"               // steps 1, 3 (√12 = 3.46) and 12
        let dataset = try DataSource.load(textFile.path, validationFraction: c.validationFraction)
        _ = try Gap.run(Gap.Options(config: c, seeds: [1], flows: [.vanilla, .myopic], out: out), dataset: dataset)
        let run = Gap.runFolder(out, flow: .vanilla, seed: 1), twin = Gap.runFolder(out, flow: .myopic, seed: 1)
        XCTAssertEqual(Dynamics.twin(of: run), twin)
        XCTAssertNil(Dynamics.twin(of: twin))

        var options = Dynamics.Options()
        options.evalWindows = 6; options.horizonSequences = 3; options.probePositions = 256; options.probeTop = 16; options.batch = 4
        let table = try Dynamics.run(run, options: options)
        XCTAssertEqual(table.points.map(\.step), [1, 3, 12])
        XCTAssertEqual(table.twin, twin.path)
        for point in table.points {
            let model = try Checkpoint.loadModel(from: run.appendingPathComponent("checkpoint-\(point.step)"))
            let horizon = Horizon.compute(model, tokens: dataset.validation, seqLen: 16, sequences: 3, batch: 4)
            XCTAssertEqual(point.horizonMeanOffset, horizon.meanOffset, "step \(point.step)")
            let layers = [0, 1]
            let data = TokenProbes.extract(model, tokens: dataset.validation, seqLen: 16, layers: layers, offsets: [1],
                                           positions: 256, batch: 4)
            let probe = TokenProbes.run(data, layers: layers, offsets: [1], top: 16)
            XCTAssertEqual(point.probeGain, probe.loss.map { probe.currentTokenLoss[0] - $0[0] }, "step \(point.step)")
            let eval = Evaluation.run(model, tokens: dataset.validation, seqLen: 16, batch: 4, maxWindows: 6)
            XCTAssertEqual(point.valLoss, eval.loss)
            let myopic = try Checkpoint.loadModel(from: twin.appendingPathComponent("checkpoint-\(point.step)"))
            let other = Evaluation.run(myopic, tokens: dataset.validation, seqLen: 16, batch: 4, maxWindows: 6)
            XCTAssertEqual(point.gap, other.loss - eval.loss)
            XCTAssertEqual(point.gapPositionLoss, zip(other.positionLoss, eval.positionLoss).map { $0 - $1 })
        }
        // The untrained-ish first checkpoint and the last differ: the curve moves.
        XCTAssertNotEqual(table.points.first?.valLoss, table.points.last?.valLoss)
        // The gradient split the run logged every 4 steps.
        XCTAssertEqual(table.gradientSplit.map(\.step), [4, 8, 12])
        XCTAssertTrue(table.gradientSplit.allSatisfy { $0.futureShare > 0 && $0.futureShare.isFinite })
    }
}
