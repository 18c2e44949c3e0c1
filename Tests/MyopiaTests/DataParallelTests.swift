import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// The data-parallel step without MPI: the shard plan, the ordered shard sum, and the step over 1, 2
/// and 3 ranks simulated by threads in one process (ThreadGroup below, the same collectives as MPI
/// gives), which must agree bit for bit; and the sharded gradient against the whole batch's.
final class DataParallelTests: XCTestCase {
    func testShardPlanSpreadsContiguousRunsOverTheRanks() {
        let plan = ShardPlan(shards: 4, ranks: 3)
        XCTAssertEqual((0..<3).map { plan.shards(of: $0) }, [0..<1, 1..<2, 2..<4])
        XCTAssertEqual((0..<4).map { plan.rank(of: $0) }, [0, 1, 2, 2])
        XCTAssertEqual(ShardPlan(shards: 5, ranks: 1).shards(of: 0), 0..<5)
        let spans = WindowSpans(batches: 5, batch: 4, windows: 18, ranks: 3)
        XCTAssertEqual((0..<3).map { spans.windows(of: $0) }, [0..<4, 4..<12, 12..<18])
    }

    /// `myopia gradients`' sum: n batches, batch k on rank k mod N, folded by the chunks' owners
    /// round after round: ((g0 + g1) + g2) + … on every rank, for 1, 2 and 3 ranks, with a partial
    /// last round (5 batches on 2 and 3 ranks) and with fewer batches than ranks (2 on 3).
    func testOrderedBatchSumFoldsInBatchOrderOnAnyNumberOfRanks() {
        let p = 301
        for n in [5, 2] {
            let g = (0..<n).map { randomFloats(p, seed: UInt64(20 + $0)) }
            var expected = g[0]
            for k in 1..<n { for j in 0..<p { expected[j] = expected[j] + g[k][j] } }
            var rightFirst = g[n - 1]
            for k in stride(from: n - 2, through: 0, by: -1) { for j in 0..<p { rightFirst[j] = g[k][j] + rightFirst[j] } }
            // (Two terms add alike in either order.)
            if n > 2 { XCTAssertTrue(expected != rightFirst, "the data should tell the orders apart") }
            for ranks in 1...3 {
                let sums = ThreadGroup.run(ranks: ranks) { group -> [Float] in
                    let sum = OrderedBatchSum(count: p, batches: n, group: group)
                    var buffer = [Float](repeating: .nan, count: p)
                    for round in 0..<sum.rounds {
                        if let k = sum.batch(of: group.rank, inRound: round) { buffer = g[k] }
                        sum.add(round: round, &buffer)
                    }
                    sum.finish(into: &buffer)
                    return buffer
                }
                for r in 0..<ranks { XCTAssertTrue(sums[r] == expected, "\(n) batches, \(ranks) ranks: rank \(r)") }
            }
        }
    }

