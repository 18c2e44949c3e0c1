import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

/// The upstream table: its sign pattern on trained models (each sign judged against its
/// interval), its activations against `myopia horizon`, knobs at zero against teacher forcing,
/// the per-target path against the channel backward, and the JSON contract.
final class UpstreamTests: XCTestCase {
    let text = ByteTokenizer().encode(String(repeating: "to be or not to be, that is the question; whether 'tis nobler. ", count: 30))

    func trained(_ game: TrainingGame, flow: GradientFlow = .vanilla, steps: Int = 40) throws -> Transformer {
        var c = TrainConfig()
        c.layers = 2; c.heads = 2; c.dModel = 32; c.seqLen = 16; c.batch = 8
        c.steps = steps; c.warmup = 4; c.lr = 3e-3; c.minLR = 3e-4
        c.evalEvery = steps; c.evalWindows = 2; c.logEvery = steps; c.checkpointEvery = steps
        c.flow = flow
        c.game = game
        let trainer = try Trainer(config: c, dataset: TokenDataset.split(text, validationFraction: 0.2, source: "inline"),
                                  out: try temporaryDirectory(self))
        try trainer.run()
        return trainer.model
    }

    func table(_ model: Transformer, _ game: TrainingGame, flow: GradientFlow = .vanilla, draws: Int = 4) throws -> UpstreamTable {
        try Upstream.measure(model, tokens: text, seqLen: 16, game: game, flow: flow,
                             options: Upstream.Options(windows: 12, maxOffset: 6, draws: draws, seed: 3, batch: 4))
    }

    func cells(_ t: UpstreamTable, _ variable: String, offsets: ClosedRange<Int>? = nil) -> [UpstreamCell] {
        t.cells.filter { $0.variable == variable && (offsets?.contains($0.offset) ?? true) }
    }

    /// The issue's sign pattern, each "positive" judged by its interval's lower bound.
    func testSignPatternOnTrainedModels() throws {
        // Teacher forcing: outputs neither upstream nor optimised (exactly); activations optimised
        // for later tokens.
        let teacher = try trained(.teacherForced)
        let tf = try table(teacher, .teacherForced)
        for c in cells(tf, "outputs") {
            XCTAssertEqual([c.upstream, c.optimised], [0, 0], "\(c)")
            XCTAssertEqual(c.upstreamCI + c.optimisedCI, [0, 0, 0, 0])
        }
        XCTAssertTrue(cells(tf, "activations", offsets: 1...6).contains { $0.optimisedCI[0] > 0 })

        // Scheduled sampling: outputs upstream, not optimised.
        let ss = try table(try trained(.scheduledSampling(rate: 0.5)), .scheduledSampling(rate: 0.5))
        XCTAssertTrue(cells(ss, "outputs").contains { $0.upstreamCI[0] > 0 }, Upstream.format(ss))
        XCTAssertTrue(cells(ss, "outputs").allSatisfy { $0.optimised == 0 && $0.optimisedCI == [0, 0] })

        // The consequence game: outputs optimised.
        let game = TrainingGame.consequence(ConsequenceSettings(weight: 1, horizon: 3, positions: 4))
        let co = try table(try trained(game), game, draws: 8)
        XCTAssertTrue(cells(co, "outputs").contains { $0.optimisedCI[0] > 0 }, Upstream.format(co))

        // The myopic flow under teacher forcing: nothing optimised for later tokens, exactly.
        let myopic = try table(try trained(.teacherForced, flow: .myopic), .teacherForced, flow: .myopic)
        for c in cells(myopic, "activations", offsets: 1...6) { XCTAssertEqual(c.optimised, 0, "\(c)") }
        XCTAssertTrue(cells(myopic, "activations", offsets: 1...6).contains { $0.upstreamCI[0] > 0 },
                      "the myopic model's activations are still upstream of later losses")

        // Two prediction heads under the myopic flow: optimised for the token after next.
        let mt = try table(try trained(.multiToken(heads: 2), flow: .myopic), .multiToken(heads: 2), flow: .myopic)
        XCTAssertTrue(cells(mt, "activations", offsets: 1...1).filter { $0.layer != nil && $0.layer! < 2 }
                        .allSatisfy { $0.optimisedCI[0] > 0 }, Upstream.format(mt))
        for c in cells(mt, "activations", offsets: 2...6) { XCTAssertEqual(c.optimised, 0, "\(c)") }
    }

