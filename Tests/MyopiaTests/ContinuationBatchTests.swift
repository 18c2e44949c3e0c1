import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// Batched continuation passes (ContinuationBatch.swift): many (window, position) continuations in
/// one call give each pair's loss as the per-pair routine (Continuation.swift) and a full forward
/// pass with the token substituted do, for GPT-2 and Llama (GQA, RoPE), under causal and self-only
/// (bigram) attention, with targets left out (−1); and the same bits on any thread count.
final class ContinuationBatchTests: XCTestCase {
    let b = 3, t = 10

    /// Windows of the forward pass, with a few targets marked −1 (one continuation has none left).
    func windows(vocab v: Int) -> (inputs: [Int32], targets: [Int32]) {
        let inputs = (0..<(b * t)).map { Int32(($0 * 7 + 3) % v) }
        var targets = (0..<(b * t)).map { Int32(($0 * 5 + 1) % v) }
        for r in [4, 13, 14, 15, 27] { targets[r] = -1 }
        return (inputs, targets)
    }

    /// Every (window, position) pair with a K-token continuation, each with its own token, in one
    /// batched call (in two calls when `split`), against the per-pair routine and a full forward.
    func assertMatches(_ model: Transformer, horizon k: Int, split: Bool = false, _ what: String) {
        let v = model.config.vocabSize
        let (inputs, targets) = windows(vocab: v)
        let cache = model.makeCache(batch: b, seqLen: t)
        model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)
        var rows: [Int] = [], positions: [Int] = [], tokens: [Int32] = []
        for row in 0..<b {
            for position in 0...(t - 1 - k) {
                rows.append(row); positions.append(position); tokens.append(Int32((row * 11 + position * 3) % v))
            }
        }
        let p = rows.count
        let batched = batchedLosses(model, cache: cache, horizon: k, rows: rows, positions: positions, tokens: tokens,
                                    callSize: split ? (p + 1) / 2 : p)
        let scratch = ContinuationScratch(config: model.config, horizon: k, candidates: 1, seqLen: t)
        let full = model.makeCache(batch: 1, seqLen: t)
        var compared = 0
        for j in 0..<p {
            var token = tokens[j], single: Float = .nan
            model.continuationLosses(cache: cache, row: rows[j], position: positions[j], candidates: &token, count: 1,
                                     scratch: scratch, losses: &single)
            var substituted = Array(inputs[(rows[j] * t)..<((rows[j] + 1) * t)])
            substituted[positions[j] + 1] = tokens[j]
            let rowTargets = Array(targets[(rows[j] * t)..<((rows[j] + 1) * t)])
            model.forward(tokens: substituted, targets: rowTargets, batch: 1, seqLen: t, cache: full)
            let rowLosses = full.positionLosses()
            let counted = (1...k).filter { rowTargets[positions[j] + $0] >= 0 }
            let expected = counted.isEmpty ? 0 : counted.reduce(0.0) { $0 + Double(rowLosses[positions[j] + $1]) } / Double(counted.count)
            let label = "\(what): row \(rows[j]) t \(positions[j])"
            if counted.isEmpty {
                XCTAssertEqual(batched[j], 0, "\(label): no target counts")
                continue
            }
            XCTAssertLessThanOrEqual(abs(Double(batched[j]) - expected) / expected, 1e-5, "\(label): \(batched[j]) vs full \(expected)")
            XCTAssertLessThanOrEqual(abs(Double(batched[j] - single)) / Double(single), 1e-5, "\(label): \(batched[j]) vs per-pair \(single)")
            compared += 1
        }
        XCTAssertGreaterThan(compared, p / 2, "\(what): too few continuations compared")
    }

    func batchedLosses(_ model: Transformer, cache: ActivationCache, horizon k: Int, rows: [Int], positions: [Int],
                       tokens: [Int32], callSize: Int) -> [Float] {
        let scratch = ContinuationBatchScratch(config: model.config, horizon: k, capacity: callSize, seqLen: t)
        var losses = [Float](repeating: .nan, count: rows.count)
        var start = 0
        while start < rows.count {
            let count = min(callSize, rows.count - start)
            rows.withUnsafeBufferPointer { r in
                positions.withUnsafeBufferPointer { q in
                    tokens.withUnsafeBufferPointer { x in
                        losses.withUnsafeMutableBufferPointer { out in
                            model.continuationLosses(cache: cache, rows: r.baseAddress! + start, positions: q.baseAddress! + start,
                                                     firstTokens: x.baseAddress! + start, count: count, scratch: scratch,
                                                     losses: out.baseAddress! + start)
                        }
                    }
                }
            }
            start += count
        }
        return losses
    }

    func testGPT2MatchesPerPairAndFullForward() {
        let model = peakedRandomModel(vocab: 24, positions: 12, seed: 5)
        for k in [1, 3] { assertMatches(model, horizon: k, "gpt2 K=\(k)") }
        assertMatches(model, horizon: 2, split: true, "gpt2 K=2, two calls")
    }

    func testLlamaMatchesPerPairAndFullForward() {
        for k in [1, 2, 4] { assertMatches(smallLlama(), horizon: k, "llama K=\(k)") }
        assertMatches(smallLlama(tied: true, interleaved: true), horizon: 3, split: true, "llama tied, interleaved RoPE")
    }

    func testBigramFlowMatchesPerPairAndFullForward() {
        let gpt2 = peakedRandomModel(vocab: 24, positions: 12, seed: 6)
        gpt2.flow = .bigram
        assertMatches(gpt2, horizon: 2, "gpt2 bigram")
        let llama = smallLlama()
        llama.flow = .bigram
        assertMatches(llama, horizon: 3, "llama bigram")
    }

    /// The same losses, to the bit, on 1, 2 and 3 threads (a model large enough for the GEMMs to
    /// split over threads).
    func testLossesAreIndependentOfThreads() {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        let config = ModelConfig.llama(vocabSize: 300, maxPositions: 32, dModel: 64, nLayers: 2, nHeads: 4,
                                       nKVHeads: 2, dMLP: 160)
        let model = Transformer(config: config)
        model.initialize(seed: 4)
        let (batch, seqLen, k) = (4, 32, 4)
        let inputs = (0..<(batch * seqLen)).map { Int32(($0 * 13 + 2) % 300) }
        let targets = (0..<(batch * seqLen)).map { Int32(($0 * 17 + 9) % 300) }
        let cache = model.makeCache(batch: batch, seqLen: seqLen)
        model.forward(tokens: inputs, targets: targets, batch: batch, seqLen: seqLen, cache: cache)
        var rows: [Int] = [], positions: [Int] = [], tokens: [Int32] = []
        for j in 0..<24 { rows.append(j % batch); positions.append((j * 5) % (seqLen - k)); tokens.append(Int32(j * 7 % 300)) }
        let scratch = ContinuationBatchScratch(config: config, horizon: k, capacity: rows.count, seqLen: seqLen)
        func losses(threads: Int) -> [Float] {
            Parallel.threadCount = threads
            var out = [Float](repeating: .nan, count: rows.count)
            model.continuationLosses(cache: cache, rows: rows, positions: positions, firstTokens: tokens,
                                     count: rows.count, scratch: scratch, losses: &out)
            return out
        }
        let serial = losses(threads: 1)
        XCTAssertTrue(serial.allSatisfy { $0.isFinite && $0 > 0 })
        for threads in [2, 3] { XCTAssertEqual(losses(threads: threads), serial, "\(threads) threads") }
    }
}
