import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
import MyopiaKernels
@testable import MyopiaLab

/// Probes without a model first (planted structure must probe near 100%, noise at the unigram
/// baseline, a one-hot of the current token at the current-token baseline), then on a sine-task
/// model, where only vanilla training caches sin(f·x_n) at n.
final class ProbeTests: XCTestCase {
    /// i.i.d. tokens from a Zipf-like distribution over `vocab` ids: nothing about the future is
    /// knowable from the past, so both baselines are the unigram.
    static func zipfTokens(_ count: Int, vocab: Int, seed: UInt64) -> [Int32] {
        var rng = SeededGenerator(seed: seed)
        let weights = (1...vocab).map { 1 / Double($0) }, total = weights.reduce(0, +)
        var cumulative: [Double] = []
        var running = 0.0
        for w in weights { running += w / total; cumulative.append(running) }
        return (0..<count).map { _ in
            let u = rng.nextUnit()
            return Int32(cumulative.firstIndex { $0 >= u } ?? vocab - 1)
        }
    }

    /// Probe data over a token stream: row i sits on stream[i]; rows come in windows of 64.
    static func data(stream: [Int32], rows: Int, offsets: [Int], features: (Int) -> [Float], width: Int) -> ProbeData {
        var matrix = FeatureMatrix(width: width)
        var values: [Float] = []
        for r in 0..<rows { values += features(r) }
        matrix.append(values)
        let future = offsets.map { k in (0..<rows).map { r in r + 1 + k < stream.count ? stream[r + 1 + k] : -1 } }
        return ProbeData(features: [matrix], current: Array(stream[0..<rows]), future: future, group: (0..<rows).map { $0 / 64 })
    }

    static func embeddings(vocab: Int, width: Int, seed: UInt64) -> [[Float]] {
        var rng = SeededGenerator(seed: seed)
        return (0..<vocab).map { _ in (0..<width).map { _ in Float(rng.nextNormal()) } }
    }

    /// The hidden state holds the token two ahead (offset 1), in a random embedding, plus noise:
    /// the probe reads it almost perfectly at offset 1 — the "other" class included — and knows
    /// nothing at offsets 0 and 2.
    func testPlantedFutureTokenProbesNearPerfectly() throws {
        let vocab = 50, width = 64, rows = 12_000
        let stream = Self.zipfTokens(rows + 8, vocab: vocab, seed: 1)
        let table = Self.embeddings(vocab: vocab, width: width, seed: 2)
        var rng = SeededGenerator(seed: 3)
        let noise = (0..<(rows * width)).map { _ in Float(0.1 * rng.nextNormal()) }
        let data = Self.data(stream: stream, rows: rows, offsets: [0, 1, 2], features: { r in
            (0..<width).map { table[Int(stream[r + 2])][$0] + noise[r * width + $0] }
        }, width: width)
        let result = TokenProbes.run(data, layers: [0], offsets: [0, 1, 2], top: 20)
        XCTAssertEqual(result.classes, 21)
        XCTAssertLessThan(result.coverage, 0.95, "some targets must fall in \"other\"")
        XCTAssertGreaterThan(result.accuracy[0][1], 0.99, "\(result.accuracy)")
        XCTAssertLessThan(result.loss[0][1], 0.1, "\(result.loss)")
        for j in [0, 2] {
            XCTAssertEqual(result.loss[0][j], result.unigramLoss[j], accuracy: 0.08, "offset \(j)")
            XCTAssertEqual(result.accuracy[0][j], result.unigramAccuracy[j], accuracy: 0.02, "offset \(j)")
        }
        // i.i.d. tokens: the current token tells nothing either.
        for j in 0..<3 { XCTAssertEqual(result.currentTokenLoss[j], result.unigramLoss[j], accuracy: 0.05) }
        XCTAssertEqual(result.trainPositions + result.heldOutPositions, rows)
        XCTAssertEqual(Double(result.heldOutPositions) / Double(rows), 0.2, accuracy: 0.02)
    }

    /// Gaussian noise features: the probe can do no better than the class frequencies, and does not
    /// do worse (it starts there, and early stopping keeps the start when training only fits noise).
    func testNoiseProbesAtTheUnigramBaseline() throws {
        let width = 32, rows = 10_000
        let stream = Self.zipfTokens(rows + 4, vocab: 40, seed: 4)
        var rng = SeededGenerator(seed: 5)
        let noise = (0..<(rows * width)).map { _ in Float(rng.nextNormal()) }
        let data = Self.data(stream: stream, rows: rows, offsets: [0, 2], features: { r in
            Array(noise[(r * width)..<((r + 1) * width)])
        }, width: width)
        let result = TokenProbes.run(data, layers: [3], offsets: [0, 2], top: 256)
        XCTAssertEqual(result.classes, 41, "every token kept, plus an empty \"other\"")
        XCTAssertEqual(result.coverage, 1)
        for j in 0..<2 {
            XCTAssertEqual(result.loss[0][j], result.unigramLoss[j], accuracy: 0.015, "offset \(j): \(result.loss) vs \(result.unigramLoss)")
            XCTAssertEqual(result.accuracy[0][j], result.unigramAccuracy[j], accuracy: 0.01)
        }
    }

