import XCTest
import MyopiaTestSupport
import Myopia

/// The training games' framework and scheduled sampling: settings, the reduction to teacher
/// forcing through each game's own code path, the share and the distribution of the sampled
/// inputs, and exact resume.
final class GamesTests: XCTestCase {
    func config(_ family: ModelConfig.Family = .gpt2, flow: GradientFlow = .vanilla, steps: Int = 20, layers: Int = 2) -> TrainConfig {
        var c = TrainConfig()
        c.family = family
        c.flow = flow
        c.layers = layers; c.heads = 2; c.dModel = 32; c.seqLen = 16; c.batch = 4
        c.steps = steps; c.warmup = 3; c.lr = 3e-3; c.minLR = 3e-4
        c.evalEvery = 10; c.evalWindows = 2; c.logEvery = 5; c.checkpointEvery = 5
        return c
    }

    var text: TokenDataset {
        TokenDataset.split(ByteTokenizer().encode(String(repeating: "to be or not to be, that is the question. ", count: 40)),
                           validationFraction: 0.2, source: "inline")
    }

    func trainedWeights(_ c: TrainConfig, prepare: (Trainer) -> Void = { _ in }) throws -> [Float] {
        let trainer = try Trainer(config: c, dataset: text, out: try temporaryDirectory(self))
        prepare(trainer)
        try trainer.run()
        return trainer.model.params.weightArray()
    }

    // MARK: - Settings

    func testGameSettingsRoundTripAndRecordEveryKnob() throws {
        var c = config()
        c.gameName = "consequence"
        c.consequenceHorizon = 3
        c.game = c.game   // what the flags do: every knob explicit
        XCTAssertEqual(c.game, .consequence(ConsequenceSettings(weight: 0.5, horizon: 3, positions: 4, estimator: .sampled)))
        let data = try JSONEncoder().encode(c)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(object["game"] as? String, "consequence")
        XCTAssertEqual(object["consequence_horizon"] as? Int, 3)
        XCTAssertEqual(object["consequence_estimator"] as? String, "sampled")
        XCTAssertNil(object["sample_rate"])
        XCTAssertEqual(try JSONDecoder().decode(TrainConfig.self, from: data), c)
        // A config written before games existed reads as teacher forcing.
        XCTAssertEqual(try JSONDecoder().decode(TrainConfig.self, from: Data("{}".utf8)).game, .teacherForced)
    }

    func testBadGameSettingsAreRefusedNamingTheField() throws {
        func refused(_ edit: (inout TrainConfig) -> Void, field: String, file: StaticString = #filePath, line: UInt = #line) {
            var c = config()
            edit(&c)
            XCTAssertThrowsError(try c.validate(file: "run.json"), file: file, line: line) { error in
                guard let e = error as? InputError else { return XCTFail("\(error)", file: file, line: line) }
                XCTAssertEqual(e.file, "run.json", file: file, line: line)
                XCTAssertTrue("\(e)".contains(field), "\(e)", file: file, line: line)
            }
        }
        refused({ $0.gameName = "reinforce" }, field: "game")
        refused({ $0.sampleRate = 0.3 }, field: "sample_rate")   // teacher-forced has no sample rate
        refused({ $0.game = .scheduledSampling(rate: 1.5) }, field: "sample_rate")
        refused({ $0.game = .multiToken(heads: 0) }, field: "prediction_heads")
        refused({ $0.game = .consequence(ConsequenceSettings(horizon: 16)) }, field: "consequence_horizon")
        refused({ $0.game = .consequence(ConsequenceSettings(horizon: 4, positions: 13)) }, field: "consequence_positions")
        refused({ $0.game = .consequence(ConsequenceSettings(weight: .nan)) }, field: "consequence_weight")
        refused({ $0.game = .consequence(ConsequenceSettings()); $0.flow = .localMyopic }, field: "local-myopic")
        refused({ $0.game = .multiToken(heads: 2); $0.flow = .localMyopic }, field: "local-myopic")
        var exact = config()
        exact.game = .consequence(ConsequenceSettings(estimator: .exact))
        XCTAssertNoThrow(try exact.checkGame(vocabSize: 256))
        XCTAssertThrowsError(try exact.checkGame(vocabSize: 50257))
    }

    // MARK: - Scheduled sampling

