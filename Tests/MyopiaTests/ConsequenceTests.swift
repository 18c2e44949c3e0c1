import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// The consequence game's objective (ConsequenceObjective.swift, docs/games.md): with λ = 0, or
/// with every reward forced to the same value, training is teacher forcing bit for bit; the exact
/// estimator's gradient matches PyTorch (tools/reference/consequence_reference.py) in every family;
/// the sampled estimator averages to the exact one; draws do not depend on the thread count; bad
/// settings are refused by name.
final class ConsequenceTests: XCTestCase {
    /// Every family has a fixture: gpt2 and llama with Myopia's fields, the others with the family's
    /// config.json (`hf_config`), among them Mistral's and Gemma 2's sliding windows shorter than the
    /// window of 8 and Gemma 2's soft-caps.
    static let families = ["gpt2", "llama", "gpt_neox", "qwen2", "qwen3", "mistral", "gemma2", "olmo2"]

    struct Fixture: Decodable {
        struct Config: Decodable {
            let family: String, vocab_size: Int, max_positions: Int, d_model: Int, layers: Int, heads: Int, d_mlp: Int
            let kv_heads: Int?, head_dim: Int?, rms_norm_eps: Double?, rope_theta: Double?
        }
        /// gpt2 and llama; the other families have `hf_config` instead.
        let config: Config?
        let B: Int, T: Int, K: Int, M: Int
        let lambda: Double
        let tokens: [[Int32]]
        let positions: [[Int]]
    }

