import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// Decoding several sequences together (`DecodeBatch`, `Generation.sample(requests:)`) gives every
/// sequence the bits it gets decoded alone: the logits of each row, and so the tokens of every
/// sample, greedy or sampled, on each GEMM kernel, for learned positions (GPT-2) and the rotary
/// families (with GQA, sliding windows, soft-caps, partial rotary, parallel residuals, q/k norms).
final class BatchedDecodingTests: XCTestCase {
    /// GPT-2 (learned positions) and the RoPE families, each with 64 positions.
    static let models = ["gpt2_tiny/hf", "llama_tiny/hf", "families/qwen2/hf", "families/qwen3/hf", "families/mistral/hf",
                         "families/gemma2/hf", "families/gpt_neox/hf", "families/olmo2/hf"]

    func load(_ name: String) throws -> Transformer {
        try Checkpoint.loadModel(from: fixturesURL.appendingPathComponent(name))
    }

    /// Tokens of a made-up text of length `count` (under V).
    func text(_ count: Int, seed: Int, vocab: Int) -> [Int32] {
        (0..<count).map { Int32(($0 * 37 + seed * 11 + 5) % vocab) }
    }

    /// Ragged prompts (1 to 60 tokens, one past a prompt chunk of 64 is beyond T) continued by
    /// `steps` tokens each; some sequences stop early, so later steps have fewer rows. The logits of
    /// every row of every step equal, bit for bit, those of `decode` on a KVCache of that sequence.
    func testStepLogitsAreBitwiseThoseOfDecodingAlone() throws {
        for name in Self.models {
            let model = try load(name)
            let v = model.config.vocabSize, maxT = model.config.maxPositions
            // 13 sequences: more rows than one AVX-512 tile (12) and than the few-rows GEMM path (4).
            let promptLengths = [1, 2, 3, 5, 8, 13, 21, 34, 55, 60, 4, 17, 9]
            let texts = promptLengths.enumerated().map { i, n in self.text(n + 8, seed: i, vocab: v) }
            // Sequence i takes part in steps 0..<stops[i] (all of them stay within T positions).
            let stops = promptLengths.enumerated().map { i, n in min(maxT - n, i % 3 == 0 ? 3 : 8) }
            forEachKernel { kernel in
                var alone: [[[Float]]] = []   // [sequence][step + 1][V]: the prompt's logits, then each step's
                for (i, n) in promptLengths.enumerated() {
                    let cache = KVCache(config: model.config)
                    var rows = [Array(UnsafeBufferPointer(start: model.decode(Array(texts[i].prefix(n)), cache: cache), count: v))]
                    for s in 0..<stops[i] {
                        rows.append(Array(UnsafeBufferPointer(start: model.decode([texts[i][n + s]], cache: cache), count: v)))
                    }
                    alone.append(rows)
                }
                let batch = DecodeBatch(config: model.config, slots: promptLengths.count)
                let prefill = KVCache(config: model.config)
                for (i, n) in promptLengths.enumerated() {
                    prefill.reset()
                    model.decode(Array(texts[i].prefix(n)), cache: prefill)
                    batch.load(slot: i, from: prefill)
                    XCTAssertEqual(batch.lengths[i], n)
                }
                for step in 0..<(stops.max() ?? 0) {
                    let slots = promptLengths.indices.filter { step < stops[$0] }
                    model.decodeStep(slots.map { texts[$0][promptLengths[$0] + step] }, slots: slots, batch: batch)
                    for (r, i) in slots.enumerated() {
                        let got = Array(UnsafeBufferPointer(start: batch.logits(row: r, vocab: v), count: v))
                        XCTAssertEqual(got.map(\.bitPattern), alone[i][step + 1].map(\.bitPattern),
                                       "\(name) \(kernel) sequence \(i) (prompt \(promptLengths[i])) step \(step) of \(slots.count) rows")
                    }
                }
            }
        }
    }

    /// Every request's sample, drawn in decode batches of several sizes, equals the sample drawn
    /// alone: greedy and sampled (temperature, top-k, top-p), sharing a prompt and not, past the
    /// context (rebuilt from its last half) and stopped at it, and at a stop token.
    func testBatchedSamplesEqualSamplesDrawnAlone() throws {
        for name in Self.models {
            let model = try load(name)
            let v = model.config.vocabSize
            let prompts = [text(3, seed: 1, vocab: v), text(11, seed: 2, vocab: v), text(40, seed: 3, vocab: v)]
            let settings = [SamplingOptions(temperature: 0, maxTokens: 30),
                            SamplingOptions(temperature: 1, maxTokens: 90),                      // rebuilds its context
                            SamplingOptions(temperature: 0.8, topK: 5, maxTokens: 50, stopAtContext: true),
                            SamplingOptions(temperature: 1.2, topP: 0.9, maxTokens: 40, stopToken: 7)]
            var requests: [SampleRequest] = []
            for (p, prompt) in prompts.enumerated() {
                for (o, options) in settings.enumerated() {
                    for i in 0..<2 {
                        var options = options
                        options.seed = UInt64(100 * p + 10 * o + i)
                        requests.append(SampleRequest(prompt: prompt, options: options))
                    }
                }
            }
            forEachKernel { kernel in
                let alone = requests.map { Generation.sample(model, prompt: $0.prompt, options: $0.options) }
                XCTAssertTrue(alone.contains { $0.stopReason == .context }, "\(name): some sample stops at the context")
                XCTAssertTrue(alone.contains { $0.tokens.count == 90 }, "\(name): some sample rebuilds its context")
                for decodeBatch in [1, 5, requests.count] {
                    var streamed = [[Int32]](repeating: [], count: requests.count)
                    var finished: [Int] = []
                    let together = Generation.sample(model, requests: requests, decodeBatch: decodeBatch,
                                                     onToken: { streamed[$0].append($1) }, onDone: { finished.append($0) })
                    XCTAssertEqual(together, alone, "\(name) \(kernel) decode batch \(decodeBatch)")
                    XCTAssertEqual(streamed, alone.map(\.tokens))
                    XCTAssertEqual(finished.sorted(), Array(requests.indices))
                }
            }
        }
    }

    /// The same seed gives the same samples whether they decode together or one at a time, and
    /// sample i of a set is the sample of seed + i (as `generate --samples` promises).
    func testSampleSeedsAreSeedPlusIndex() throws {
        let model = try load("llama_tiny/hf")
        let prompt: [Int32] = [1, 5, 9]
        let requests = (0..<6).map { i in SampleRequest(prompt: prompt, options: SamplingOptions(temperature: 1, seed: 42 + UInt64(i), maxTokens: 12)) }
        let together = Generation.sample(model, requests: requests, decodeBatch: 6)
        for i in 0..<6 {
            XCTAssertEqual(together[i], Generation.sample(model, prompt: prompt, options: SamplingOptions(temperature: 1, seed: 42 + UInt64(i), maxTokens: 12)))
        }
        XCTAssertGreaterThan(Set(together.map(\.tokens)).count, 1, "different seeds give different samples")
    }
}