    /// ρ = 0 runs the game's two passes and replaces nothing; ρ = 1 with a sampler forced to return
    /// the true token replaces every input by itself. Both are teacher forcing bit for bit, across
    /// families and under the myopic and bigram flows too.
    func testScheduledSamplingReducesToTeacherForcingBitForBit() throws {
        for (family, flow) in [(ModelConfig.Family.gpt2, GradientFlow.vanilla), (.llama, .myopic), (.gpt2, .bigram),
                               (.gptNeoX, .vanilla), (.gemma2, .myopic), (.olmo2, .bigram)] {
            let teacher = try trainedWeights(config(family, flow: flow))
            var c = config(family, flow: flow)
            c.game = .scheduledSampling(rate: 0)
            XCTAssertTrue(try trainedWeights(c) == teacher, "\(family) \(flow): ρ = 0 differs from teacher forcing")
            c.game = .scheduledSampling(rate: 1)
            var calls = 0
            let forced = try trainedWeights(c) { trainer in
                trainer.runner.sampleOverride = { _, _, truth in calls += 1; return truth }
            }
            XCTAssertEqual(calls, 20 * 4 * 15, "every input after the first of every window, every step")
            XCTAssertTrue(forced == teacher, "\(family) \(flow): the forced sampler differs from teacher forcing")
            c.game = .scheduledSampling(rate: 0.5)
            XCTAssertFalse(try trainedWeights(c) == teacher, "\(family) \(flow): sampling changed nothing")
        }
    }

    /// The share replaced is within 3 standard errors of ρ; the replacements are the model's own
    /// samples (their distribution matches p(·|x_≤t) by a χ² test) and the targets stay the truth.
    func testScheduledSamplingReplacesTheRightShareWithTheModelsOwnSamples() throws {
        let vocab = 6, t = 8, b = 4, rate = 0.3
        let model = Transformer(config: ModelConfig(vocabSize: vocab, maxPositions: t, dModel: 16, nLayers: 1, nHeads: 2))
        model.initialize(seed: 7)
        // Larger weights make the distribution far from uniform.
        for i in 0..<model.params.count { model.params.weights[i] *= 20 }
        let cache = model.makeCache(batch: b, seqLen: t)
        let runner = GameRunner(game: .scheduledSampling(rate: rate), model: model, cache: cache, batch: b, seqLen: t, seed: 3)
        // lr 0: AdamW leaves the weights alone, so every step samples from the same model.
        let step = TrainingStep(model: model, optimizer: AdamW(weightDecay: 0), clip: 1e9)
        var rng = SeededGenerator(seed: 11)
        let inputs = (0..<(b * t)).map { _ in Int32(rng.nextInt(below: vocab)) }
        let targets = (0..<(b * t)).map { _ in Int32(rng.nextInt(below: vocab)) }
        model.forward(tokens: inputs, targets: nil, batch: b, seqLen: t, cache: cache)
        let logits = cache.logitsArray()
        XCTAssertEqual(logits.count, b * t * vocab)
        let steps = 2000
        var replaced = 0, eligible = 0
        // Counts of the token put at (row 1, position 5), drawn from the logits of position 4.
        var counts = [Int](repeating: 0, count: vocab), draws = 0
        for s in 1...steps {
            let loss = try inputs.withUnsafeBufferPointer { x in
                try targets.withUnsafeBufferPointer { y in
                    try runner.step(step, step: s, lr: 0, inputs: x.baseAddress!, targets: y.baseAddress!).loss
                }
            }
            let mixed = runner.mixedInputs()
            XCTAssertEqual(mixed[0], inputs[0])
            XCTAssertEqual(mixed[t], inputs[t], "the first input of a window is never replaced")
            replaced += runner.last.inputsReplaced
            eligible += runner.last.inputsEligible
            if s <= 20 {
                // The loss trained is the mixed inputs' against the true targets.
                let check = TrainingTests.meanLoss(model, inputs: mixed, targets: targets, batch: b, seqLen: t)
                XCTAssertEqual(loss, check)
            }
            if KeyedRandom(seed: 3).uniform(.replace, step: s, sequence: 1, position: 5) < rate {
                counts[Int(mixed[t + 5])] += 1
                draws += 1
            }
        }
        let share = Double(replaced) / Double(eligible)
        let se = (rate * (1 - rate) / Double(eligible)).squareRoot()
        XCTAssertEqual(eligible, steps * b * (t - 1))
        XCTAssertLessThan(abs(share - rate), 3 * se, "share \(share) vs ρ \(rate) (SE \(se))")
        // χ² of the draws against softmax(logits at row 1, position 4).
        let row = Array(logits[((t + 4) * vocab)..<((t + 5) * vocab)])
        let m = row.max()!
        let e = row.map { Foundation.exp(Double($0 - m)) }, z = e.reduce(0, +)
        var chi2 = 0.0
        for v in 0..<vocab {
            let expected = Double(draws) * e[v] / z
            chi2 += (Double(counts[v]) - expected) * (Double(counts[v]) - expected) / expected
        }
        XCTAssertGreaterThan(draws, 400)
        // 5 degrees of freedom: P(χ² > 20.5) = 0.001.
        XCTAssertLessThan(chi2, 20.5, "draws \(counts) vs p \(e.map { $0 / z })")
        XCTAssertGreaterThan(e.max()! / z, 0.3, "the test model's distribution should be far from uniform")
    }

