import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

/// `myopia gradients` over ranks simulated by threads (ThreadGroup, the collectives MPI gives): each
/// batch's gradient into a zeroed buffer, the batches added in batch order, so that 1, 2 and 3 ranks
/// (some with no batch) give the same bits; and that sum against the one-buffer accumulation it
/// replaced, and against one backward when there is one batch.
final class ShardedGradientsTests: XCTestCase {
    func tiny() -> Transformer {
        let m = Transformer(config: ModelConfig(vocabSize: 64, maxPositions: 8, dModel: 16, nLayers: 2, nHeads: 2, tokenizer: nil))
        m.initialize(seed: 7)
        return m
    }

    let t = 8
    lazy var tokens: [Int32] = {
        var rng = SeededGenerator(seed: 12)
        return (0..<(10 * (t + 1) + 3)).map { _ in Int32(rng.nextInt(below: 64)) }
    }()

    func testSameBitsOnOneTwoAndThreeRanks() {
        let tokens = self.tokens, t = self.t
        // Batches of 4 (3 batches: 4, 4, 2 windows; on 2 ranks a partial second round) and of 8
        // (2 batches: on 3 ranks rank 2 has none).
        for batch in [4, 8] {
            var first: (grads: [Float], loss: Double)?
            for n in 1...3 {
                let outcome = ThreadGroup.run(ranks: n) { group -> ([Float], Double, Int) in
                    let m = self.tiny()
                    let r = Gradients.compute(m, tokens: tokens, seqLen: t, flow: .vanilla, batch: batch, group: group)
                    return (m.params.gradArray(), r.loss, r.windows)
                }
                for r in 0..<n {
                    XCTAssertEqual(outcome[r].2, 10)
                    if let first {
                        XCTAssertTrue(outcome[r].0 == first.grads, "batch \(batch), \(n) ranks: rank \(r)'s gradient differs")
                        XCTAssertEqual(outcome[r].1, first.loss, "batch \(batch), \(n) ranks: rank \(r)'s loss")
                    } else {
                        first = (outcome[r].0, outcome[r].1)
                    }
                }
            }
        }
    }

    /// The batches added in order equal, to rounding, one buffer every batch's backward adds into
    /// (the accumulation before), and with one batch the gradient is that batch's backward exactly.
    func testTheOrderedSumAgainstOneAccumulatingBuffer() {
        let tokens = self.tokens, t = self.t
        let m = tiny()
        let result = Gradients.compute(m, tokens: tokens, seqLen: t, flow: .myopic, batch: 4)
        let got = m.params.gradArray()
        let old = tiny()
        old.flow = .myopic
        old.params.zeroGrads()
        let cache = old.makeCache(batch: 4, seqLen: t)
        var inputs = [Int32](repeating: 0, count: 4 * t), targets = inputs
        var total = 0.0
        for w in stride(from: 0, to: 10, by: 4) {
            let nb = min(4, 10 - w)
            TokenDataset.fillWindows(tokens, seqLen: t, first: w, count: nb, inputs: &inputs, targets: &targets)
            let loss = old.forward(tokens: Array(inputs[..<(nb * t)]), targets: Array(targets[..<(nb * t)]), batch: nb, seqLen: t, cache: cache)!
            total += Double(loss) * Double(nb)
            old.backward(cache: cache, lossScale: Float(nb) / 10)
        }
        XCTAssertEqual(result.loss, total / 10, "the loss is added batch by batch as before")
        let expected = old.params.gradArray(), scale = expected.map(abs).max()!
        XCTAssertGreaterThan(scale, 0)
        for i in expected.indices { XCTAssertEqual(got[i], expected[i], accuracy: 1e-6 * scale, "element \(i)") }

        let single = tiny()
        _ = Gradients.compute(single, tokens: tokens, seqLen: t, flow: .vanilla, batch: 16)
        let one = tiny(), whole = one.makeCache(batch: 10, seqLen: t)
        var x = [Int32](repeating: 0, count: 10 * t), y = x
        TokenDataset.fillWindows(tokens, seqLen: t, first: 0, count: 10, inputs: &x, targets: &y)
        one.params.zeroGrads()
        one.forward(tokens: x, targets: y, batch: 10, seqLen: t, cache: whole)
        one.backward(cache: whole, lossScale: 1)
        XCTAssertTrue(single.params.gradArray() == one.params.gradArray(), "one batch: not its backward's bits")
    }
}