    /// A Markov chain (the next token is perm(x) nine times in ten): the current-token baseline finds
    /// it, and a probe on the one-hot current token matches that baseline.
    func testOneHotCurrentTokenProbesAtTheCurrentTokenBaseline() throws {
        let vocab = 30, rows = 12_000
        var rng = SeededGenerator(seed: 6)
        let permutation = (0..<vocab).map { ($0 * 7 + 3) % vocab }
        var stream: [Int32] = [0]
        for _ in 0..<(rows + 8) {
            stream.append(rng.nextUnit() < 0.9 ? Int32(permutation[Int(stream.last!)]) : Int32(rng.nextInt(below: vocab)))
        }
        let data = Self.data(stream: stream, rows: rows, offsets: [0, 1], features: { r in
            (0..<vocab).map { $0 == Int(stream[r]) ? 1 : 0 }
        }, width: vocab)
        let result = TokenProbes.run(data, layers: [0], offsets: [0, 1])
        XCTAssertGreaterThan(result.currentTokenAccuracy[0], 0.88)
        XCTAssertLessThan(result.currentTokenLoss[0], result.unigramLoss[0] - 2)
        for j in 0..<2 {
            XCTAssertEqual(result.loss[0][j], result.currentTokenLoss[j], accuracy: 0.03, "offset \(j)")
            XCTAssertEqual(result.accuracy[0][j], result.currentTokenAccuracy[j], accuracy: 0.01, "offset \(j)")
        }
        // Two steps of the chain: 0.9² of the time perm(perm(x)).
        XCTAssertEqual(result.currentTokenAccuracy[1], 0.81 + 0.19 / Double(vocab), accuracy: 0.03)
    }

    /// The table does not depend on the thread count.
    func testProbeIsDeterministicAcrossThreadCounts() throws {
        let width = 16, rows = 3000
        let stream = Self.zipfTokens(rows + 4, vocab: 20, seed: 7)
        let table = Self.embeddings(vocab: 20, width: width, seed: 8)
        let data = Self.data(stream: stream, rows: rows, offsets: [0, 1], features: { r in table[Int(stream[r + 1])] }, width: width)
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        var tables: [ProbeTable] = []
        for threads in [1, 3] {
            Parallel.threadCount = threads
            tables.append(TokenProbes.run(data, layers: [0], offsets: [0, 1], top: 8))
        }
        XCTAssertEqual(tables[0].loss, tables[1].loss)
        XCTAssertEqual(tables[0].accuracy, tables[1].accuracy)
        XCTAssertEqual(tables[0].trainLoss, tables[1].trainLoss)
    }

    /// binary16 storage after centring: a column riding on a large offset keeps its variation.
    func testFeatureMatrixKeepsVariationAroundLargeOffsets() {
        var matrix = FeatureMatrix(width: 2)
        var rows: [Float] = []
        for i in 0..<100 {
            rows.append(Float(1000 + 0.01 * Double(i)))
            rows.append(Float(i % 7 - 3))
        }
        matrix.append(rows)
        XCTAssertEqual(matrix.rows, 100)
        for i in 0..<100 {
            let row = matrix.row(i)
            // binary16 of the centred value (|·| ≤ 0.5): spacing 2^-11 · 2^-1, so error ≤ 2.5e-4.
            XCTAssertEqual(row[0], rows[2 * i], accuracy: 2.5e-4)
            XCTAssertEqual(row[1], rows[2 * i + 1], accuracy: 2e-3)
        }
        let (_, std) = matrix.moments(Array(0..<100))
        let expected: Double = 0.01 * (Double(100 * 100 - 1) / 12).squareRoot()
        XCTAssertEqual(std[0], expected, accuracy: 1e-4)
    }

    // MARK: - Regression probes (sine task)

    /// Model-free: a feature that is sin(f·x_n) gives R² ≈ 1 at lag 0 and ≈ 0 at lag 1.
    func testRegressionProbeFindsAPlantedSine() {
        let task = SineTask(p: 1, frequency: 3, window: 4)
        var rng = SeededGenerator(seed: 9)
        let data = task.makeBatch(batch: 200, seqLen: 16, rng: &rng)
        let sine = data.cachedFeature(lag: 0)
        var features: [Float] = []
        for r in 0..<data.x.count { features += [sine[r], data.x[r], Float(rng.nextNormal())] }
        let r2 = SineProbes.fit(features: features, width: 3, seqLen: 16, trainSequences: 160,
                                targets: [data.cachedFeature(lag: 0), data.cachedFeature(lag: 1)], lags: [0, 1], ridge: 1e-6)
        XCTAssertGreaterThan(r2[0], 0.999)
        XCTAssertEqual(r2[1], 0, accuracy: 0.03)
    }

    /// A vanilla and a myopic model trained on the sine task (p = 1, f = 3): at n, only the vanilla
    /// model's middle residual stream holds sin(3·x_n), which is useless at n and needed later.
    func testVanillaCachesTheSineAtNAndMyopicDoesNot() throws {
        var r2: [String: Double] = [:]
        for flow in [GradientFlow.vanilla, .myopic] {
            var options = SineExperimentTests.small(flow)
            options.steps = 500
            options.evalEvery = 500
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-probe-sine-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: dir) }
            let result = try SineExperiment.run(options, out: dir)
            let model = try Checkpoint.loadModel(from: URL(fileURLWithPath: result.checkpoint))
            var rng = SeededGenerator(seed: 10)
            let data = options.task.makeBatch(batch: 400, seqLen: options.seqLen, rng: &rng)
            let table = SineProbes.compute(model, data: data, layers: [0, 1, 2], lags: [0, 1])
            XCTAssertEqual(table.r2.count, 3)
            XCTAssertLessThan(table.r2[0][0], 0.2, "\(flow): the input projection is linear in x_n")
            r2["\(flow)"] = table.r2[1][0]
        }
        XCTAssertGreaterThan(r2["vanilla"]!, 0.4, "\(r2)")
        XCTAssertLessThan(r2["myopic"]!, 0.1, "\(r2)")
    }
}