    /// An interrupted scheduled-sampling run resumed from its checkpoint makes the same draws (the
    /// streams are keyed by step, sequence and position) and ends with the same weights.
    func testScheduledSamplingResumesBitForBit() throws {
        var dir = URL(fileURLWithPath: "/")
        var c = config()
        for family in [ModelConfig.Family.mistral, .gpt2] {
            c = config(family, steps: 10)
            c.game = .scheduledSampling(rate: 0.4)
            let straight = try Trainer(config: c, dataset: text, out: try temporaryDirectory(self))
            try straight.run()
            dir = try temporaryDirectory(self)
            try Trainer(config: c, dataset: text, out: dir).run(stoppingAfter: 7)
            let resumed = try Trainer(config: c, dataset: text, out: dir, resume: true)
            XCTAssertEqual(resumed.step, 7)
            try resumed.run()
            XCTAssertTrue(resumed.model.params.weightArray() == straight.model.params.weightArray(), "\(family)")
        }
        let saved = try JSONDecoder().decode(TrainConfig.self, from: Data(contentsOf: dir.appendingPathComponent("run_config.json")))
        XCTAssertEqual(saved.game, .scheduledSampling(rate: 0.4))
        // Resuming under another game is refused, naming the setting.
        var other = c
        other.game = .scheduledSampling(rate: 0.5)
        XCTAssertThrowsError(try Trainer(config: other, dataset: text, out: dir, resume: true)) { error in
            XCTAssertTrue("\(error)".contains("sample_rate"), "\(error)")
        }
        let lines = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        let last = try JSONDecoder().decode(TrainMetrics.self, from: Data(lines.last!.utf8))
        XCTAssertNotNil(last.game?["replaced_share"])
    }

    // MARK: - Every game through the trainer

    /// λ = 0, a reward forced to 0 (both estimators) and N = 1 heads run their games' own code paths
    /// for 20 steps and end with teacher forcing's weights, bit for bit, across families and under
    /// the vanilla and myopic flows; a non-zero knob moves them.
    func testConsequenceAndMultiTokenReduceToTeacherForcingBitForBit() throws {
        for (family, flow) in [(ModelConfig.Family.gpt2, GradientFlow.vanilla), (.llama, .myopic), (.qwen3, .myopic),
                               (.mistral, .vanilla), (.qwen2, .vanilla)] {
            let teacher = try trainedWeights(config(family, flow: flow))
            var c = config(family, flow: flow)
            for estimator in ConsequenceEstimator.allCases {
                c.game = .consequence(ConsequenceSettings(weight: 0, horizon: 3, positions: 2, estimator: estimator))
                XCTAssertTrue(try trainedWeights(c) == teacher, "\(family) \(flow) \(estimator): λ = 0 differs from teacher forcing")
                c.game = .consequence(ConsequenceSettings(weight: 0.7, horizon: 3, positions: 2, estimator: estimator))
                let forced = try trainedWeights(c) { $0.runner.consequence?.forcedReward = 0 }
                XCTAssertTrue(forced == teacher, "\(family) \(flow) \(estimator): a zero reward differs from teacher forcing")
                XCTAssertFalse(try trainedWeights(c) == teacher, "\(family) \(flow) \(estimator): the policy term changed nothing")
            }
            c.game = .multiToken(heads: 1)
            XCTAssertTrue(try trainedWeights(c) == teacher, "\(family) \(flow): one head differs from teacher forcing")
            c.game = .multiToken(heads: 3)
            let trainer = try Trainer(config: c, dataset: text, out: try temporaryDirectory(self))
            XCTAssertEqual(trainer.model.config.predictionHeads, 3)
            try trainer.run()
            let heads = trainer.model.params.weightArray()
            XCTAssertEqual(heads.count, teacher.count + 2 * (teacher.count - (try trainedWeights(config(family, flow: flow, layers: 1))).count),
                           "two extra blocks' parameters")
        }
    }