    /// The fixture's model (weights loaded), its document and tensors.
    func loadFixture(_ name: String) throws -> (Transformer, Fixture, SafeTensorsFile) {
        let folder = fixturesURL.appendingPathComponent("consequence")
        let json = try Data(contentsOf: folder.appendingPathComponent("\(name).json"))
        let doc = try JSONDecoder().decode(Fixture.self, from: json)
        let file = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("\(name).safetensors"))
        let config: ModelConfig
        if let c = doc.config {
            config = c.family == "gpt2"
                ? ModelConfig(vocabSize: c.vocab_size, maxPositions: c.max_positions, dModel: c.d_model, nLayers: c.layers,
                              nHeads: c.heads, dMLP: c.d_mlp, tokenizer: nil)
                : ModelConfig.llama(vocabSize: c.vocab_size, maxPositions: c.max_positions, dModel: c.d_model,
                                    nLayers: c.layers, nHeads: c.heads, nKVHeads: c.kv_heads, headDim: c.head_dim,
                                    dMLP: c.d_mlp, ropeTheta: c.rope_theta!, rmsNormEps: c.rms_norm_eps!,
                                    tiedEmbeddings: false, tokenizer: nil)
        } else {
            // The family's config.json, as transformers wrote it.
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: json) as? [String: Any])
            let hf = try JSONSerialization.data(withJSONObject: try XCTUnwrap(object["hf_config"], "\(name): no config"))
            config = try JSONDecoder().decode(ModelConfig.self, from: hf)
            try config.validate(file: "\(name).json")
            XCTAssertEqual(config.family.rawValue, name)
        }
        let model = Transformer(config: config)
        for e in model.params.entries {
            let w = try file.floats("weight.\(e.name)")
            XCTAssertEqual(w.count, e.count, e.name)
            (model.params.weights + e.offset).update(from: w, count: e.count)
        }
        XCTAssertEqual(Set(file.names.filter { $0.hasPrefix("weight.") }), Set(model.params.entries.map { "weight.\($0.name)" }),
                       "\(name): the fixture's weights are the model's parameters")
        return (model, doc, file)
    }

    func settings(_ doc: Fixture, _ estimator: ConsequenceEstimator) -> ConsequenceSettings {
        ConsequenceSettings(weight: doc.lambda, horizon: doc.K, positions: doc.M, estimator: estimator)
    }

    // MARK: - PyTorch

    /// The whole objective's gradient (mean CE + the exact policy term) and the policy term's alone,
    /// for every parameter, and R(v) for every token at each fixed position (by the exact
    /// estimator's continuation passes and by the sampled estimator's batched ones), against
    /// float64 PyTorch, in every family.
    func testExactGradientMatchesPyTorch() throws {
        for name in Self.families {
            let (model, doc, file) = try loadFixture(name)
            let b = doc.B, t = doc.T, v = model.config.vocabSize
            let inputs = doc.tokens.flatMap { $0.dropLast() }, targets = doc.tokens.flatMap { $0.dropFirst() }
            let cache = model.makeCache(batch: b, seqLen: t)
            let objective = ConsequenceObjective(model: model, batch: b, seqLen: t, settings: settings(doc, .exact),
                                                 random: KeyedRandom(seed: 1))
            objective.fixedPositions = doc.positions.flatMap { $0 }
            model.params.zeroGrads()
            model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)

            // R(v) from the continuation passes.
            let rewards = try file.floats("rewards"), baselines = try file.floats("baselines")
            let scratch = ContinuationScratch(config: model.config, horizon: doc.K, candidates: v, seqLen: t)
            let batchScratch = ContinuationBatchScratch(config: model.config, horizon: doc.K, capacity: v, seqLen: t)
            let tokens = (0..<v).map { Int32($0) }
            var losses = [Float](repeating: 0, count: v), batched = losses
            var worstReward = 0.0
            for row in 0..<b {
                for (i, position) in doc.positions[row].enumerated() {
                    tokens.withUnsafeBufferPointer { c in
                        model.continuationLosses(cache: cache, row: row, position: position, candidates: c.baseAddress!,
                                                 count: v, scratch: scratch, losses: &losses)
                        // The sampled estimator's path: one continuation per (window, position, token).
                        let rows = [Int](repeating: row, count: v), positions = [Int](repeating: position, count: v)
                        model.continuationLosses(cache: cache, rows: rows, positions: positions, firstTokens: c.baseAddress!,
                                                 count: v, scratch: batchScratch, losses: &batched)
                    }
                    let expected = Array(rewards[((row * doc.M + i) * v)..<((row * doc.M + i + 1) * v)])
                    let error = maxRelativeError(losses.map { -$0 }, expected)
                    worstReward = max(worstReward, error)
                    XCTAssertLessThanOrEqual(error, 1e-5, "\(name): R at (\(row), \(position))")
                    XCTAssertLessThanOrEqual(maxRelativeError(batched.map { -$0 }, expected), 1e-5,
                                             "\(name): batched R at (\(row), \(position))")
                    let own = -cache.meanLoss(row: row, positions: (position + 1)..<(position + 1 + doc.K))
                    XCTAssertEqual(own, Double(baselines[row * doc.M + i]), accuracy: 1e-5, "\(name): baseline")
                }
            }

            objective.prepare(cache: cache, step: 1)
            model.backward(cache: cache) { objective.addPolicyGradient(to: $0) }
            var worst = 0.0
            for e in model.params.entries {
                let expected = try file.floats("grad.\(e.name)")
                let got = Array(UnsafeBufferPointer(start: model.params.grads + e.offset, count: e.count))
                let error = relativeError(got, expected)
                worst = max(worst, error)
                XCTAssertLessThanOrEqual(error, 1e-4, "\(name): \(e.name)")
            }
            XCTAssertEqual(objective.statistics.positions, b * doc.M)
            // The policy term alone (its gradient is a few percent of the whole).
            model.params.zeroGrads()
            model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
            objective.prepare(cache: cache, step: 1)
            model.backward(cache: cache) { dLogits in
                dLogits.update(repeating: 0, count: b * t * v)
                objective.addPolicyGradient(to: dLogits)
            }
            var worstPolicy = 0.0
            for e in model.params.entries {
                let expected = try file.floats("policy_grad.\(e.name)")
                let got = Array(UnsafeBufferPointer(start: model.params.grads + e.offset, count: e.count))
                guard expected.contains(where: { $0 != 0 }) else { continue }
                let error = relativeError(got, expected)
                worstPolicy = max(worstPolicy, error)
                XCTAssertLessThanOrEqual(error, 1e-4, "\(name): policy term, \(e.name)")
            }
            print("\(name): exact consequence gradient vs PyTorch, worst relative error per tensor \(worst) "
                  + "(policy term alone \(worstPolicy)); R(v) worst error relative to the largest \(worstReward)")
        }
    }

    /// The sampled estimator's policy-gradient part, averaged over 2,000 draws (steps 1 … 2,000, fixed
    /// positions), against the exact expectation (PyTorch's policy gradient). Statistic, per
    /// parameter tensor g: each draw's gradient is projected on two fixed unit directions, u_g (the
    /// exact gradient of g, normalised) and r_g (seeded Gaussian, normalised); the mean projection
    /// must lie within 3 standard errors (sample SD / √n) of the exact gradient's projection. The
    /// same on the whole parameter vector.
    func testSampledEstimatorAveragesToTheExactGradient() throws {
        let draws = 2_000
        for name in Self.families {
            let (model, doc, file) = try loadFixture(name)
            let b = doc.B, t = doc.T, v = model.config.vocabSize
            let inputs = doc.tokens.flatMap { $0.dropLast() }, targets = doc.tokens.flatMap { $0.dropFirst() }
            let cache = model.makeCache(batch: b, seqLen: t)
            let objective = ConsequenceObjective(model: model, batch: b, seqLen: t, settings: settings(doc, .sampled),
                                                 random: KeyedRandom(seed: 7))
            objective.fixedPositions = doc.positions.flatMap { $0 }
            let entries = model.params.entries
            var exact: [[Double]] = [], directions: [[[Double]]] = []   // per tensor: u_g, r_g
            var rng = SeededGenerator(seed: 99)
            for e in entries {
                let g = try file.floats("policy_grad.\(e.name)").map(Double.init)
                let norm = g.reduce(0) { $0 + $1 * $1 }.squareRoot()
                var r = (0..<e.count).map { _ in rng.nextNormal() }
                let rNorm = r.reduce(0) { $0 + $1 * $1 }.squareRoot()
                r = r.map { $0 / rNorm }
                exact.append(g)
                directions.append([norm > 0 ? g.map { $0 / norm } : g, r])
            }
            // Projections: [tensor][direction] running sums, and the whole vector's two directions.
            var sum = [[Double]](repeating: [0, 0], count: entries.count), sumSquares = sum
            var total = [0.0, 0.0], totalSquares = [0.0, 0.0]
            var drawn = Set<[Int32]>()
            for step in 1...draws {
                model.params.zeroGrads()
                model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
                objective.prepare(cache: cache, step: step)
                model.backward(cache: cache) { dLogits in
                    dLogits.update(repeating: 0, count: b * t * v)   // the policy term alone
                    objective.addPolicyGradient(to: dLogits)
                }
                drawn.insert((0..<b).flatMap { objective.drawnTokens(row: $0) })
                var whole = [0.0, 0.0]
                for (i, e) in entries.enumerated() {
                    let g = model.params.grads + e.offset
                    for d in 0..<2 {
                        var y = 0.0
                        for j in 0..<e.count { y += Double(g[j]) * directions[i][d][j] }
                        sum[i][d] += y
                        sumSquares[i][d] += y * y
                        whole[d] += y
                    }
                }
                for d in 0..<2 {
                    total[d] += whole[d]
                    totalSquares[d] += whole[d] * whole[d]
                }
            }
            XCTAssertGreaterThan(drawn.count, 100, "\(name): the draws do not vary with the step")
            let n = Double(draws)
            func check(_ s: Double, _ s2: Double, expected: Double, _ what: String) -> Double {
                let mean = s / n, sd = ((s2 - n * mean * mean) / (n - 1)).squareRoot(), se = sd / n.squareRoot()
                let z = se > 0 ? abs(mean - expected) / se : (mean == expected ? 0 : .infinity)
                XCTAssertLessThanOrEqual(z, 3, "\(name): \(what): mean \(mean), exact \(expected), SE \(se)")
                return z
            }
            var worst = 0.0, checked = 0
            for (i, e) in entries.enumerated() {
                for d in 0..<2 {
                    let expected = zip(exact[i], directions[i][d]).reduce(0) { $0 + $1.0 * $1.1 }
                    if d == 0 && expected == 0 { continue }   // no exact gradient: no direction u_g
                    worst = max(worst, check(sum[i][d], sumSquares[i][d], expected: expected,
                                             "\(e.name) along \(d == 0 ? "the exact gradient" : "a random direction")"))
                    checked += 1
                }
            }
            for d in 0..<2 {
                let expected = (0..<entries.count).reduce(0.0) { acc, i in
                    acc + zip(exact[i], directions[i][d]).reduce(0) { $0 + $1.0 * $1.1 }
                }
                worst = max(worst, check(total[d], totalSquares[d], expected: expected, "whole model, direction \(d)"))
            }
            XCTAssertGreaterThan(checked, entries.count, "\(name): too few tensors compared")
            print("\(name): sampled vs exact over \(draws) draws: \(checked + 2) projections, largest |mean − exact| / SE = \(worst)")
        }
    }

    // MARK: - Teacher forcing through the game's path

    /// With a final soft-cap (Gemma 2's fixture: cap 1.5), backward carries the gradient of the
    /// logits before the cap, and the policy term goes through the cap's derivative as the
    /// cross-entropy does. λ = 0, or every reward forced to 0, still adds exact zeros: the game's
    /// gradient is the plain backward's bit for bit (both estimators); λ > 0 is not.
    func testSoftCappedLogitsKeepTheReductionsBitForBit() throws {
        let (model, doc, _) = try loadFixture("gemma2")
        XCTAssertNotNil(model.config.finalSoftcap)
        let b = doc.B, t = doc.T
        let inputs = doc.tokens.flatMap { $0.dropLast() }, targets = doc.tokens.flatMap { $0.dropFirst() }
        let cache = model.makeCache(batch: b, seqLen: t)
        model.params.zeroGrads()
        model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
        model.backward(cache: cache)
        let plain = model.params.gradArray()
        for estimator in ConsequenceEstimator.allCases {
            for (weight, forced) in [(0.0, nil), (doc.lambda, Float(0)), (doc.lambda, nil)] as [(Double, Float?)] {
                let objective = ConsequenceObjective(model: model, batch: b, seqLen: t,
                                                     settings: ConsequenceSettings(weight: weight, horizon: doc.K,
                                                                                   positions: doc.M, estimator: estimator),
                                                     random: KeyedRandom(seed: 3))
                objective.forcedReward = forced
                model.params.zeroGrads()
                model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
                objective.prepare(cache: cache, step: 1)
                model.backward(cache: cache) { objective.addPolicyGradient(to: $0) }
                let game = model.params.gradArray()
                if weight == 0 || forced != nil {
                    XCTAssertTrue(game == plain, "\(estimator) λ = \(weight), forced reward \(String(describing: forced))")
                } else {
                    XCTAssertFalse(game == plain, "\(estimator): the policy term changed nothing")
                }
            }
        }
    }

    /// 20 AdamW steps of a small model: λ = 0 (sampled and exact), and λ = 0.7 with every reward
    /// forced to 0, give teacher forcing's weights bit for bit; λ = 0.7 with the real rewards does not.
    func testZeroWeightAndForcedRewardAreTeacherForcingBitForBit() throws {
        let b = 3, t = 8, steps = 20
        let initial = smallLlama()
        let v = initial.config.vocabSize
        func batch(_ step: Int) -> (inputs: [Int32], targets: [Int32]) {
            let stream = (0..<(b * (t + 1))).map { Int32(($0 * 7 + step * 3 + ($0 / 5)) % v) }
            var inputs: [Int32] = [], targets: [Int32] = []
            for r in 0..<b {
                let row = stream[(r * (t + 1))..<((r + 1) * (t + 1))]
                inputs += row.dropLast()
                targets += row.dropFirst()
            }
            return (inputs, targets)
        }
        func train(_ settings: ConsequenceSettings?, forcedReward: Float? = nil) throws -> [Float] {
            let model = initial.copy()
            let cache = model.makeCache(batch: b, seqLen: t)
            let step = TrainingStep(model: model, optimizer: AdamW(), clip: 1)
            let objective = settings.map {
                ConsequenceObjective(model: model, batch: b, seqLen: t, settings: $0, random: KeyedRandom(seed: 5))
            }
            objective?.forcedReward = forcedReward
            for s in 1...steps {
                let (inputs, targets) = batch(s)
                if let objective {
                    try step.run(step: s, lr: 1e-2, forward: {
                        let loss = model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
                        objective.prepare(cache: cache, step: s)
                        return loss
                    }, backward: {
                        model.backward(cache: cache) { objective.addPolicyGradient(to: $0) }
                    })
                } else {
                    try step.run(step: s, lr: 1e-2, cache: cache) {
                        model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
                    }
                }
            }
            return model.params.weightArray()
        }
        let teacherForced = try train(nil)
        let game = ConsequenceSettings(weight: 0.7, horizon: 3, positions: 2)
        var zero = game
        zero.weight = 0
        XCTAssertTrue(try train(zero) == teacherForced, "λ = 0 (sampled) differs from teacher forcing")
        zero.estimator = .exact
        XCTAssertTrue(try train(zero) == teacherForced, "λ = 0 (exact) differs from teacher forcing")
        XCTAssertTrue(try train(game, forcedReward: 0) == teacherForced, "reward forced to 0 (sampled) differs")
        var exact = game
        exact.estimator = .exact
        XCTAssertTrue(try train(exact, forcedReward: 0) == teacherForced, "reward forced to 0 (exact) differs")
        XCTAssertFalse(try train(game) == teacherForced, "λ = 0.7 left the weights as teacher forcing's")
        XCTAssertFalse(try train(exact) == teacherForced, "λ = 0.7 (exact) left the weights as teacher forcing's")
    }

    // MARK: - Draws

    /// Positions are M distinct values in 0 … T−1−K, vary with the step and the window, and neither
    /// they nor the gradient depend on the thread count.
    func testDrawsAreDistinctAndIndependentOfThreads() throws {
        let model = smallLlama()
        let b = 3, t = 10, v = model.config.vocabSize
        let settings = ConsequenceSettings(weight: 0.5, horizon: 3, positions: 4)
        let inputs = (0..<(b * t)).map { Int32(($0 * 5 + 2) % v) }, targets = (0..<(b * t)).map { Int32(($0 * 3 + 1) % v) }
        func run(threads: Int, step: Int) -> (positions: [[Int]], grads: [Float], statistics: ConsequenceObjective.Statistics) {
            let saved = Parallel.threadCount
            Parallel.threadCount = threads
            defer { Parallel.threadCount = saved }
            let cache = model.makeCache(batch: b, seqLen: t)
            let objective = ConsequenceObjective(model: model, batch: b, seqLen: t, settings: settings,
                                                 random: KeyedRandom(seed: 11))
            model.params.zeroGrads()
            model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
            objective.prepare(cache: cache, step: step)
            model.backward(cache: cache) { objective.addPolicyGradient(to: $0) }
            return ((0..<b).map { objective.positions(row: $0) }, model.params.gradArray(), objective.statistics)
        }
        var seen = Set<[Int]>()
        for step in 1...6 {
            let one = run(threads: 1, step: step), three = run(threads: 3, step: step)
            XCTAssertEqual(one.positions, three.positions)
            XCTAssertTrue(one.grads == three.grads, "step \(step): the gradient depends on the thread count")
            XCTAssertEqual(one.statistics, three.statistics)
            for p in one.positions {
                XCTAssertEqual(Set(p).count, settings.positions, "positions repeat: \(p)")
                XCTAssertTrue(p.allSatisfy { (0...(t - 1 - settings.horizon)).contains($0) }, "\(p)")
                seen.insert(p)
            }
        }
        XCTAssertGreaterThan(seen.count, 6, "positions barely vary with step and window")
    }

    // MARK: - Settings

    func testSettingsAreValidated() {
        func settings(_ k: Int, _ m: Int, _ estimator: ConsequenceEstimator = .sampled) -> ConsequenceSettings {
            ConsequenceSettings(weight: 1, horizon: k, positions: m, estimator: estimator)
        }
        XCTAssertNoThrow(try ConsequenceObjective.validate(settings(7, 1), seqLen: 8, vocabSize: 50))
        XCTAssertNoThrow(try ConsequenceObjective.validate(settings(1, 7, .exact), seqLen: 8, vocabSize: 1024))
        _ = assertInputError(try ConsequenceObjective.validate(settings(0, 1), seqLen: 8, vocabSize: 50),
                             "invalidValue", field: "consequence_horizon")
        _ = assertInputError(try ConsequenceObjective.validate(settings(8, 1), seqLen: 8, vocabSize: 50),
                             "invalidValue", field: "consequence_horizon")
        _ = assertInputError(try ConsequenceObjective.validate(settings(3, 6), seqLen: 8, vocabSize: 50),
                             "invalidValue", field: "consequence_positions")
        _ = assertInputError(try ConsequenceObjective.validate(settings(3, 0), seqLen: 8, vocabSize: 50),
                             "invalidValue", field: "consequence_positions")
        _ = assertInputError(try ConsequenceObjective.validate(settings(2, 2, .exact), seqLen: 8, vocabSize: 1025),
                             "invalidValue", field: "consequence_estimator", reason: "1024")
        var nan = settings(2, 2)
        nan.weight = .nan
        _ = assertInputError(try ConsequenceObjective.validate(nan, seqLen: 8, vocabSize: 50),
                             "invalidValue", field: "consequence_weight")
    }
}
