import XCTest
import MyopiaTestSupport
import Myopia

/// Why and where `Generation.sample` stops, and that a seed fixes the sample.
final class GenerationTests: XCTestCase {
    func testStopsAtMaxTokens() {
        let model = peakedRandomModel(positions: 8)
        let s = Generation.sample(model, prompt: [1, 2], options: SamplingOptions(seed: 3, maxTokens: 20))
        XCTAssertEqual(s.tokens.count, 20)
        XCTAssertEqual(s.stopReason, .maxTokens)
        let none = Generation.sample(model, prompt: [1, 2], options: SamplingOptions(maxTokens: 0))
        XCTAssertEqual(none, GeneratedSample(tokens: [], stopReason: .maxTokens))
    }

    func testStopsAtTheStopTokenAndKeepsIt() {
        let model = peakedRandomModel(positions: 8)
        let greedy = Generation.generate(model, prompt: [1, 2], options: SamplingOptions(temperature: 0, maxTokens: 10))
        // Make the third greedy token the stop token: the sample ends there, with it.
        let stop = greedy[2]
        let first = greedy.firstIndex(of: stop)!
        let s = Generation.sample(model, prompt: [1, 2], options: SamplingOptions(temperature: 0, maxTokens: 10, stopToken: stop))
        XCTAssertEqual(s.stopReason, .endOfText)
        XCTAssertEqual(s.tokens, Array(greedy.prefix(first + 1)))
        // Reaching max tokens and the stop token at once reports the stop token.
        let both = Generation.sample(model, prompt: [1, 2],
                                     options: SamplingOptions(temperature: 0, maxTokens: first + 1, stopToken: stop))
        XCTAssertEqual(both.stopReason, .endOfText)
    }

    func testStopAtContextFillsTheContextPlusOne() {
        let model = peakedRandomModel(positions: 8)
        let options = SamplingOptions(seed: 9, maxTokens: 100, stopAtContext: true)
        // Prompt + sample = T + 1 tokens: the last one is sampled from a full context.
        let s = Generation.sample(model, prompt: [1, 2, 3], options: options)
        XCTAssertEqual(s.stopReason, .context)
        XCTAssertEqual(s.tokens.count, 8 + 1 - 3)
        // A prompt that already fills the context gets one token.
        let long = Generation.sample(model, prompt: (0..<10).map { Int32($0) }, options: options)
        XCTAssertEqual(long.tokens.count, 1)
        XCTAssertEqual(long.stopReason, .context)
        // Without the flag generation goes on past the context.
        var sliding = options
        sliding.stopAtContext = false
        let on = Generation.sample(model, prompt: [1, 2, 3], options: sliding)
        XCTAssertEqual(on.tokens.count, 100)
        XCTAssertEqual(Array(on.tokens.prefix(6)), s.tokens)
    }

    func testSeedFixesTheSampleAndStreamsEveryToken() {
        let model = peakedRandomModel(positions: 8)
        var streamed: [Int32] = []
        let options = SamplingOptions(temperature: 1, topK: 20, seed: 5, maxTokens: 30)
        let a = Generation.sample(model, prompt: [4], options: options) { streamed.append($0) }
        XCTAssertEqual(streamed, a.tokens)
        XCTAssertEqual(Generation.generate(model, prompt: [4], options: options), a.tokens)
        var other = options
        other.seed = 6
        XCTAssertNotEqual(Generation.generate(model, prompt: [4], options: other), a.tokens)
    }

    func testStopReasonNamesInJSON() throws {
        let json = String(decoding: try JSONEncoder().encode([StopReason.endOfText, .maxTokens, .context]), as: UTF8.self)
        XCTAssertEqual(json, #"["eos","max-tokens","context"]"#)
    }
}
