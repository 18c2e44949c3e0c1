import XCTest
import MyopiaTestSupport
import Myopia

final class KVCacheTests: XCTestCase {
    /// Cached decoding gives the full forward's logits at every position, whether the tokens come
    /// one at a time, in one prompt chunk, or in chunks smaller than the prompt.
    func testCachedLogitsEqualFullForward() throws {
        let model = try Checkpoint.loadModel(from: fixturesURL.appendingPathComponent("gpt2_tiny/hf"))
        let tokens: [Int32] = (0..<40).map { Int32(($0 * 53 + 11) % 256) }
        let full = model.makeCache(batch: 1, seqLen: 40)
        model.forward(tokens: tokens, targets: nil, batch: 1, seqLen: 40, cache: full)
        let expected = full.logitsArray(), v = model.config.vocabSize
        for (prompt, chunk) in [(1, 64), (17, 64), (17, 5), (40, 8)] {
            let kv = KVCache(config: model.config, chunk: chunk)
            var got = [Float]()
            let first = model.decode(Array(tokens.prefix(prompt)), cache: kv)
            got += Array(UnsafeBufferPointer(start: first, count: v))
            for i in prompt..<40 {
                let logits = model.decode([tokens[i]], cache: kv)
                got += Array(UnsafeBufferPointer(start: logits, count: v))
            }
            let reference = Array(expected[((prompt - 1) * v)...])
            XCTAssertLessThan(maxRelativeError(got, reference), 1e-5, "prompt \(prompt), chunk \(chunk)")
            XCTAssertEqual(kv.length, 40)
        }
    }

    func testBigramModelDecodesAsABigram() throws {
        let model = try Checkpoint.loadModel(from: fixturesURL.appendingPathComponent("gpt2_tiny/hf"))
        model.flow = .bigram
        let tokens: [Int32] = [5, 9, 200, 3, 3, 77]
        let full = model.makeCache(batch: 1, seqLen: 6)
        model.forward(tokens: tokens, targets: nil, batch: 1, seqLen: 6, cache: full)
        let kv = KVCache(config: model.config)
        let v = model.config.vocabSize
        for (i, token) in tokens.enumerated() {
            let logits = Array(UnsafeBufferPointer(start: model.decode([token], cache: kv), count: v))
            XCTAssertLessThan(maxRelativeError(logits, Array(full.logitsArray()[(i * v)..<((i + 1) * v)])), 1e-5)
        }
    }
}
