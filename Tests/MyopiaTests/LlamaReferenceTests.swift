import XCTest
import MyopiaTestSupport
import Myopia

/// Myopia against PyTorch + transformers on a random `LlamaForCausalLM` with grouped-query attention
/// (4 query heads, 2 key/value heads, head_dim 8), an untied head, RoPE θ 1000 and RMSNorm eps 1e-6;
/// B 2, T 16. Fixtures: tools/reference/llama_reference.py.
final class LlamaReferenceTests: XCTestCase {
    struct Reference: Decodable {
        let B: Int
        let T: Int
        let tokens: [[Int32]]
        let loss: Double
    }

    let folder = fixturesURL.appendingPathComponent("llama_tiny")

    func load(_ name: String = "reference") throws -> (Reference, SafeTensorsFile) {
        let json = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: folder.appendingPathComponent(name + ".json")))
        return (json, try SafeTensorsFile(contentsOf: folder.appendingPathComponent(name + ".safetensors")))
    }

    /// Inputs (the first T of each row) and targets (the last T).
    func split(_ rows: [[Int32]]) -> ([Int32], [Int32]) {
        (rows.flatMap { $0.dropLast() }, rows.flatMap { $0.dropFirst() })
    }

    func testReadsTheTransformersConfig() throws {
        try forEachKernel { _ in
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            let c = model.config
            XCTAssertEqual(c.family, .llama)
            XCTAssertEqual([c.vocabSize, c.dModel, c.dMLP, c.nLayers, c.nHeads, c.kvHeads, c.headSize], [96, 32, 48, 2, 4, 2, 8])
            XCTAssertEqual(c.ropeTheta, 1000)
            XCTAssertEqual(c.layerNormEps, 1e-6)
            XCTAssertFalse(c.tiedEmbeddings)
            XCTAssertNotNil(model.params.entry("lm_head.weight"))
        }
    }

    func testLogitsLossAndHiddenStatesMatchPyTorch() throws {
        try forEachKernel { _ in
            let (ref, tensors) = try load()
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            let cache = model.makeCache(batch: ref.B, seqLen: ref.T)
            let (inputs, targets) = split(ref.tokens)
            let loss = model.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: cache)!
            XCTAssertEqual(Double(loss), ref.loss, accuracy: 1e-4 * ref.loss)
            XCTAssertLessThan(maxRelativeError(cache.logitsArray(), try tensors.floats("logits")), 1e-4)
            XCTAssertLessThan(maxRelativeError(cache.positionLosses(), try tensors.floats("losses")), 1e-4)
            for l in 0..<model.config.nLayers {
                XCTAssertLessThan(maxRelativeError(cache.residual(layer: l), try tensors.floats("hidden.\(l)")), 1e-4, "layer \(l)")
            }
            XCTAssertLessThan(maxRelativeError(cache.residual(layer: model.config.nLayers), try tensors.floats("resid_final")), 1e-4)
        }
    }

    func testParameterGradientsMatchPyTorch() throws {
        try forEachKernel { _ in
            let (ref, tensors) = try load()
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            let cache = model.makeCache(batch: ref.B, seqLen: ref.T)
            let (inputs, targets) = split(ref.tokens)
            model.params.zeroGrads()
            model.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: cache)
            model.backward(cache: cache)
            for e in model.params.entries {
                let mine = Array(model.params.buffer(model.params.grads, e))
                XCTAssertLessThan(maxRelativeError(mine, try tensors.floats("grad." + e.name)), 1e-4, e.name)
            }
        }
    }

    /// The myopic, β = 0.5 and bigram flows against PyTorch's detach-based definitions: parameter
    /// gradients and the gradient reaching the residual stream entering each layer.
    func testFlowsMatchPyTorch() throws {
        try forEachKernel { _ in
            let (ref, _) = try load()
            let flows = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("flow_reference.safetensors"))
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            let cache = model.makeCache(batch: ref.B, seqLen: ref.T)
            let (inputs, targets) = split(ref.tokens)
            for (name, flow) in [("myopic", GradientFlow.myopic), ("beta0.5", .interpolated(0.5)), ("bigram", .bigram)] {
                model.flow = flow
                model.params.zeroGrads()
                model.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: cache)
                model.backward(cache: cache)
                for e in model.params.entries {
                    let mine = Array(model.params.buffer(model.params.grads, e))
                    XCTAssertLessThan(maxRelativeError(mine, try flows.floats("\(name).grad.\(e.name)")), 1e-4, "\(name) \(e.name)")
                }
            }
        }
    }

    /// ∂ℓ_t/∂h_{l,i} for every layer, target and position of row 0 against torch.autograd.
    func testHorizonMatchesTorchAutograd() throws {
        try forEachKernel { _ in
            let (ref, _) = try load()
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            let t = ref.T, c = model.config.dModel, layers = model.config.nLayers + 1
            let cache = model.makeCache(batch: 1, seqLen: t)
            let (inputs, targets) = split([ref.tokens[0]])
            model.forward(tokens: inputs, targets: targets, batch: 1, seqLen: t, cache: cache)
            let channels = channelGradients(model, cache, maxOffset: t - 1)
            let torch = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("horizon_reference.safetensors")).floats("grads")
            // torch's layout is [l, t, i, C]; ours [t, l, i, C].
            var reordered = [Float](repeating: 0, count: torch.count)
            for l in 0..<layers { for target in 0..<t { for i in 0..<t { for j in 0..<c {
                reordered[((target * layers + l) * t + i) * c + j] = torch[((l * t + target) * t + i) * c + j]
            } } } }
            XCTAssertLessThan(maxRelativeError(channels, reordered), 1e-4)
        }
    }

    func testTiedHeadMatchesPyTorch() throws {
        try forEachKernel { _ in
            let (ref, tensors) = try load("reference_tied")
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf_tied"))
            XCTAssertTrue(model.config.tiedEmbeddings)
            XCTAssertNil(model.params.entry("lm_head.weight"))
            let cache = model.makeCache(batch: ref.B, seqLen: ref.T)
            let (inputs, targets) = split(ref.tokens)
            let loss = model.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: cache)!
            XCTAssertEqual(Double(loss), ref.loss, accuracy: 1e-4 * ref.loss)
            XCTAssertLessThan(maxRelativeError(cache.logitsArray(), try tensors.floats("logits")), 1e-4)
        }
    }

    /// A Llama checkpoint written by Myopia reads back to the same config and weights.
    func testCheckpointRoundTrip() throws {
        try forEachKernel { _ in
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            let dir = try temporaryDirectory(self)
            try Checkpoint.saveModel(model, to: dir)
            let back = try Checkpoint.loadModel(from: dir)
            XCTAssertEqual(back.config, model.config)
            XCTAssertEqual(back.params.weightArray(), model.params.weightArray())
            XCTAssertEqual(back.params.entries.map(\.name), model.params.entries.map(\.name))
        }
    }
}
