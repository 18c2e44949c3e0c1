import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

/// `myopia games` without training: the --games list, the statistics over seeds (t-intervals,
/// differences paired by seed), the summary of planted measurements, and its report section.
final class GamesExperimentTests: XCTestCase {
    func testGamesListTakesEachGameAndItsMainKnob() throws {
        let games = try GamesExperiment.parseGames(GamesExperiment.defaultSpec)
        XCTAssertEqual(games, [.teacherForced, .scheduledSampling(rate: 0.25),
                               .consequence(ConsequenceSettings(weight: 0.5, horizon: 4, positions: 4, estimator: .sampled)),
                               .multiToken(heads: 2)])
        XCTAssertEqual(games.map(GamesExperiment.label),
                       ["teacher-forced", "scheduled-sampling-0.25", "consequence-0.5", "multi-token-2"])
        XCTAssertEqual(GamesExperiment.runFolder(URL(fileURLWithPath: "/o"), game: games[1], seed: 3).path,
                       "/o/scheduled-sampling-0.25-seed3")

        // Knobs the list leaves unset come from the base settings (the game flags, a config file).
        var base = TrainConfig()
        base.consequenceHorizon = 3
        base.consequenceEstimator = .exact
        base.sampleRate = 0.1
        base.predictionHeads = 3
        let fromBase = try GamesExperiment.parseGames(" consequence=1 , scheduled-sampling,multi-token", base: base)
        XCTAssertEqual(fromBase, [.consequence(ConsequenceSettings(weight: 1, horizon: 3, positions: 4, estimator: .exact)),
                                  .scheduledSampling(rate: 0.1), .multiToken(heads: 3)])
        XCTAssertEqual(GamesExperiment.label(fromBase[0]), "consequence-1")

        for bad in ["", "teacher-forced,", "greedy", "teacher-forced=1", "scheduled-sampling=1.5", "scheduled-sampling=x",
                    "consequence=nan", "multi-token=0", "multi-token=2.5", "consequence,consequence=0.2"] {
            XCTAssertThrowsError(try GamesExperiment.parseGames(bad), bad) { error in
                guard case InputError.invalidValue(let file, let field, _, _)? = error as? InputError else {
                    return XCTFail("\(bad): \(error)")
                }
                XCTAssertEqual(file, "flags")
                XCTAssertEqual(field, "games")
            }
        }
    }

