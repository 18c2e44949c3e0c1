import XCTest
import MyopiaTestSupport
import Myopia

final class DataTests: XCTestCase {
    func testByteTokenizerRoundTrip() {
        let t = ByteTokenizer()
        let text = "Hello, wörld — 你好 🙂\n"
        XCTAssertEqual(t.decode(t.encode(text)), text)
        XCTAssertEqual(t.encode("AB"), [65, 66])
        // Broken UTF-8 decodes with the replacement character instead of failing.
        XCTAssertEqual(t.decode([0xE4, 0xBD]), "\u{FFFD}")
    }

    func testWindowsAndSplit() {
        let d = TokenDataset.split(Array(0..<100).map(Int32.init), validationFraction: 0.1, source: "x")
        XCTAssertEqual(d.train.count, 90)
        XCTAssertEqual(d.validation.first, 90)
        XCTAssertEqual(TokenDataset.windows(Array(repeating: 0, count: 100), seqLen: 9), 10)
        XCTAssertEqual(TokenDataset.windows(Array(repeating: 0, count: 99), seqLen: 9), 9)
    }

    func testBatcherIsSeededAndWindowsAreShifted() {
        let tokens = (0..<1000).map { Int32($0 % 256) }
        var a = Batcher(batch: 3, seqLen: 8, seed: 5), b = Batcher(batch: 3, seqLen: 8, seed: 5)
        var xa = [Int32](repeating: 0, count: 24), ya = xa, xb = xa, yb = xa
        a.next(from: tokens, inputs: &xa, targets: &ya)
        b.next(from: tokens, inputs: &xb, targets: &yb)
        XCTAssertEqual(xa, xb)
        XCTAssertEqual(ya, yb)
        for i in 0..<24 where i % 8 != 7 { XCTAssertEqual(ya[i], xa[i + 1]) }
        var c = Batcher(batch: 3, seqLen: 8, seed: 6)
        var xc = xa, yc = ya
        c.next(from: tokens, inputs: &xc, targets: &yc)
        XCTAssertNotEqual(xa, xc)
    }

    func testEvaluationUsesConsecutiveWindows() {
        let config = ModelConfig(vocabSize: 256, maxPositions: 8, dModel: 16, nLayers: 1, nHeads: 2)
        let model = Transformer(config: config)
        model.initialize(seed: 1)
        let tokens = (0..<50).map { Int32($0 * 7 % 256) }
        let result = Evaluation.run(model, tokens: tokens, seqLen: 8, batch: 3)
        XCTAssertEqual(result.windows, 5)
        XCTAssertEqual(result.tokens, 40)
        // The same number from one forward over each window by hand.
        let cache = model.makeCache(batch: 1, seqLen: 8)
        var total = 0.0
        for w in 0..<5 {
            let window = Array(tokens[(w * 9)..<(w * 9 + 9)])
            total += Double(model.forward(tokens: Array(window.dropLast()), targets: Array(window.dropFirst()), batch: 1, seqLen: 8, cache: cache)!)
        }
        XCTAssertEqual(result.loss, total / 5, accuracy: 1e-6)
        XCTAssertEqual(result.positionLoss.count, 8)
    }

    func testUnigramBaseline() {
        // Two equally frequent symbols with add-one smoothing over 256: p = 5001 / (10000 + 256).
        let tokens = (0..<10000).map { Int32($0 % 2) }
        XCTAssertEqual(TokenStatistics.unigramCrossEntropy(train: tokens, eval: tokens, vocabSize: 256),
                       -Foundation.log(5001.0 / 10256.0), accuracy: 1e-12)
    }
}
