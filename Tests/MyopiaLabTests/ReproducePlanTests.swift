import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

/// `myopia reproduce`'s plans (one per budget, fixed, valid, read back equal from plan.json) and
/// its table: rows built from hand-made section files, each verdict by the stated rules, and the
/// rows a plan does not measure listed with the reason.
final class ReproducePlanTests: XCTestCase {
    func testEachBudgetIsAFixedValidPlan() throws {
        XCTAssertEqual(Reproduce.Tier.fitting(1800), .halfHour)
        XCTAssertEqual(Reproduce.Tier.fitting(7199), .halfHour)
        XCTAssertEqual(Reproduce.Tier.fitting(7200), .twoHours)
        XCTAssertEqual(Reproduce.Tier.fitting(30_000), .eightHours)
        XCTAssertNil(Reproduce.Tier.fitting(1799))
        var previous: Reproduce.Plan?
        for tier in Reproduce.Tier.allCases {
            let plan = Reproduce.Plan.make(tier, seed: 5)
            try plan.validate()
            XCTAssertEqual(plan, Reproduce.Plan.make(tier, seed: 5), "\(tier): the same plan every time")
            // plan.json reads back as the same plan: what a resume compares.
            let decoded = try RunFolder.decoder.decode(Reproduce.Plan.self, from: RunFolder.encoder.encode(plan))
            XCTAssertEqual(decoded, plan, "\(tier)")
            XCTAssertEqual(plan.text.tokenizer, "gpt2")
            XCTAssertEqual(plan.textSeeds, [5, 6, 7])
            XCTAssertEqual(plan.textFlows, [.vanilla, .myopic, .bigram])
            XCTAssertNotNil(plan.text.checkpointAt)
            XCTAssertEqual(Set(plan.sections.map(\.name)).count, plan.sections.count)
            XCTAssertTrue(plan.sections.allSatisfy { (plan.expectedSeconds[$0.name] ?? 0) > 0 }, "\(tier): an estimate per section")
            if tier == .quick {
                XCTAssertTrue(plan.pretrained.model.hasPrefix("text-gap/"), "--quick's stand-in is the text gap's model")
                continue
            }
            XCTAssertEqual(plan.text.seqLen, 64, "the paper's 64-token windows")
            XCTAssertEqual(plan.pretrained.model, "smollm2-135m")
            XCTAssertTrue(plan.pretrained.label.contains("Q4_1"))
            let frequencies = Set(plan.sine.map(\.options.task.frequency))
            XCTAssertEqual(frequencies, tier == .halfHour ? [3] : [3, 10])
            XCTAssertEqual(plan.sineNotRun != nil, tier == .halfHour)
            if let previous, previous.tier != .quick {
                XCTAssertGreaterThan(plan.text.steps * plan.text.dModel, previous.text.steps * previous.text.dModel, "\(tier) buys more")
                XCTAssertGreaterThan(plan.expectedSeconds.values.reduce(0, +), previous.expectedSeconds.values.reduce(0, +))
            }
            previous = plan
        }
        let quick = Reproduce.Plan.make(.quick), half = Reproduce.Plan.make(.halfHour)
        XCTAssertLessThan(quick.text.steps * quick.text.dModel * 10, half.text.steps * half.text.dModel)
    }

    func testRowsFollowTheRulesAndListWhatWasNotMeasured() throws {
        let out = try temporaryDirectory(self)
        let plan = Reproduce.Plan.make(.halfHour)
        let spec = try XCTUnwrap(plan.sine.first { $0.options.task.p == 1 })
        let folder = out.appendingPathComponent(spec.name)
        // Three seeds: the myopic model at the floor, vanilla far below, a layer-1 probe with R² 0.5.
        let r2 = { (v: Double) in [[0.1, 0.0], [v, 0.2], [0.3, 0.1]] }
        let figures = Reproduce.SineFigures(name: spec.name, p: 1, frequency: 3, seeds: [1, 2, 3], floorLoss: 1.2, predictZeroLoss: 2,
                                            vanilla: [0.2, 0.25, 0.3], myopic: [1.19, 1.2, 1.21], layers: [0, 1, 2], lags: [0, 1],
                                            vanillaR2: [r2(0.5), r2(0.52), r2(0.48)], myopicR2: [r2(0), r2(0), r2(0)])
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try LabFiles.writeJSON(figures, to: folder.appendingPathComponent(Reproduce.sineFile))
        let scale = PaperFigures.Scale(parameters: 100_000, sequences: 1000, tokens: 32_000)
        let records = [Reproduce.SectionRecord(section: spec.name, seconds: 1, skipped: nil, model: "m", data: "d", scale: scale),
                       Reproduce.SectionRecord(section: "text-gap", seconds: 0, skipped: "no tokenizer here")]
        let table = try Reproduce.Rows.table(plan: plan, records: records, out: out)
        func row(_ id: String) throws -> Reproduce.Row { try XCTUnwrap(table.rows.first { $0.id == id }, id) }

        let floor = try row("\(spec.name).myopic_loss")
        XCTAssertEqual(floor.measured ?? 0, 1.2, accuracy: 1e-12)
        XCTAssertEqual(floor.paper.value, 1.25)
        XCTAssertEqual(floor.verdict, .agrees)               // 1.2 / 1.25 within 1.5×
        XCTAssertEqual(floor.scale.ours, scale)
        XCTAssertEqual(floor.scale.paper.parameters, 1_600_000)
        let gap = try row("\(spec.name).gap")
        XCTAssertEqual(gap.rules.map(\.rule), ["same_sign", "within_factor"])
        XCTAssertEqual(gap.verdict, .agrees)                 // ≈ 0.95 > 0 beyond its interval, vs 1.25
        XCTAssertEqual(gap.interval?.count, 2)
        let probe = try row("\(spec.name).probe_r2_layer1")
        XCTAssertEqual(probe.perSeed, [0.5, 0.52, 0.48])     // layer 1, lag 0
        XCTAssertEqual(probe.verdict, .agrees)               // 0.5 vs 0.9: within 2×
        // f = 10 is not in the 30m plan; the text rows could not run: both listed with the reason.
        let f10 = try row("sine-p1-f10.gap")
        XCTAssertEqual(f10.verdict, .notMeasured)
        XCTAssertEqual(f10.reason, plan.sineNotRun)
        let text = try row("text.position_crossover")
        XCTAssertEqual(text.verdict, .notMeasured)
        XCTAssertEqual(text.reason, "no tokenizer here")
        XCTAssertEqual(try row("pretrained.myopia_gap").reason, "not run")
        XCTAssertEqual(Set(table.rows.map(\.id)).count, table.rows.count)
    }

    func testThePerPositionCurveIsPairedBySeed() {
        // Myopic ahead at position 0 and behind at 1 by the same amount in every seed.
        let myopic = [[1.0, 3.0], [1.1, 3.1], [0.9, 2.9]], vanilla = [[2.0, 2.0], [2.1, 2.1], [1.9, 1.9]]
        let curve = Reproduce.Rows.positionCurve(myopic, minus: vanilla)
        XCTAssertEqual(curve[0].mean, -1, accuracy: 1e-12)
        XCTAssertEqual(curve[1].mean, 1, accuracy: 1e-12)
        XCTAssertEqual(curve[0].low ?? .nan, -1, accuracy: 1e-9)   // no spread: the interval is the point
        XCTAssertEqual(VerdictRules.crossover(curve).verdict, .agrees)
    }
}