    func testIntervalsAreStudentTOverSeeds() {
        let x = GamesExperiment.Interval([1, 2, 3])
        XCTAssertEqual(x.mean, 2)
        XCTAssertEqual(x.std!, 1, accuracy: 1e-12)
        // t_{0.975, 2} = 4.303: mean ± 4.303 · 1 / √3.
        XCTAssertEqual(x.halfWidth, 4.303 / 3.0.squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(x.low! + x.high!, 4, accuracy: 1e-12)
        // One seed: the value, no interval.
        let one = GamesExperiment.Interval([0.5])
        XCTAssertEqual(one.mean, 0.5)
        XCTAssertNil(one.std)
        XCTAssertNil(one.low)
        XCTAssertEqual(one.halfWidth, 0)
        XCTAssertEqual(GamesExperiment.formatInterval(one), "0.5000")
        XCTAssertEqual(GamesExperiment.formatInterval(GamesExperiment.Interval([1, 3])), "2.0000 ± 12.7060")
        // Beyond the table the expansion continues it smoothly towards 1.96.
        XCTAssertEqual(GamesExperiment.tQuantile975(degreesOfFreedom: 1), 12.706)
        XCTAssertEqual(GamesExperiment.tQuantile975(degreesOfFreedom: 30), 2.042)
        XCTAssertEqual(GamesExperiment.tQuantile975(degreesOfFreedom: 40), 2.021, accuracy: 1e-3)
        XCTAssertEqual(GamesExperiment.tQuantile975(degreesOfFreedom: 120), 1.980, accuracy: 1e-3)
        // Paired by seed: the spread of the differences, not of either side.
        let paired = GamesExperiment.paired([5.0, 6, 7], minus: [4.9, 5.9, 6.8])
        XCTAssertEqual(paired.perSeed.count, 3)
        XCTAssertEqual(paired.mean, (0.1 + 0.1 + 0.2) / 3, accuracy: 1e-12)
        XCTAssertLessThan(paired.std!, 0.1)
    }

    // MARK: - Planted measurements

    static func table(game: TrainingGame, scale: Double, layers: Int = 1, maxOffset: Int = 2) -> UpstreamTable {
        var cells: [UpstreamCell] = []
        for l in 0...layers {
            for k in 0...maxOffset {
                cells.append(UpstreamCell(variable: "activations", layer: l, offset: k, upstream: scale / Double(k + 1),
                                          optimised: l == layers && k > 0 ? 0 : scale / Double(k + 2), upstreamCI: [0, 1], optimisedCI: [0, 1]))
            }
        }
        for k in 0...maxOffset {
            cells.append(UpstreamCell(variable: "activations", layer: nil, offset: k, upstream: scale, optimised: scale / 2,
                                      upstreamCI: [0, 1], optimisedCI: [0, 1]))
            cells.append(UpstreamCell(variable: "outputs", layer: nil, offset: k, upstream: k == 0 ? 0 : scale / 4,
                                      optimised: game == .teacherForced ? 0 : scale / 8, upstreamCI: [0, 1], optimisedCI: [0, 0]))
        }
        cells.append(UpstreamCell(variable: "weights", layer: nil, offset: 0, upstream: 1, optimised: 1, upstreamCI: [1, 1], optimisedCI: [1, 1]))
        return UpstreamTable(game: game.name, gameSettings: game, flow: "vanilla", cells: cells, windows: 4, seqLen: 8,
                             layers: layers, maxOffset: maxOffset, draws: 2)
    }

    static func run(game: TrainingGame, loss: Double, advantage: Double, loop: Double) throws -> GamesExperiment.RunMeasurements {
        let decoder = JSONDecoder()
        let evaluation = try decoder.decode(EvaluationResult.self, from: Data("""
            {"loss": \(loss), "tokens": 32, "windows": 4, "position_loss": [\(loss + 0.5), \(loss), \(loss), \(loss - 0.1), \(loss), \(loss), \(loss), \(loss)]}
            """.utf8))
        let horizon = HorizonTable(meanNorm: [[1, 0.5], [1, 0]], share: [[0.8, 0.2], [1, 0]], meanOffset: [loss / 10, 0], counts: [32, 28],
                                   maxOffset: 1, layers: 1, sequences: 4, seqLen: 8, flow: "vanilla")
        let generation = try decoder.decode(GenerationStudy.Metrics.self, from: Data("""
            {"samples": 4, "tokens": 64, "distinct": [{"n": 1, "ngrams": 64, "distinct_ngrams": 10, "pooled": 0.15, "per_sample_mean": 0.3},
             {"n": 2, "ngrams": 60, "distinct_ngrams": 30, "pooled": \(1 - loop), "per_sample_mean": 0.6}],
             "loop_count": 1, "loop_share": \(loop), "free_running": {"loss": \(loss - 1), "tokens": 64},
             "teacher_forced": {"loss": \(loss), "tokens": 16}, "reference": "validation continuation"}
            """.utf8))
        let result = ContinuationAdvantage.Result(mean: advantage, standardError: 0.01, drewTrueShare: 0.2, pairs: 32, horizon: 2, windows: 4)
        return GamesExperiment.RunMeasurements(evaluation: evaluation, horizon: horizon, upstream: table(game: game, scale: loss),
                                               generation: generation, advantage: result, trainLoss: loss + 0.1, seconds: 1)
    }

    static let consequence = TrainingGame.consequence(ConsequenceSettings(weight: 0.5, horizon: 2, positions: 2, estimator: .sampled))

    /// Three seeds of teacher forcing and the consequence game, with planted numbers.
    static func plantedSummary(out: URL) throws -> GamesExperiment.Summary {
        let games: [TrainingGame] = [.teacherForced, consequence]
        let runs = [
            try [(2.0, -0.10), (2.2, -0.12), (2.1, -0.08)].map { try run(game: .teacherForced, loss: $0.0, advantage: $0.1, loop: 0.25) },
            try [(2.05, -0.05), (2.22, -0.06), (2.16, -0.05)].map { try run(game: consequence, loss: $0.0, advantage: $0.1, loop: 0) },
        ]
        let (summaries, comparisons) = GamesExperiment.summarise(games: games, seeds: [1, 2, 3], runs: runs, seqLen: 8, out: out)
        var config = TrainConfig()
        config.seqLen = 8
        var measure = GamesExperiment.Measure()
        measure.advantageHorizon = 2
        return GamesExperiment.Summary(data: "planted", settings: config, seeds: [1, 2, 3], validationTokens: 32, validationWindows: 4,
                                       positionBuckets: Gap.positionBuckets(seqLen: 8), measure: measure, games: summaries,
                                       consequence: comparisons, seconds: 1)
    }

    func testSummaryPairsTheConsequenceGameWithTeacherForcingBySeed() throws {
        let s = try Self.plantedSummary(out: URL(fileURLWithPath: "/runs/games"))
        XCTAssertEqual(s.games.map(\.label), ["teacher-forced", "consequence-0.5"])
        let tf = try XCTUnwrap(s.game("teacher-forced")), cq = try XCTUnwrap(s.game("consequence-0.5"))
        XCTAssertEqual(tf.valLoss.perSeed, [2.0, 2.2, 2.1])
        XCTAssertEqual(tf.valLoss.mean, 2.1, accuracy: 1e-12)
        XCTAssertEqual(tf.runs, ["teacher-forced-seed1", "teacher-forced-seed2", "teacher-forced-seed3"])
        XCTAssertEqual(tf.positionLoss[0], 2.6, accuracy: 1e-12)
        XCTAssertEqual(tf.bucketLoss.count, s.positionBuckets.count)
        XCTAssertEqual(tf.horizonMeanOffset[0], 0.21, accuracy: 1e-12)
        XCTAssertEqual(tf.generation.loopShare.mean, 0.25)
        XCTAssertEqual(tf.generation.distinct[2]?.mean ?? 0, 0.75, accuracy: 1e-12)
        XCTAssertEqual(tf.generation.freeRunningLoss.mean, 1.1, accuracy: 1e-12)

        let d = try XCTUnwrap(s.consequence.first)
        XCTAssertEqual(s.consequence.count, 1)
        XCTAssertEqual(d.baseline, "teacher-forced")
        XCTAssertEqual(d.valLossGivenUp.perSeed[0], 0.05, accuracy: 1e-12)
        XCTAssertEqual(d.valLossGivenUp.perSeed[1], 0.02, accuracy: 1e-12)
        XCTAssertEqual(d.valLossGivenUp.perSeed[2], 0.06, accuracy: 1e-12)
        XCTAssertEqual(d.valLossGivenUp.mean, cq.valLoss.mean - tf.valLoss.mean, accuracy: 1e-12)
        // Pairing removes the seeds' shared spread: the interval of the differences is far narrower.
        XCTAssertLessThan(d.valLossGivenUp.halfWidth * 3, tf.valLoss.halfWidth)
        XCTAssertEqual(d.advantageGain.perSeed.map { ($0 * 1000).rounded() / 1000 }, [0.05, 0.06, 0.03])
        let half = GamesExperiment.tQuantile975(degreesOfFreedom: 2) * d.advantageGain.std! / 3.0.squareRoot()
        XCTAssertEqual(d.advantageGain.high! - d.advantageGain.mean, half, accuracy: 1e-12)

        // The upstream table: cell-wise means over seeds, t-intervals over seeds; exact zeros stay zero.
        let cell = try XCTUnwrap(tf.upstream.cell("activations", layer: 0, offset: 0))
        XCTAssertEqual(cell.upstream, 2.1, accuracy: 1e-12)
        XCTAssertEqual(cell.upstreamCI[0] + cell.upstreamCI[1], 4.2, accuracy: 1e-12)
        XCTAssertEqual(tf.upstream.cell("outputs", offset: 1)?.optimised, 0)
        XCTAssertEqual(tf.upstream.windows, 12)

        // games.json round trip, with every interval key written.
        let data = try RunFolder.encoder.encode(s)
        XCTAssertEqual(try RunFolder.decoder.decode(GamesExperiment.Summary.self, from: data), s)
        let text = String(decoding: data, as: UTF8.self)
        for key in ["\"val_loss_given_up\"", "\"advantage_gain\"", "\"continuation_advantage\"", "\"horizon_mean_offset\"",
                    "\"loop_share\"", "\"low\"", "\"high\"", "\"per_seed\"", "\"upstream\"", "\"game_settings\""] {
            XCTAssertTrue(text.contains(key), key)
        }
        let table = GamesExperiment.format(s)
        for part in ["consequence-0.5 against teacher-forced", "given up", "advantage gained", "±", "loss by position"] {
            XCTAssertTrue(table.contains(part), "table lacks \(part):\n\(table)")
        }
    }

    func testReportDrawsTheGamesSectionWithHeatmapsAndIntervals() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-games-report-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let s = try Self.plantedSummary(out: dir)
        try LabFiles.writeJSON(s, to: dir.appendingPathComponent(GamesExperiment.summaryFile))
        let html = try Report.build(runs: [dir], title: "games")
        XCTAssertEqual(html.components(separatedBy: "<section class=\"games\"").count - 1, 1)
        for part in ["The games experiment", "teacher-forced: optimised", "teacher-forced: upstream", "consequence-0.5: optimised",
                     "h layer 0", "h final (l=1)", "h mean over l", "outputs x̂", "k=2", "exact 0",
                     "Validation loss by game", "Loss by position in the window", "Horizon: mean offset by residual stream",
                     "loop share and distinct-2", "free-running against teacher-forced loss", "Continuation advantage",
                     "The consequence game − teacher forcing", "next-token loss given up: consequence-0.5 − teacher-forced"] {
            XCTAssertTrue(html.contains(part), "the games section lacks \(part)")
        }
        // Two heatmaps per game, each with a cell per row and offset (4 rows × 3 offsets).
        XCTAssertEqual(html.components(separatedBy: "class=\"chart heatmap\"").count - 1, 4)
        XCTAssertEqual(html.components(separatedBy: "<rect class=\"cell\"").count - 1, 4 * 12)
        // Intervals drawn as whiskers around each mean.
        XCTAssertTrue(html.contains("stroke-dasharray"), "no zero line on the difference chart")
        XCTAssertFalse(html.contains("no data"))
        XCTAssertFalse(html.contains("<script"))
        // A broken games.json is refused by name.
        try Data("{".utf8).write(to: dir.appendingPathComponent(GamesExperiment.summaryFile))
        XCTAssertThrowsError(try Report.build(runs: [dir])) { XCTAssertTrue("\($0)".contains("games.json"), "\($0)") }
    }