    /// Teacher forcing's activations row is `myopia horizon` on the same windows.
    func testActivationsUpstreamIsTheHorizon() throws {
        let model = try trained(.teacherForced, steps: 10)
        let t = try table(model, .teacherForced)
        let horizon = Horizon.compute(model, tokens: text, seqLen: 16, maxOffset: 6, sequences: 12, flow: .vanilla, batch: 4)
        for l in 0...2 {
            for k in 0...6 {
                let cell = try XCTUnwrap(t.cell("activations", layer: l, offset: k))
                XCTAssertEqual(cell.upstream, horizon.meanNorm[l][k], accuracy: 1e-9 * max(1, horizon.meanNorm[l][k]))
            }
        }
        let myopic = Horizon.compute(model, tokens: text, seqLen: 16, maxOffset: 6, sequences: 12, flow: .myopic, batch: 4)
        let m = try table(model, .teacherForced, flow: .myopic)
        XCTAssertEqual(try XCTUnwrap(m.cell("activations", layer: 1, offset: 0)).optimised, myopic.meanNorm[1][0], accuracy: 1e-9)
    }

    /// Knobs at zero give the teacher-forced table (every number computed, none looked up); a
    /// knob moved moves the cells.
    func testZeroKnobsGiveTheTeacherForcedTable() throws {
        let model = try trained(.teacherForced, steps: 10)
        let tf = try table(model, .teacherForced)
        for game in [TrainingGame.scheduledSampling(rate: 0), .consequence(ConsequenceSettings(weight: 0, horizon: 3, positions: 4)),
                     .multiToken(heads: 1)] {
            XCTAssertEqual(try table(model, game).cells, tf.cells, "\(game)")
        }
        let ss = try table(model, .scheduledSampling(rate: 0.5))
        XCTAssertNotEqual(ss.cells.filter { $0.variable == "outputs" }, tf.cells.filter { $0.variable == "outputs" })
        XCTAssertNotEqual(ss.cells.filter { $0.variable == "activations" }, tf.cells.filter { $0.variable == "activations" },
                          "the activations are measured on the mixed inputs")
        let co = try table(model, .consequence(ConsequenceSettings(weight: 0.5, horizon: 3, positions: 4)))
        XCTAssertNotEqual(co.cells.filter { $0.variable == "outputs" }, tf.cells.filter { $0.variable == "outputs" })
    }

    /// The per-target path that models with prediction heads take equals the channel backward
    /// when there is one head.
    func testPerTargetPathEqualsTheChannelBackward() throws {
        let model = try trained(.teacherForced, steps: 10)
        var up = [[Double]](repeating: [Double](repeating: 0, count: 3 * 7), count: 12), opt = up
        model.flow = .myopic
        try Upstream.perTargetActivations(model, tokens: text, seqLen: 16, windows: 12, maxOffset: 6, batch: 4,
                                          trueFlow: .vanilla, flow: .myopic, upstream: &up, optimised: &opt)
        for (flow, sums) in [(GradientFlow.vanilla, up), (.myopic, opt)] {
            let h = Horizon.compute(model, tokens: text, seqLen: 16, maxOffset: 6, sequences: 12, flow: flow, batch: 4)
            for l in 0...2 {
                for k in 0...6 {
                    let mean = sums.reduce(0) { $0 + $1[l * 7 + k] } / Double(12 * (16 - k))
                    XCTAssertEqual(mean, h.meanNorm[l][k], accuracy: 1e-4 * max(1e-3, h.meanNorm[l][k]), "\(flow) l \(l) k \(k)")
                }
            }
        }
    }

    func testJSONHasTheIssuesKeys() throws {
        let t = try table(try trained(.teacherForced, steps: 2), .scheduledSampling(rate: 0.25), draws: 1)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: JSONEncoder().encode(t)) as? [String: Any])
        XCTAssertEqual(object["game"] as? String, "scheduled-sampling")
        XCTAssertEqual(object["flow"] as? String, "vanilla")
        let cells = try XCTUnwrap(object["cells"] as? [[String: Any]])
        XCTAssertEqual(cells.count, 4 * 7 + 7 + 1)   // 3 streams and their mean, outputs, weights
        for c in cells {
            XCTAssertEqual(Set(c.keys), ["variable", "layer", "offset", "upstream", "optimised", "upstream_ci", "optimised_ci"])
        }
        XCTAssertTrue(cells.contains { $0["variable"] as? String == "outputs" && $0["layer"] is NSNull })
        XCTAssertEqual(try JSONDecoder().decode(UpstreamTable.self, from: JSONEncoder().encode(t)), t)
    }

    func testRefusesWhatItCannotMeasure() throws {
        let model = try trained(.teacherForced, steps: 1)
        XCTAssertThrowsError(try table(model, .multiToken(heads: 2))) { XCTAssertTrue("\($0)".contains("myopia_prediction_heads")) }
        XCTAssertThrowsError(try table(model, .teacherForced, flow: .localMyopic))
        XCTAssertThrowsError(try table(model, .consequence(ConsequenceSettings(horizon: 16))))
    }
}
