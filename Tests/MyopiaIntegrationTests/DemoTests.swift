import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

/// The demo's plan and decisions, and a whole quick demo in-process: every stage writes its files,
/// and the same seed gives the same results.
final class DemoTests: XCTestCase {
    func testPlansAreValidAndQuickIsSmall() throws {
        let full = Demo.Plan.make(quick: false, seed: 7), quick = Demo.Plan.make(quick: true, seed: 7)
        try full.validate()
        try quick.validate()
        XCTAssertEqual(Demo.Plan.make(quick: false, seed: 7), full)
        XCTAssertEqual(full.textSeeds, [7, 8])
        XCTAssertEqual(full.sine.seed, 7)
        XCTAssertEqual(full.text.seed, 7)
        XCTAssertEqual(full.budgetSeconds, 900)
        // The games stage trains a model far smaller than the gap's, every game over both seeds.
        XCTAssertEqual(full.gamesSeeds, [7, 8])
        XCTAssertLessThan(full.games.steps * full.games.batch * full.games.seqLen * full.games.dModel * 10,
                          full.text.steps * full.text.batch * full.text.seqLen * full.text.dModel)
        XCTAssertEqual(try full.gamesOptions(out: URL(fileURLWithPath: "g")).games.count, 4)
        // The full sine task is the one that separates the flows: p 1, f 3.
        XCTAssertEqual(full.sine.task, SineTask(p: 1, frequency: 3, window: 10))
        XCTAssertGreaterThan(full.text.logGradientSplit, 0)
        XCTAssertGreaterThan(quick.text.logGradientSplit, 0)
        XCTAssertLessThanOrEqual(quick.text.logGradientSplit, quick.text.steps)
        // Quick runs every stage, two seeds (a spread), far fewer steps and positions.
        XCTAssertEqual(quick.textSeeds.count, 2)
        XCTAssertLessThan(quick.text.steps * quick.text.batch * quick.text.seqLen * 20,
                          full.text.steps * full.text.batch * full.text.seqLen)
        XCTAssertLessThan(quick.sine.steps * 10, full.sine.steps)
        XCTAssertLessThan(quick.smollm2.probePositions * 10, full.smollm2.probePositions)
        XCTAssertEqual(quick.smollm2FetchSeconds, 0)

        var bad = quick
        bad.sineProbeLags = [0, quick.sine.seqLen]
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("sine_probe_lags"), "\($0)") }
        bad = quick
        bad.textAnalysis.seqLen = quick.text.seqLen + 1
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("text_analysis.seq_len"), "\($0)") }
    }

    func testSmolLM2RunsOnlyWhenCachedOrFetchableInTime() {
        let full = Demo.Plan.make(quick: false, seed: 1), quick = Demo.Plan.make(quick: true, seed: 1)
        func decide(_ plan: Demo.Plan, skip: Bool = false, offline: Bool = false, cached: Bool, left: Double, slowdown: Double = 1) -> Demo.SmolLM2Decision {
            Demo.smolLM2Decision(plan: plan, skip: skip, offline: offline, cached: cached, secondsLeft: left, slowdown: slowdown)
        }
        XCTAssertEqual(decide(full, skip: true, cached: true, left: 1e6), .skip(reason: "--skip-smollm2"))
        // --quick never downloads, but runs a cached copy whatever the time.
        guard case .skip(let reason) = decide(quick, cached: false, left: 1e6) else { return XCTFail("quick must not download") }
        XCTAssertTrue(reason.contains("cache"), reason)
        XCTAssertEqual(decide(quick, cached: true, left: 0), .run(fetch: false))
        // Without a registry only a cached copy can run.
        guard case .skip(let offline) = decide(full, offline: true, cached: false, left: 1e6) else { return XCTFail() }
        XCTAssertTrue(offline.contains("registry"), offline)
        XCTAssertEqual(decide(full, offline: true, cached: true, left: 1e6), .run(fetch: false))
        // The full demo: the analysis (and the download) must fit in what is left, scaled by the slowdown.
        let analysis = full.expectedSeconds["smollm2"]!
        XCTAssertEqual(decide(full, cached: true, left: analysis + 1), .run(fetch: false))
        XCTAssertEqual(decide(full, cached: false, left: analysis + full.smollm2FetchSeconds + 1), .run(fetch: true))
        guard case .skip(let late) = decide(full, cached: false, left: analysis + 1) else { return XCTFail("download does not fit") }
        XCTAssertTrue(late.contains("budget") && late.contains("download"), late)
        guard case .skip = decide(full, cached: true, left: analysis + 1, slowdown: 2) else { return XCTFail("slow machine") }
    }

    func testSlowdownComparesFinishedStagesWithThePlan() {
        let plan = Demo.Plan.make(quick: false, seed: 1)
        let sine = plan.expectedSeconds["sine"]!, gap = plan.expectedSeconds["gap"]!
        XCTAssertEqual(Demo.slowdown(plan: plan, finished: [(.sine, 2 * sine), (.gap, 2 * gap), (.data, 100)]), 2, accuracy: 1e-12)
        XCTAssertEqual(Demo.slowdown(plan: plan, finished: [(.sine, sine / 100)]), 0.5)
        XCTAssertEqual(Demo.slowdown(plan: plan, finished: [(.sine, sine * 100)]), 4)
        XCTAssertEqual(Demo.slowdown(plan: plan, finished: []), 1)
    }

    func testPromptIsALineOfHeldOutTextAndTheReferenceFollowsIt() {
        var (prompt, reference) = Demo.promptAndReference(in: "ll be gone.\n\nROMEO:\nBut soft, what light\n")
        XCTAssertEqual(prompt, "ROMEO:\n")
        XCTAssertEqual(reference, "But soft, what light\n")
        // No blank line: the second line.
        (prompt, reference) = Demo.promptAndReference(in: "half a line\nThe king speaks.\nA servant calls.")
        XCTAssertEqual(prompt, "The king speaks.\n")
        XCTAssertEqual(reference, "A servant calls.")
        // One long line: its start, cut.
        let long = String(repeating: "word ", count: 40)
        (prompt, reference) = Demo.promptAndReference(in: long, maxPromptCharacters: 12)
        XCTAssertEqual(prompt, "word word wo")
        XCTAssertEqual(prompt + reference, long)
        // A text that ends at its first newline starts over from the top.
        (prompt, reference) = Demo.promptAndReference(in: "only line\n")
        XCTAssertEqual(prompt, "only line\n")
        XCTAssertEqual(reference, "")
    }

    /// The whole quick plan on offline text (no network, no SmolLM2): every stage's files, a
    /// summary with finite figures, and the same figures again for the same seed.
    func testQuickOfflineDemoIsCompleteAndDeterministic() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-demo-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var lines: [String] = []
        let options = Demo.Options(out: root.appendingPathComponent("a"), quick: true, seed: 3, offline: true, skipSmolLM2: true)
        let first = try Demo.run(options, log: { lines.append($0) })
        var again = options
        again.out = root.appendingPathComponent("b")
        let second = try Demo.run(again)

        XCTAssertTrue(first.offline)
        XCTAssertEqual(first.data, SyntheticText.sourceName)
        XCTAssertEqual(lines.filter { $0.hasPrefix("offline:") }.count, 1, lines.joined(separator: "\n"))
        XCTAssertEqual(first.smollm2Skipped, "--skip-smollm2")
        XCTAssertNil(first.smollm2)
        XCTAssertEqual(first.stages.map(\.stage), Demo.Stage.allCases)
        XCTAssertEqual(first.stages.filter(\.skipped).map(\.stage), [.smollm2])

        let out = options.out, fm = FileManager.default
        for file in ["report.html", "summary.json", "plan.json", "synthetic-text/gap.json",
                     "sine/sine-vanilla/horizon.json", "sine/sine-vanilla/sine_probe.json", "sine/sine-myopic/results.json",
                     "synthetic-text/vanilla-seed3/horizon.json", "synthetic-text/vanilla-seed3/probe.json",
                     "synthetic-text/vanilla-seed3/lens.json", "synthetic-text/vanilla-seed3/generation.json",
                     "synthetic-text/myopic-seed3/generation.json", "synthetic-text/myopic-seed4/eval.json",
                     "games/games.json", "games/multi-token-2-seed4/upstream.json"] {
            XCTAssertTrue(fm.fileExists(atPath: out.appendingPathComponent(file).path), file)
        }
        XCTAssertFalse(fm.fileExists(atPath: out.appendingPathComponent("smollm2").path))
        let saved = try JSONDecoder().decode(Demo.Summary.self, from: Data(contentsOf: out.appendingPathComponent("summary.json")))
        XCTAssertEqual(saved.text.gap.mean, first.text.gap.mean)
        XCTAssertEqual(saved.steps, first.steps)
        // `myopia runs` lists the demo's folder by its summary.
        XCTAssertEqual(Runs.read(out, root: root)?.kind, .demo)
        XCTAssertEqual(Runs.read(out, root: root)?.valLoss, first.valLoss)

        // Same seed, same numbers (only the timings differ).
        XCTAssertEqual(first.sine.valLoss.vanilla, second.sine.valLoss.vanilla)
        XCTAssertEqual(first.sine.valLoss.myopic, second.sine.valLoss.myopic)
        XCTAssertEqual(first.sine.lag0R2.vanilla, second.sine.lag0R2.vanilla)
        XCTAssertEqual(first.text.valLoss.vanilla.perSeed, second.text.valLoss.vanilla.perSeed)
        XCTAssertEqual(first.text.gap.perSeed, second.text.gap.perSeed)
        XCTAssertEqual(first.text.futureGradientShare.vanilla, second.text.futureGradientShare.vanilla)
        XCTAssertEqual(first.text.analysis.vanilla.horizonMeanOffset, second.text.analysis.vanilla.horizonMeanOffset)
        XCTAssertEqual(first.text.analysis.myopic.probe.bestLoss, second.text.analysis.myopic.probe.bestLoss)
        XCTAssertEqual(first.text.analysis.vanilla.lens.loss, second.text.analysis.vanilla.lens.loss)
        XCTAssertEqual(first.games.games, ["teacher-forced", "scheduled-sampling-0.25", "consequence-0.5", "multi-token-2"])
        XCTAssertEqual(first.games.valLoss, second.games.valLoss)
        XCTAssertEqual(first.games.consequence, second.games.consequence)
        XCTAssertEqual(first.games.consequence.first?.valLossGivenUp.perSeed.count, 2)
        XCTAssertEqual(first.text.analysis.myopic.generation.freeRunningLoss, second.text.analysis.myopic.generation.freeRunningLoss)
        let a = try Data(contentsOf: out.appendingPathComponent("synthetic-text/vanilla-seed3/generation.json"))
        let b = try Data(contentsOf: again.out.appendingPathComponent("synthetic-text/vanilla-seed3/generation.json"))
        XCTAssertEqual(a, b)

        // The gradient split is only logged, never a cut: the myopic runs' own split is measured too,
        // and vanilla training sends a share of its gradient to serve later tokens.
        XCTAssertGreaterThan(first.text.futureGradientShare.vanilla, 0)
        // The sine task's lag-0 R² and horizon cover every residual stream 0…L.
        XCTAssertEqual(first.sine.lag0R2.vanilla.count, Demo.Plan.make(quick: true, seed: 3).sine.layers + 1)
        XCTAssertEqual(first.sine.horizonMeanOffset.myopic.count, Demo.Plan.make(quick: true, seed: 3).sine.layers + 1)
        // The terminal table names every part.
        let table = Demo.format(first)
        for part in ["sine task", "floor", "synthetic-text", "gap", "horizon mean offset", "g_future", "probe k=1", "training games",
                     "loop", "teacher-forced", "smollm2-135m: skipped", "offline:", "report:"] {
            XCTAssertTrue(table.contains(part), "table lacks \(part):\n\(table)")
        }
    }
}
