import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaLab

final class SmolLM2LensTests: XCTestCase {
    let fixtures = fixturesURL
    static let store = AssetStore(home: FileManager.default.temporaryDirectory.appendingPathComponent("myopia-test-assets"))

    struct Passage: Decodable {
        let ids: [Int32]
        let loss: Double
        let losses: [Float]
        let hidden_norms: [Double]
    }

    /// On a passage transformers scored: the lens's last layer at offset 0 is transformers' loss,
    /// the named residual streams have transformers' norms, and on tiny-shakespeare windows the lens
    /// equals `Evaluation.run` while layer 0 (the embedding alone) is far worse than the last.
    func testSmolLM2LensAndResidualsMatchTransformers() throws {
        let url = try Self.store.fetch("smollm2-135m", log: { print($0) })
        let model = try GGUFModel.load(from: url, tokenizer: "smollm2-135m")
        struct Reference: Decodable { let passage: Passage }
        let passage = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: fixtures.appendingPathComponent("gguf/smollm2_reference.json"))).passage
        let t = passage.ids.count - 1, c = model.config.dModel, layers = model.config.nLayers
        let lens = LogitLens.compute(model, tokens: passage.ids, seqLen: t, layers: [0, 15, layers], offsets: [0, 1])
        XCTAssertEqual(lens.loss[2][0], passage.loss, accuracy: 1e-4 * passage.loss)
        XCTAssertGreaterThan(lens.loss[0][0], lens.loss[2][0] + 2)
        let names = (0..<layers).map { "blocks.\($0).hook_resid_pre" }
        let record = try model.runWithCache(tokens: Array(passage.ids.dropLast()), batch: 1, seqLen: t, names: names)
        for l in 0..<layers {
            let h = record[names[l]]!.values
            var mean = 0.0
            for i in 0..<t { mean += (0..<c).reduce(0.0) { $0 + Double(h[i * c + $1]) * Double(h[i * c + $1]) }.squareRoot() }
            XCTAssertEqual(mean / Double(t), passage.hidden_norms[l], accuracy: 1e-4 * passage.hidden_norms[l], "layer \(l)")
        }

        let text = try Self.store.fetch("tinyshakespeare", log: { print($0) })
        let tokenizer = try Tokenizers.load("smollm2-135m", store: Self.store)
        let tokens = Array(tokenizer.encode(String(decoding: try Data(contentsOf: text).prefix(4000), as: UTF8.self)))
        let shakespeare = LogitLens.compute(model, tokens: tokens, seqLen: 64, layers: [layers], offsets: [0], windows: 4, batch: 2)
        let eval = Evaluation.run(model, tokens: tokens, seqLen: 64, batch: 2, maxWindows: 4)
        XCTAssertEqual(shakespeare.loss[0][0], eval.loss, accuracy: 1e-6 * eval.loss)
    }
}