    /// The continuation advantage equals R(x̂) − R(x) computed from full forward passes of the window
    /// with x̂ put in place of x_{t+1}, where x̂ is the draw the keyed sampler makes from the logits.
    func testContinuationAdvantageMatchesFullForwardPasses() throws {
        let config = ModelConfig(vocabSize: 11, maxPositions: 8, dModel: 16, nLayers: 2, nHeads: 2)
        let model = Transformer(config: config)
        model.initialize(seed: 5)
        let t = 8, k = 2
        var rng = SeededGenerator(seed: 9)
        let tokens = (0..<(3 * (t + 1))).map { _ in Int32.random(in: 0..<11, using: &rng) }
        let result = ContinuationAdvantage.measure(model, tokens: tokens, seqLen: t, horizon: k, windows: 2, positions: 3, seed: 4)
        XCTAssertEqual(result.pairs, 2 * 3)
        XCTAssertEqual(result.windows, 2)

        // Brute force: positions 0, 2, 5 of 0 … T−1−K = 5 in each window.
        var advantages: [Double] = []
        let random = KeyedRandom(seed: 4)
        func meanLoss(_ inputs: [Int32], _ targets: [Int32], _ p: Int) -> (loss: Double, logits: [Float]) {
            let cache = model.makeCache(batch: 1, seqLen: t)
            model.forward(tokens: inputs, targets: targets, batch: 1, seqLen: t, cache: cache)
            let losses = cache.positionLosses()
            return (losses[(p + 1)...(p + k)].map(Double.init).reduce(0, +) / Double(k), cache.logitsArray())
        }
        for w in 0..<2 {
            let window = Array(tokens[(w * (t + 1))..<((w + 1) * (t + 1))])
            let inputs = Array(window.dropLast()), targets = Array(window.dropFirst())
            for p in [0, 2, 5] {
                let (truth, logits) = meanLoss(inputs, targets, p)
                let u = random.uniform(.sample, step: 0, sequence: w, position: p)
                let drawn = logits[(p * 11)..<((p + 1) * 11)].withUnsafeBufferPointer { KeyedRandom.sample(logits: $0.baseAddress!, count: 11, u: u) }
                var substituted = inputs
                substituted[p + 1] = drawn
                advantages.append(-meanLoss(substituted, targets, p).loss + truth)
            }
        }
        let mean = advantages.reduce(0, +) / Double(advantages.count)
        XCTAssertEqual(result.mean, mean, accuracy: 1e-5)
        XCTAssertGreaterThan(advantages.map(abs).max() ?? 0, 1e-3, "some draws differ from the true token")
    }
}