    /// One process: ((g0 + g1) + g2), written into the last shard's buffer; S = 1 leaves it alone.
    func testOneProcessFoldsInShardOrder() {
        let p = 1000
        var rng = SeededGenerator(seed: 3)
        let g = (0..<3).map { _ in (0..<p).map { _ in Float(rng.nextInt(below: 2001) - 1000) * 1.37e-3 } }
        let sum = OrderedShardSum(count: p, plan: ShardPlan(shards: 3, ranks: 1), group: SingleProcess())
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: p)
        defer { buffer.deallocate() }
        for i in 0..<3 {
            buffer.update(from: g[i], count: p)
            sum.deposit(i, buffer)
        }
        sum.finish(into: buffer)
        var leftFirst = [Float](repeating: 0, count: p), rightFirst = leftFirst
        for j in 0..<p {
            let a: Float = g[0][j], b: Float = g[1][j], c: Float = g[2][j]
            leftFirst[j] = (a + b) + c
            rightFirst[j] = a + (b + c)
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: buffer, count: p)), leftFirst)
        XCTAssertNotEqual(leftFirst, rightFirst, "the data should tell the two orders apart")
        let one = OrderedShardSum(count: p, plan: ShardPlan(shards: 1, ranks: 1), group: SingleProcess())
        buffer.update(from: g[2], count: p)
        one.deposit(0, buffer)
        one.finish(into: buffer)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: buffer, count: p)), g[2])
    }

    func model() -> Transformer {
        let m = Transformer(config: ModelConfig(vocabSize: 64, maxPositions: 8, dModel: 16, nLayers: 2, nHeads: 2, tokenizer: nil))
        m.initialize(seed: 5)
        return m
    }

    func batch(_ b: Int, _ t: Int) -> (inputs: [Int32], targets: [Int32]) {
        var rng = SeededGenerator(seed: 11)
        return ((0..<(b * t)).map { _ in Int32(rng.nextInt(below: 64)) }, (0..<(b * t)).map { _ in Int32(rng.nextInt(below: 64)) })
    }

    /// S = 4 shards on 1, 2 and 3 ranks (3: 1, 1 and 2 shards each): the same gradient and loss, bit for bit,
    /// in one bucket or many, their exchange started after backward or during it.
    func testSameBitsOnOneTwoAndThreeRanks() {
        let (b, t, s) = (8, 8, 4)
        let (x, y) = batch(b, t)
        let one = ThreadGroup.run(ranks: 1) { group -> ([Float], Float) in
            let m = self.model()
            let loss = DataParallelStep(model: m, batch: b, seqLen: t, shards: s, group: group).gradient(inputs: x, targets: y)
            return (m.params.gradArray(), loss)
        }[0]
        for n in 2...3 {
            for (bucket, overlap) in [(Distributed.Exchange.standard.bucketFloats, false), (997, false), (997, true), (61, true)] {
                let outcome = ThreadGroup.run(ranks: n) { group -> ([Float], Float, Int) in
                    let m = self.model()
                    let step = DataParallelStep(model: m, batch: b, seqLen: t, shards: s, group: group,
                                                bucketFloats: bucket, overlap: overlap)
                    let loss = step.gradient(inputs: x, targets: y)
                    return (m.params.gradArray(), loss, step.sum.buckets.count)
                }
                let label = "\(n) ranks, buckets of \(bucket), overlap \(overlap)"
                XCTAssertEqual(outcome[0].2, (one.0.count + bucket - 1) / bucket, label)
                for r in 0..<n {
                    XCTAssertTrue(outcome[r].0 == one.0, "\(label): rank \(r)'s gradient differs from one process's")
                    XCTAssertEqual(outcome[r].1, one.1, label)
                }
            }
        }
    }

    /// `gradientsComplete` keeps its promise: no gradient at or after an offset it reports changes
    /// for the rest of backward — the plain head, a tied GPT-2 with learned positions, and extra
    /// prediction heads — and the offsets it reports go down to 0.
    func testGradientsCompleteOffsetsAreFinal() {
        var configs = [ModelConfig(vocabSize: 64, maxPositions: 8, dModel: 16, nLayers: 3, nHeads: 2, tokenizer: nil)]
        var llama = ModelConfig(vocabSize: 64, maxPositions: 8, dModel: 16, nLayers: 2, nHeads: 2, tokenizer: nil)
        llama.family = .llama
        llama.tiedEmbeddings = false
        llama.predictionHeads = 3
        configs.append(llama)
        for config in configs {
            let m = Transformer(config: config)
            m.initialize(seed: 3)
            let (x, y) = batch(2, 8)
            let cache = m.makeCache(batch: 2, seqLen: 8)
            var seen: [(Int, [Float])] = []
            m.gradientsComplete = { o in seen.append((o, Array(UnsafeBufferPointer(start: m.params.grads + o, count: m.params.count - o)))) }
            m.params.zeroGrads()
            m.forward(tokens: x, targets: y, batch: 2, seqLen: 8, cache: cache)
            if config.predictionHeads > 1 {
                _ = m.forwardPredictionHeads(cache: cache)
                m.backwardPredictionHeads(cache: cache)
            } else {
                m.backward(cache: cache)
            }
            m.gradientsComplete = nil
            XCTAssertEqual(seen.map(\.0), m.blockStarts.reversed() + [0], "\(config.family)")
            let final = m.params.gradArray()
            for (o, snapshot) in seen {
                XCTAssertTrue(Array(final[o...]) == snapshot, "\(config.family): a gradient after \(o) changed later")
            }
            XCTAssertTrue(final.contains { $0 != 0 })
        }
    }

    /// The shards' gradients add up to the whole batch's mean-loss gradient (to rounding).
    func testShardsAddUpToTheWholeBatchGradient() {
        let (b, t) = (8, 8)
        let (x, y) = batch(b, t)
        let whole = model()
        let cache = whole.makeCache(batch: b, seqLen: t)
        whole.params.zeroGrads()
        let loss = whole.forward(tokens: x, targets: y, batch: b, seqLen: t, cache: cache)!
        whole.backward(cache: cache)
        let expected = whole.params.gradArray()
        let sharded = model()
        let step = DataParallelStep(model: sharded, batch: b, seqLen: t, shards: 4, group: SingleProcess())
        let shardedLoss = x.withUnsafeBufferPointer { x in
            y.withUnsafeBufferPointer { y in step.gradient(inputs: x.baseAddress!, targets: y.baseAddress!) }
        }
        XCTAssertEqual(shardedLoss, loss, accuracy: 1e-5 * abs(loss))
        let got = sharded.params.gradArray()
        let scale = expected.map(abs).max()!
        XCTAssertGreaterThan(scale, 0)
        for i in expected.indices { XCTAssertEqual(got[i], expected[i], accuracy: 1e-5 * scale, "element \(i)") }
    }

    /// The local-myopic flow under shards: each shard's forward runs the frozen reference on that
    /// shard's windows; the same bits on 1, 2 and 3 ranks, and (to rounding) the whole batch's gradient.
    func testLocalMyopicShardsGiveTheSameBitsOnAnyNumberOfRanks() {
        let (b, t, s) = (8, 8, 4)
        let (x, y) = batch(b, t)
        func trained() -> Transformer {
            let m = model()
            m.initialize(seed: 6)   // not the reference: the flow's past and present differ
            m.flow = .localMyopic
            m.reference = model()
            return m
        }
        var results: [[Float]] = []
        for n in 1...3 {
            let outcome = ThreadGroup.run(ranks: n) { group -> [Float] in
                let m = trained()
                _ = DataParallelStep(model: m, batch: b, seqLen: t, shards: s, group: group).gradient(inputs: x, targets: y)
                return m.params.gradArray()
            }
            for r in 1..<n { XCTAssertTrue(outcome[r] == outcome[0], "\(n) ranks: rank \(r) differs") }
            results.append(outcome[0])
        }
        XCTAssertTrue(results[1] == results[0], "2 ranks differ from one process")
        XCTAssertTrue(results[2] == results[0], "3 ranks differ from one process")
        let whole = trained(), cache = whole.makeCache(batch: b, seqLen: t)
        whole.params.zeroGrads()
        whole.forward(tokens: x, targets: y, batch: b, seqLen: t, cache: cache)
        whole.backward(cache: cache)
        let expected = whole.params.gradArray(), scale = expected.map(abs).max()!
        XCTAssertGreaterThan(scale, 0)
        for i in expected.indices { XCTAssertEqual(results[0][i], expected[i], accuracy: 1e-5 * scale, "element \(i)") }
    }

    /// Under shards the gradient split (log_gradient_split) measures each flow's gradient as the
    /// sharded step computes it, and a local-myopic run trains: a run on 2 threads-as-ranks ends
    /// with one process's weights and split, bit for bit, and the split is the whole batch's (to rounding).
    func testGradientSplitAndLocalMyopicRunUnderShardsOnOneAndTwoRanks() throws {
        var c = TrainConfig()
        c.layers = 2; c.heads = 2; c.dModel = 32; c.seqLen = 16; c.batch = 4; c.shards = 2
        c.steps = 4; c.warmup = 1; c.evalEvery = 4; c.evalWindows = 4; c.logEvery = 2; c.checkpointEvery = 4
        c.logGradientSplit = 2
        c.flow = .localMyopic
        c.reference = "reference"
        try c.validate()
        let text = TokenDataset.split(ByteTokenizer().encode(String(repeating: "to be or not to be, that is the question. ", count: 40)),
                                      validationFraction: 0.2, source: "inline")
        let reference = Transformer(config: c.modelConfig(vocabSize: 256))
        reference.initialize(seed: 4)
        func train(_ config: TrainConfig, ranks: Int) throws -> [(weights: [Float], split: [String: GradientSplitStats])] {
            let out = try temporaryDirectory(self)
            return ThreadGroup.run(ranks: ranks) { group in
                let trainer = try! Trainer(config: config, dataset: text, out: out, reference: reference, group: group)
                let last = try! trainer.run()
                return (trainer.model.params.weightArray(), last!.gradientSplit!)
            }
        }
        let one = try train(c, ranks: 1)[0], two = try train(c, ranks: 2)
        for r in 0..<2 {
            XCTAssertTrue(two[r].weights == one.weights, "rank \(r): the weights differ from one process's")
            XCTAssertEqual(two[r].split, one.split, "rank \(r)")
        }
        XCTAssertEqual(Set(one.split.keys), ["embeddings", "h.0.attn", "h.0.mlp", "h.1.attn", "h.1.mlp", "final"])
        var whole = c
        whole.shards = 1
        let unsharded = try train(whole, ranks: 1)[0]
        // Earlier layers' gradients have a future part; the last MLP and the final norm act per position.
        for group in ["embeddings", "h.0.attn", "h.0.mlp", "h.1.attn"] { XCTAssertGreaterThan(unsharded.split[group]?.futureNorm ?? 0, 0, group) }
        for (group, stats) in unsharded.split {
            let sharded = try XCTUnwrap(one.split[group])
            XCTAssertEqual(sharded.vanillaNorm, stats.vanillaNorm, accuracy: 1e-3 * stats.vanillaNorm, group)
            XCTAssertEqual(sharded.futureNorm, stats.futureNorm, accuracy: 1e-3 * stats.vanillaNorm, group)
        }
    }

    /// A run with shards records them, trains, and repeats itself bit for bit.
    func testTrainerWithShardsRecordsThemAndRepeats() throws {
        var c = TrainConfig()
        c.layers = 2; c.heads = 2; c.dModel = 32; c.seqLen = 16; c.batch = 4; c.shards = 2
        c.steps = 4; c.warmup = 1; c.evalEvery = 4; c.evalWindows = 4; c.logEvery = 2; c.checkpointEvery = 4
        let text = TokenDataset.split(ByteTokenizer().encode(String(repeating: "to be or not to be, that is the question. ", count: 40)),
                                      validationFraction: 0.2, source: "inline")
        var weights: [[Float]] = []
        for _ in 0..<2 {
            let out = try temporaryDirectory(self)
            let trainer = try Trainer(config: c, dataset: text, out: out)
            let last = try trainer.run()
            XCTAssertNotNil(last?.valLoss)
            XCTAssertEqual(last?.reduceBytes, 0)
            let recorded = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(Trainer.runConfigFile))) as? [String: Any]
            XCTAssertEqual(recorded?["shards"] as? Int, 2)
            weights.append(trainer.model.params.weightArray())
        }
        XCTAssertTrue(weights[0] == weights[1])
        c.batch = 6; c.shards = 4
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("shards"), "\($0)") }
        c.batch = 4; c.game = .multiToken(heads: 2)
        XCTAssertNoThrow(try c.validate(), "every game trains in shards")
    }

    // MARK: - The games in shards

    /// Every game but teacher forcing (that is above), with knobs that draw often; masked targets
    /// below make the counts differ from shard to shard.
    static let games: [TrainingGame] = [
        .scheduledSampling(rate: 0.5),
        .consequence(ConsequenceSettings(weight: 0.7, horizon: 2, positions: 2, estimator: .sampled)),
        .consequence(ConsequenceSettings(weight: 0.7, horizon: 2, positions: 3, estimator: .exact)),
        .multiToken(heads: 3),
    ]

    func gameModel(_ game: TrainingGame) -> Transformer {
        var config = ModelConfig(vocabSize: 64, maxPositions: 8, dModel: 16, nLayers: 2, nHeads: 2, tokenizer: nil)
        if case .multiToken(let heads) = game { config.predictionHeads = heads }
        let m = Transformer(config: config)
        m.initialize(seed: 5)
        return m
    }

    func maskedBatch(_ b: Int, _ t: Int) -> (inputs: [Int32], targets: [Int32]) {
        var (x, y) = batch(b, t)
        for i in stride(from: 3, to: y.count, by: 7) { y[i] = -1 }
        for i in 0..<t { y[5 * t + i] = -1 }   // window 5 (in shard 2 of 4) has no target at all
        return (x, y)
    }

    /// S = 4 shards on 1, 2 and 3 ranks, under each game: the same gradient, loss and statistics
    /// (replacements, rewards, the heads' losses), bit for bit.
    func testEveryGameGivesTheSameBitsOnOneTwoAndThreeRanks() {
        let (b, t, s) = (8, 8, 4)
        let (x, y) = maskedBatch(b, t)
        for game in Self.games {
            var reference: (gradient: [Float], loss: Float, statistics: GameRunner.Statistics)?
            for n in 1...3 {
                let outcome = ThreadGroup.run(ranks: n) { group -> ([Float], Float, GameRunner.Statistics) in
                    let m = self.gameModel(game)
                    let step = DataParallelStep(model: m, batch: b, seqLen: t, shards: s, group: group, game: game, seed: 9)
                    let loss = step.gradient(step: 3, inputs: x, targets: y)
                    return (m.params.gradArray(), loss, step.runner.last)
                }
                for r in 1..<n {
                    XCTAssertTrue(outcome[r].0 == outcome[0].0, "\(game), \(n) ranks: rank \(r)'s gradient differs from rank 0's")
                    XCTAssertEqual(outcome[r].1, outcome[0].1)
                    XCTAssertEqual(outcome[r].2, outcome[0].2)
                }
                XCTAssertTrue(outcome[0].1.isFinite, "\(game)")
                guard let reference else {
                    reference = outcome[0]
                    continue
                }
                XCTAssertTrue(outcome[0].0 == reference.gradient, "\(game): \(n) ranks differ from one process")
                XCTAssertEqual(outcome[0].1, reference.loss, "\(game)")
                XCTAssertEqual(outcome[0].2, reference.statistics, "\(game)")
            }
        }
    }

    /// The shards of each game add up to the game's whole-batch step (to rounding): every loss is
    /// normalised over the global batch (its counted targets, each head's, the B·M pairs) and every
    /// draw is keyed by the window's place in it, so the shards draw what the whole batch draws.
    func testShardedGamesAddUpToTheWholeBatchStep() {
        let (b, t) = (8, 8)
        let (x, y) = maskedBatch(b, t)
        for game in Self.games {
            let whole = gameModel(game)
            let runner = GameRunner(game: game, model: whole, cache: whole.makeCache(batch: b, seqLen: t), batch: b, seqLen: t, seed: 9)
            let loss = x.withUnsafeBufferPointer { x in
                y.withUnsafeBufferPointer { y in runner.gradient(step: 3, inputs: x.baseAddress!, targets: y.baseAddress!) }
            }!
            let expected = whole.params.gradArray()
            let sharded = gameModel(game)
            let step = DataParallelStep(model: sharded, batch: b, seqLen: t, shards: 4, group: SingleProcess(), game: game, seed: 9)
            let shardedLoss = step.gradient(step: 3, inputs: x, targets: y)
            XCTAssertEqual(shardedLoss, loss, accuracy: 1e-5 * abs(loss), "\(game)")
            let got = sharded.params.gradArray()
            let scale = expected.map(abs).max()!
            XCTAssertGreaterThan(scale, 0)
            var worst: Float = 0
            for i in expected.indices { worst = max(worst, abs(got[i] - expected[i])) }
            XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "\(game): the shards' gradient is off the whole batch's")
            let a = runner.last, c = step.runner.last
            XCTAssertEqual(c.nextTokenLoss, a.nextTokenLoss, accuracy: 1e-5 * abs(a.nextTokenLoss), "\(game)")
            XCTAssertEqual(c.inputsEligible, a.inputsEligible)
            XCTAssertEqual(c.inputsReplaced, a.inputsReplaced, "\(game): the same draws")
            XCTAssertEqual(c.inputsChanged, a.inputsChanged, "\(game): the same samples")
            if case .scheduledSampling = game { XCTAssertGreaterThan(a.inputsReplaced, 0) }
            XCTAssertEqual(c.consequence?.positions, a.consequence?.positions)
            XCTAssertEqual(c.consequence?.drewTrueToken, a.consequence?.drewTrueToken, "\(game): the same samples")
            if let p = a.consequence, let q = c.consequence {
                XCTAssertEqual(p.positions, b * (game == Self.games[1] ? 2 : 3))
                for (u, v) in [(p.meanReward, q.meanReward), (p.meanBaseline, q.meanBaseline), (p.meanAdvantage, q.meanAdvantage),
                               (p.meanAbsoluteAdvantage, q.meanAbsoluteAdvantage), (p.policyLoss, q.policyLoss)] {
                    XCTAssertEqual(v, u, accuracy: 1e-5 * max(1, abs(u)), "\(game)")
                }
                XCTAssertNotEqual(p.policyLoss, 0)
            }
        }
    }
}
