import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaTraining
@testable import MyopiaModel

/// Invariants of the gradient flows (docs/DESIGN.md §4) on the random GPT-2 fixture.
final class GradientFlowTests: XCTestCase {
    let folder = fixturesURL.appendingPathComponent("gpt2_tiny")

    struct Tokens: Decodable { let tokens: [[Int32]] }

    /// (loss, all parameter gradients, the gradient at the embeddings' output) under `flow`.
    func gradients(_ flow: GradientFlow, seqLen: Int = 40) throws -> (Float, [Float]) {
        let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
        let rows = try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: folder.appendingPathComponent("reference.json"))).tokens
        let inputs = rows.flatMap { $0.prefix(seqLen) }, targets = rows.flatMap { $0.dropFirst().prefix(seqLen) }
        model.flow = flow
        let cache = model.makeCache(batch: rows.count, seqLen: seqLen)
        model.params.zeroGrads()
        let loss = model.forward(tokens: inputs, targets: targets, batch: rows.count, seqLen: seqLen, cache: cache)!
        model.backward(cache: cache)
        return (loss, model.params.gradArray())
    }

    func testBetaOneIsVanillaAndBetaZeroIsMyopicBitForBit() throws {
        let vanilla = try gradients(.vanilla), myopic = try gradients(.myopic)
        XCTAssertTrue(try gradients(.interpolated(1)).1 == vanilla.1, "beta=1 differs from vanilla")
        XCTAssertTrue(try gradients(.interpolated(0)).1 == myopic.1, "beta=0 differs from myopic")
    }

    func testMyopicForwardIsVanillaForward() throws {
        XCTAssertEqual(try gradients(.myopic).0, try gradients(.vanilla).0)
        XCTAssertEqual(try gradients(.interpolated(0.3)).0, try gradients(.vanilla).0)
    }

    func testMyopicChangesTheSignalBelowTheLastAttention() throws {
        let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
        let (_, v) = try gradients(.vanilla), (_, m) = try gradients(.myopic), (_, half) = try gradients(.interpolated(0.5))
        for e in model.params.entries {
            let gv = Array(v[e.offset..<(e.offset + e.count)]), gm = Array(m[e.offset..<(e.offset + e.count)])
            let diff = relativeError(gm, gv)
            // Everything after the last attention's input (its c_attn weights, c_proj, the last MLP, ln_f)
            // sees only what the last attention receives, which no flow changes.
            let downstream = e.name.hasPrefix("ln_f") || e.name.hasPrefix("h.2.attn") || e.name.hasPrefix("h.2.ln_2")
                || e.name.hasPrefix("h.2.mlp")
            if downstream {
                XCTAssertEqual(diff, 0, accuracy: 1e-6, e.name)
            } else {
                XCTAssertGreaterThan(diff, 1e-3, "\(e.name) should differ under myopic flow")
            }
            // β = 0.5 lies between: not equal to either.
            let gh = Array(half[e.offset..<(e.offset + e.count)])
            if !downstream { XCTAssertGreaterThan(relativeError(gh, gv), 1e-4, e.name); XCTAssertGreaterThan(relativeError(gh, gm), 1e-4, e.name) }
        }
    }

    func testOnePositionHasTheSameGradientUnderEveryFlow() throws {
        let vanilla = try gradients(.vanilla, seqLen: 1).1
        XCTAssertTrue(try gradients(.myopic, seqLen: 1).1 == vanilla)
        XCTAssertTrue(try gradients(.interpolated(0.5), seqLen: 1).1 == vanilla)
        // With one position a causal model is its own bigram.
        XCTAssertTrue(try gradients(.bigram, seqLen: 1).1 == vanilla)
    }

    func testBigramAttendsOnlyToItself() throws {
        let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
        model.flow = .bigram
        let cache = model.makeCache(batch: 1, seqLen: 5)
        model.forward(tokens: [1, 2, 3, 4, 5], targets: [2, 3, 4, 5, 6], batch: 1, seqLen: 5, cache: cache)
        let a = cache.layers[0]
        let c = model.config.dModel
        for t in 0..<5 {
            for j in 0..<c { XCTAssertEqual(a.z[t * c + j], a.qkv[t * 3 * c + 2 * c + j]) }
        }
        // A later token cannot change an earlier prediction, nor an earlier token a later one.
        let before = cache.logitsArray()
        model.forward(tokens: [7, 2, 3, 4, 5], targets: [2, 3, 4, 5, 6], batch: 1, seqLen: 5, cache: cache)
        let after = cache.logitsArray(), v = model.config.vocabSize
        XCTAssertNotEqual(Array(before[0..<v]), Array(after[0..<v]))
        XCTAssertEqual(Array(before[v...]), Array(after[v...]))
        // Saved, it stays a bigram.
        let dir = try temporaryDirectory(self)
        try Checkpoint.saveModel(model, to: dir)
        XCTAssertEqual(try Checkpoint.loadModel(from: dir).flow, .bigram)
    }

    /// Every parameter gradient against a PyTorch implementation of each flow
    /// (tools/reference/flow_reference.py: past keys/values from a detached input with live weights).
    func testFlowsMatchPyTorch() throws {
        let reference = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("flow_reference.safetensors"))
        let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
        for (flow, name) in [(GradientFlow.myopic, "myopic"), (.interpolated(0.5), "beta0.5"), (.bigram, "bigram")] {
            let (_, g) = try gradients(flow)
            for e in model.params.entries {
                let expected = try reference.floats("\(name).grad.\(e.name)")
                let got = Array(g[e.offset..<(e.offset + e.count)])
                // The key bias gets no gradient in exact arithmetic (softmax ignores a constant per
                // query): compare what is left of it in absolute terms.
                if e.name.hasSuffix("c_attn.bias") {
                    let c = model.config.dModel
                    let keys = Array(got[c..<(2 * c)]), keysExpected = Array(expected[c..<(2 * c)])
                    XCTAssertLessThan(zip(keys, keysExpected).map { abs($0 - $1) }.max()!, 1e-6, "\(name) \(e.name) keys")
                    let rest = Array(got[..<c] + got[(2 * c)...]), restExpected = Array(expected[..<c] + expected[(2 * c)...])
                    XCTAssertLessThan(relativeError(rest, restExpected), 1e-4, "\(name) \(e.name)")
                    continue
                }
                XCTAssertLessThan(relativeError(got, expected), 1e-4, "\(name) \(e.name)")
                XCTAssertLessThan(maxRelativeError(got, expected), 1e-4, "\(name) \(e.name)")
            }
        }
    }

    func testFlowParsing() throws {
        XCTAssertEqual(try GradientFlow(parsing: "beta=0.3"), .interpolated(0.3))
        XCTAssertEqual(try GradientFlow(parsing: "myopic"), .myopic)
        XCTAssertThrowsError(try GradientFlow(parsing: "beta=1.5"))
        XCTAssertThrowsError(try GradientFlow(parsing: "sideways"))
    }
}
