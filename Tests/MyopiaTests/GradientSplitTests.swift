import XCTest
import MyopiaTestSupport
import Myopia

final class GradientSplitTests: XCTestCase {
    struct Tokens: Decodable { let tokens: [[Int32]] }

    func testSplitOfTheFixtureModel() throws {
        let folder = fixturesURL.appendingPathComponent("gpt2_tiny")
        let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
        let rows = try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: folder.appendingPathComponent("reference.json"))).tokens
        let cache = model.makeCache(batch: 3, seqLen: 40)
        let pass = {
            model.params.zeroGrads()
            model.forward(tokens: rows.flatMap { $0.dropLast() }, targets: rows.flatMap { $0.dropFirst() },
                          batch: 3, seqLen: 40, cache: cache)
            model.backward(cache: cache)
        }
        model.flow = .interpolated(0.25)
        let split = GradientSplit.measure(model, pass: pass)
        XCTAssertEqual(model.flow, .interpolated(0.25))
        XCTAssertEqual(Set(split.keys), ["embeddings", "h.0.attn", "h.0.mlp", "h.1.attn", "h.1.mlp", "h.2.attn", "h.2.mlp", "final"])
        // Nothing downstream of the last attention's input has a future part.
        XCTAssertEqual(split["final"]!.futureNorm, 0)
        XCTAssertEqual(split["h.2.mlp"]!.futureNorm, 0)
        XCTAssertGreaterThan(split["embeddings"]!.futureNorm, 0)
        XCTAssertGreaterThan(split["h.0.mlp"]!.futureNorm, 0)
        for s in split.values {
            XCTAssertLessThanOrEqual(abs(s.cosine), 1 + 1e-9)
            // ‖v‖² = ‖m‖² + ‖f‖² + 2 m·f
            let mf = s.cosine * s.myopicNorm * s.futureNorm
            XCTAssertEqual(s.vanillaNorm * s.vanillaNorm, s.myopicNorm * s.myopicNorm + s.futureNorm * s.futureNorm + 2 * mf,
                           accuracy: 1e-9 + 1e-6 * s.vanillaNorm * s.vanillaNorm)
        }
        // The vanilla norm is the ordinary gradient's.
        model.flow = .vanilla
        pass()
        var embeddings = 0.0
        for e in model.params.entries where GradientSplit.group(of: e.name) == "embeddings" {
            for i in e.offset..<(e.offset + e.count) { embeddings += Double(model.params.grads[i]) * Double(model.params.grads[i]) }
        }
        XCTAssertEqual(split["embeddings"]!.vanillaNorm, embeddings.squareRoot(), accuracy: 1e-9)
    }
}
