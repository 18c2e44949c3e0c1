import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

/// `myopia synthetic` as an MPI job, the ranks simulated by threads (ThreadGroup, the collectives
/// MPI gives): the token tasks under a sampling game and the sine task train the same model, bit
/// for bit, on 1, 2 and 3 ranks with the same shards, and rank 0 alone writes.
final class SyntheticDataParallelTests: XCTestCase {
    func bytes(_ url: URL) throws -> Data { try Data(contentsOf: url) }

    func testTokenTaskUnderScheduledSamplingIsTheSameOnOneTwoAndThreeRanks() throws {
        let task = try DelayedRecallTask(seqLen: 16, names: 8, fillers: 8, cues: 2)
        var s = TokenTaskExperiment.Settings()
        s.layers = 1; s.heads = 2; s.dModel = 16; s.batch = 8; s.shards = 4
        s.steps = 6; s.warmup = 1; s.evalEvery = 3; s.evalEpisodes = 16
        s.game = .scheduledSampling(rate: 0.5)
        let root = try temporaryDirectory(self)
        var curves: [[TokenTaskExperiment.CurvePoint]] = []
        for n in 1...3 {
            let out = root.appendingPathComponent("np\(n)")
            let results = ThreadGroup.run(ranks: n) { group in
                Result { try TokenTaskExperiment.run(task, flows: [.vanilla], settings: s, out: out, group: group) }
            }
            let mine = try results.map { try $0.get() }
            for r in 1..<n { XCTAssertEqual(mine[r].flows[0].curve, mine[0].flows[0].curve, "rank \(r) of \(n)") }
            curves.append(mine[0].flows[0].curve)
            let saved = try JSONDecoder().decode(TokenTaskExperiment.Results.self,
                                                 from: bytes(out.appendingPathComponent(TokenTaskExperiment.resultsFile)))
            XCTAssertEqual(saved.settings.shards, 4)
            if n > 1 {
                for file in ["model.safetensors", "config.json"] {
                    let name = "vanilla/\(file)"
                    XCTAssertEqual(try bytes(out.appendingPathComponent(name)), try bytes(root.appendingPathComponent("np1/\(name)")),
                                   "\(n) ranks: \(name) differs from one process's")
                }
            }
        }
        XCTAssertEqual(curves[0].count, 2)
        XCTAssertEqual(curves[1], curves[0])
        XCTAssertEqual(curves[2], curves[0])
        // More ranks than shards is refused, naming the setting.
        s.shards = 2
        let refused = ThreadGroup.run(ranks: 3) { group in
            Result { try TokenTaskExperiment.train(task, flow: .vanilla, settings: s, group: group) }
        }
        for r in refused {
            XCTAssertThrowsError(try r.get()) { XCTAssertTrue("\($0)".contains("shards"), "\($0)") }
        }
    }

    func sine() -> SineExperiment.Options {
        var o = SineExperiment.Options()
        o.task = SineTask(p: 1, frequency: 3, window: 3)
        o.layers = 1; o.heads = 2; o.dModel = 16
        o.seqLen = 16; o.batch = 8; o.shards = 4
        o.steps = 6; o.warmup = 1; o.validationSequences = 16
        o.evalEvery = 3; o.logEvery = 3
        return o
    }

    func testSineIsTheSameOnOneTwoAndThreeRanks() throws {
        let options = sine()
        let root = try temporaryDirectory(self)
        var reference: SineExperiment.Result?
        for n in 1...3 {
            let out = root.appendingPathComponent("np\(n)")
            let results = try ThreadGroup.run(ranks: n) { group in
                Result { try SineExperiment.run(options, out: out, group: group) }
            }.map { try $0.get() }
            for r in results {
                XCTAssertEqual(r.trainLoss, results[0].trainLoss)
                XCTAssertEqual(r.valLoss, results[0].valLoss)
                XCTAssertEqual(r.positionLoss, results[0].positionLoss)
            }
            let saved = try JSONDecoder().decode(SineExperiment.Options.self,
                                                 from: bytes(out.appendingPathComponent(SineExperiment.runConfigFile)))
            XCTAssertEqual(saved, options)
            XCTAssertTrue(String(decoding: try bytes(out.appendingPathComponent(SineExperiment.runConfigFile)), as: UTF8.self)
                .contains("\"shards\" : 4"))
            guard let reference else {
                reference = results[0]
                continue
            }
            XCTAssertEqual(results[0].trainLoss, reference.trainLoss, "\(n) ranks")
            XCTAssertEqual(results[0].valLoss, reference.valLoss, "\(n) ranks")
            XCTAssertEqual(results[0].positionLoss, reference.positionLoss, "\(n) ranks")
            let weights = "checkpoint-\(options.steps)/model.safetensors"
            XCTAssertEqual(try bytes(out.appendingPathComponent(weights)), try bytes(root.appendingPathComponent("np1/\(weights)")),
                           "\(n) ranks: the weights differ from one process's")
            XCTAssertEqual(String(decoding: try bytes(out.appendingPathComponent(SineExperiment.metricsFile)), as: UTF8.self)
                .split(separator: "\n").count, 2)
        }
        // The shards' step is the whole batch's to rounding.
        var whole = options
        whole.shards = 1
        let one = try SineExperiment.run(whole, out: root.appendingPathComponent("whole"), group: SingleProcess())
        XCTAssertEqual(one.trainLoss, reference!.trainLoss, accuracy: 1e-4 * abs(one.trainLoss))
        // A run saved before shards reads as one shard.
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: JSONEncoder().encode(whole)) as? [String: Any])
        object["shards"] = nil
        XCTAssertEqual(try JSONDecoder().decode(SineExperiment.Options.self, from: JSONSerialization.data(withJSONObject: object)), whole)
        // A time limit would stop each rank after a step of its own: refused in a job of ranks.
        var timed = options
        timed.timeLimit = 60
        for r in ThreadGroup.run(ranks: 2, { group in Result { try SineExperiment.run(timed, out: root.appendingPathComponent("timed"), group: group) } }) {
            XCTAssertThrowsError(try r.get()) { XCTAssertTrue("\($0)".contains("time_limit"), "\($0)") }
        }
    }
}