    /// The consequence and multi-token games resume bit for bit, and their checkpoints say what
    /// they trained: the extra heads in the model folder, the knobs in run_config.json.
    func testConsequenceAndMultiTokenResumeBitForBit() throws {
        let consequence = TrainingGame.consequence(ConsequenceSettings(weight: 0.5, horizon: 3, positions: 3))
        for (game, family) in [(consequence, ModelConfig.Family.gpt2), (.multiToken(heads: 2), .gpt2),
                               (consequence, .gemma2), (.multiToken(heads: 2), .gptNeoX)] {
            var c = config(family, steps: 10)
            c.game = game
            let straight = try Trainer(config: c, dataset: text, out: try temporaryDirectory(self))
            try straight.run()
            let dir = try temporaryDirectory(self)
            try Trainer(config: c, dataset: text, out: dir).run(stoppingAfter: 6)
            let resumed = try Trainer(config: c, dataset: text, out: dir, resume: true)
            XCTAssertEqual(resumed.step, 6)
            try resumed.run()
            XCTAssertTrue(resumed.model.params.weightArray() == straight.model.params.weightArray(), "\(family) \(game)")
            let saved = try JSONDecoder().decode(TrainConfig.self, from: Data(contentsOf: dir.appendingPathComponent("run_config.json")))
            XCTAssertEqual(saved.game, game)
            let lines = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            let last = try JSONDecoder().decode(TrainMetrics.self, from: Data(lines.last!.utf8))
            XCTAssertNotNil(last.game?["next_token_loss"])
            if case .consequence = game { XCTAssertNotNil(last.game?["advantage"]) }
        }
        // A checkpoint without the heads cannot continue a multi-token run.
        let dir = try temporaryDirectory(self)
        try Trainer(config: config(steps: 4), dataset: text, out: dir).run()
        var c = config(steps: 8)
        c.game = .multiToken(heads: 2)
        XCTAssertThrowsError(try Trainer(config: c, dataset: text, out: dir, resume: true))
    }

    func testKeyedRandomIsUniformAndSamplesByInversion() {
        let r = KeyedRandom(seed: 5)
        XCTAssertEqual(r.uniform(.sample, step: 3, sequence: 1, position: 2), r.uniform(.sample, step: 3, sequence: 1, position: 2))
        XCTAssertNotEqual(r.uniform(.sample, step: 3, sequence: 1, position: 2), r.uniform(.replace, step: 3, sequence: 1, position: 2))
        XCTAssertNotEqual(r.uniform(.sample, step: 3, sequence: 1, position: 2), r.uniform(.sample, step: 3, sequence: 2, position: 1))
        var mean = 0.0
        let n = 100_000
        for i in 0..<n { mean += r.uniform(.position, step: i, sequence: 0, position: 0) }
        mean /= Double(n)
        XCTAssertLessThan(abs(mean - 0.5), 3 * (1.0 / 12 / Double(n)).squareRoot())
        let logits: [Float] = [0, Float(log(3.0)), -.infinity, 0]   // p = 1/5, 3/5, 0, 1/5
        logits.withUnsafeBufferPointer { l in
            XCTAssertEqual(KeyedRandom.sample(logits: l.baseAddress!, count: 4, u: 0.0), 0)
            XCTAssertEqual(KeyedRandom.sample(logits: l.baseAddress!, count: 4, u: 0.19), 0)
            XCTAssertEqual(KeyedRandom.sample(logits: l.baseAddress!, count: 4, u: 0.21), 1)
            XCTAssertEqual(KeyedRandom.sample(logits: l.baseAddress!, count: 4, u: 0.79), 1)
            XCTAssertEqual(KeyedRandom.sample(logits: l.baseAddress!, count: 4, u: 0.81), 3)
            XCTAssertEqual(KeyedRandom.sample(logits: l.baseAddress!, count: 4, u: 0.999999), 3)
        }
    }
}

extension TrainingTests {
    /// The mean next-token loss of a forward pass of `model` on the given windows.
    static func meanLoss(_ model: Transformer, inputs: [Int32], targets: [Int32], batch: Int, seqLen: Int) -> Float {
        let cache = model.makeCache(batch: batch, seqLen: seqLen)
        return model.forward(tokens: inputs, targets: targets, batch: batch, seqLen: seqLen, cache: cache) ?? .nan
    }
}
