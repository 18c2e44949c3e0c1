import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// A random byte-vocabulary-sized model small enough to score by hand, with weights large enough
/// (N(0, 0.3²)) that its next-token distributions are far from uniform.
func peakedRandomModel(vocab: Int = 48, positions: Int = 8, seed: UInt64 = 3) -> Transformer {
    let model = Transformer(config: ModelConfig(vocabSize: vocab, maxPositions: positions, dModel: 16, nLayers: 2, nHeads: 2))
    model.initialize(seed: seed)
    var rng = SeededGenerator(seed: seed &+ 1000)
    for e in model.params.entries where !e.name.contains("ln_") {
        rng.fillNormal(model.params.weights + e.offset, count: e.count, std: 0.3)
    }
    return model
}

/// −log softmax(logits)[target] in double.
func crossEntropy(_ logits: ArraySlice<Float>, target: Int32) -> Double {
    let m = Double(logits.max()!)
    let z = m + Foundation.log(logits.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
    return z - Double(logits[logits.startIndex + Int(target)])
}

/// The logits (V) a full forward pass over `context` gives at its last position.
func lastLogits(_ model: Transformer, _ context: [Int32]) -> ArraySlice<Float> {
    let cache = model.makeCache(batch: 1, seqLen: context.count)
    model.forward(tokens: context, targets: nil, batch: 1, seqLen: context.count, cache: cache)
    let v = model.config.vocabSize
    return cache.logitsArray()[((context.count - 1) * v)...]
}

final class ContinuationLossTests: XCTestCase {
    /// Within the context, teacher-forced loss is the mean of −log p(token) from one full forward's logits.
    func testLossEqualsHandComputedCrossEntropy() {
        let model = peakedRandomModel(positions: 16)
        let prompt: [Int32] = [3, 17, 5], continuation: [Int32] = [40, 2, 2, 9, 31]
        let text = prompt + continuation, v = model.config.vocabSize
        let cache = model.makeCache(batch: 1, seqLen: text.count - 1)
        model.forward(tokens: Array(text.dropLast()), targets: nil, batch: 1, seqLen: text.count - 1, cache: cache)
        let logits = cache.logitsArray()
        let expected = (prompt.count..<text.count).map { j in
            crossEntropy(logits[((j - 1) * v)..<(j * v)], target: text[j])
        }
        let got = ContinuationLoss.tokenLosses(model, prompt: prompt, continuation: continuation)
        XCTAssertEqual(got.count, continuation.count)
        for (g, e) in zip(got, expected) { XCTAssertEqual(Double(g), e, accuracy: 1e-4 * max(1, e)) }
        let score = ContinuationLoss.score(model, prompt: prompt, continuation: continuation)
        XCTAssertEqual(score.tokens, continuation.count)
        XCTAssertEqual(score.loss!, expected.reduce(0, +) / Double(expected.count), accuracy: 1e-4)
        // The model's own forward with targets (−1 on the prompt) agrees.
        let targets = (1..<text.count).map { $0 >= prompt.count ? text[$0] : -1 }
        let mean = model.forward(tokens: Array(text.dropLast()), targets: targets, batch: 1, seqLen: text.count - 1, cache: cache)!
        XCTAssertEqual(Double(mean), score.loss!, accuracy: 1e-4)
    }

    /// Contexts restart from the last half of a full window, as generation does.
    func testContextStartsByHand() {
        // P = 3, T = 8, h = 4: tokens 3…8 see from 0; 9…13 from 5; 14…18 from 10; 19…22 from 15.
        XCTAssertEqual(ContinuationLoss.contextStarts(promptLength: 3, continuationLength: 20, maxPositions: 8),
                       [Int](repeating: 0, count: 6) + [Int](repeating: 5, count: 5) + [Int](repeating: 10, count: 5)
                       + [Int](repeating: 15, count: 4))
        // A prompt longer than the context: its last T tokens, then a restart right after the first token.
        XCTAssertEqual(ContinuationLoss.contextStarts(promptLength: 12, continuationLength: 3, maxPositions: 8), [4, 9, 9])
        // One position: every token is scored from the one before it.
        XCTAssertEqual(ContinuationLoss.contextStarts(promptLength: 2, continuationLength: 3, maxPositions: 1), [1, 2, 3])
        XCTAssertEqual(ContinuationLoss.contextStarts(promptLength: 2, continuationLength: 0, maxPositions: 8), [])
    }

    /// Past the context, each token's loss is a full forward over exactly its window.
    func testLongTextIsScoredInWindows() {
        let model = peakedRandomModel(positions: 8)
        var rng = SeededGenerator(seed: 11)
        let prompt: [Int32] = [1, 2, 3], continuation = (0..<20).map { _ in Int32(rng.nextInt(below: 48)) }
        let text = prompt + continuation
        let starts = ContinuationLoss.contextStarts(promptLength: 3, continuationLength: 20, maxPositions: 8)
        let got = ContinuationLoss.tokenLosses(model, prompt: prompt, continuation: continuation)
        XCTAssertEqual(got.count, 20)
        for k in 0..<20 {
            let j = 3 + k
            let expected = crossEntropy(lastLogits(model, Array(text[starts[k]..<j])), target: text[j])
            XCTAssertEqual(Double(got[k]), expected, accuracy: 1e-4 * max(1, expected), "token \(j)")
        }
    }

    /// Greedy samples score as the argmax of the context they were drawn from: this holds only if
    /// scoring uses generation's contexts, through restarts and a prompt longer than the context.
    func testGreedySamplesAreTheArgmaxOfTheirScoringContext() {
        let model = peakedRandomModel(positions: 8)
        for prompt in [[5, 6, 7], (0..<12).map { Int32($0 * 3) }] as [[Int32]] {
            let sample = Generation.sample(model, prompt: prompt, options: SamplingOptions(temperature: 0, maxTokens: 25))
            XCTAssertEqual(sample.tokens.count, 25)
            let text = prompt + sample.tokens
            let starts = ContinuationLoss.contextStarts(promptLength: prompt.count, continuationLength: 25, maxPositions: 8)
            let losses = ContinuationLoss.tokenLosses(model, prompt: prompt, continuation: sample.tokens)
            for k in 0..<25 {
                let j = prompt.count + k
                let logits = lastLogits(model, Array(text[starts[k]..<j]))
                let best = logits.max()!
                XCTAssertGreaterThanOrEqual(logits[logits.startIndex + Int(text[j])], best - 1e-4, "token \(j)")
                // The argmax's loss is the smallest any token could have there.
                let smallest = (0..<Int32(48)).map { crossEntropy(logits, target: $0) }.min()!
                XCTAssertEqual(Double(losses[k]), smallest, accuracy: 1e-3, "token \(j)")
            }
        }
    }

    /// Free-running loss of greedy samples is below teacher-forced loss on random tokens; pooled
    /// loss is the token-weighted mean of the samples'.
    func testCompareGreedyAgainstRandomTokens() {
        let model = peakedRandomModel(positions: 16)
        let prompt: [Int32] = [10, 20, 30]
        var rng = SeededGenerator(seed: 4)
        let random = (0..<12).map { _ in Int32(rng.nextInt(below: 48)) }
        let greedy = Generation.generate(model, prompt: prompt, options: SamplingOptions(temperature: 0, maxTokens: 12))
        let short = Generation.generate(model, prompt: prompt, options: SamplingOptions(temperature: 0, maxTokens: 4))
        let c = ContinuationLoss.compare(model, prompt: prompt, reference: random, samples: [greedy, short, []])
        let tf = c.teacherForced!.loss!, fr = c.freeRunning.loss!
        XCTAssertLessThan(fr, tf)
        XCTAssertLessThan(fr, Foundation.log(48.0))
        XCTAssertEqual(c.teacherForced!.tokens, 12)
        XCTAssertEqual(c.freeRunning.tokens, 16)
        XCTAssertEqual(c.perSample.map(\.tokens), [12, 4, 0])
        XCTAssertNil(c.perSample[2].loss)
        XCTAssertEqual(fr, (12 * c.perSample[0].loss! + 4 * c.perSample[1].loss!) / 16, accuracy: 1e-9)
        // The shorter greedy sample is a prefix of the longer one, scored the same way.
        XCTAssertEqual(Array(greedy.prefix(4)), short)
        XCTAssertEqual(ContinuationLoss.compare(model, prompt: prompt, reference: nil, samples: [greedy]).teacherForced, nil)
        XCTAssertNil(ContinuationLoss.score(model, prompt: prompt, continuation: []).loss)
    }
}
