import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// Continuation passes (Continuation.swift): the loss of a continuation computed from the cached
/// prefix equals the loss of a full forward pass over the window with the token substituted, for
/// GPT-2 and Llama (GQA, RoPE), under causal and self-only (bigram) attention.
final class ContinuationTests: XCTestCase {
    let b = 2, t = 9

    func window(_ v: Int, seed: Int) -> [Int32] {
        (0..<(b * t + b)).map { Int32(($0 * 7 + seed) % v) }
    }

    /// For every position with a K-token continuation and a handful of candidates, the cached
    /// continuation's mean loss against a full forward with x_{t+1} replaced.
    func assertMatchesFullForward(_ model: Transformer, horizon k: Int, _ what: String) {
        let v = model.config.vocabSize
        let stream = window(v, seed: 3)
        // Row r: inputs stream[r(T+1) ..< r(T+1)+T], targets shifted by one.
        var inputs: [Int32] = [], targets: [Int32] = []
        for r in 0..<b {
            let row = Array(stream[(r * (t + 1))..<((r + 1) * (t + 1))])
            inputs += row.dropLast()
            targets += row.dropFirst()
        }
        let cache = model.makeCache(batch: b, seqLen: t)
        model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
        let candidates: [Int32] = [0, 5, Int32(v - 1), 2, 5]
        let scratch = ContinuationScratch(config: model.config, horizon: k, candidates: candidates.count, seqLen: t)
        var losses = [Float](repeating: .nan, count: candidates.count)
        let full = model.makeCache(batch: 1, seqLen: t)
        var worst = 0.0
        for row in 0..<b {
            for position in 0...(t - 1 - k) {
                candidates.withUnsafeBufferPointer { c in
                    losses.withUnsafeMutableBufferPointer { out in
                        model.continuationLosses(cache: cache, row: row, position: position, candidates: c.baseAddress!,
                                                 count: c.count, scratch: scratch, losses: out.baseAddress!)
                    }
                }
                for (j, candidate) in candidates.enumerated() {
                    var substituted = Array(inputs[(row * t)..<((row + 1) * t)])
                    substituted[position + 1] = candidate
                    let rowTargets = Array(targets[(row * t)..<((row + 1) * t)])
                    model.forward(tokens: substituted, targets: rowTargets, batch: 1, seqLen: t, cache: full)
                    let rowLosses = full.positionLosses()
                    let expected = (1...k).reduce(0.0) { $0 + Double(rowLosses[position + $1]) } / Double(k)
                    let error = abs(Double(losses[j]) - expected) / abs(expected)
                    worst = max(worst, error)
                    XCTAssertLessThanOrEqual(error, 1e-5, "\(what): row \(row) t \(position) candidate \(candidate): \(losses[j]) vs \(expected)")
                }
            }
        }
        XCTAssertGreaterThan(worst, 0, "\(what): no position was compared")
    }

    func testGPT2MatchesFullForward() {
        let model = peakedRandomModel(vocab: 24, positions: 12, seed: 5)
        for k in [1, 3] { assertMatchesFullForward(model, horizon: k, "gpt2 K=\(k)") }
    }

    func testLlamaMatchesFullForward() {
        for k in [1, 2, 4] { assertMatchesFullForward(smallLlama(), horizon: k, "llama K=\(k)") }
        assertMatchesFullForward(smallLlama(tied: true, interleaved: true), horizon: 3, "llama tied, interleaved RoPE")
    }

    func testBigramFlowMatchesFullForward() {
        let gpt2 = peakedRandomModel(vocab: 24, positions: 12, seed: 6)
        gpt2.flow = .bigram
        assertMatchesFullForward(gpt2, horizon: 2, "gpt2 bigram")
        let llama = smallLlama()
        llama.flow = .bigram
        assertMatchesFullForward(llama, horizon: 2, "llama bigram")
    }

    /// The true token as the candidate gives back the training forward's own losses.
    func testTrueTokenGivesTheWindowLoss() {
        let model = smallLlama()
        let v = model.config.vocabSize, k = 3
        let inputs = (0..<(b * t)).map { Int32(($0 * 5 + 2) % v) }, targets = (0..<(b * t)).map { Int32(($0 * 3 + 1) % v) }
        let cache = model.makeCache(batch: b, seqLen: t)
        model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
        let rowLoss = cache.positionLosses()
        let scratch = ContinuationScratch(config: model.config, horizon: k, candidates: 1, seqLen: t)
        var loss: Float = 0
        for row in 0..<b {
            for position in 0...(t - 1 - k) {
                var token = inputs[row * t + position + 1]
                model.continuationLosses(cache: cache, row: row, position: position, candidates: &token, count: 1,
                                         scratch: scratch, losses: &loss)
                let expected = (1...k).reduce(0.0) { $0 + Double(rowLoss[row * t + position + $1]) } / Double(k)
                XCTAssertEqual(Double(loss), expected, accuracy: 1e-5 * expected)
            }
        }
    }
}
