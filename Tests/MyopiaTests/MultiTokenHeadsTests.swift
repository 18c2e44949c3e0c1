import XCTest
import MyopiaTestSupport
import Myopia

/// Multi-token prediction heads (docs/DESIGN.md §3) against PyTorch: a tiny model of every family, each
/// with N = 3 heads, under the vanilla and myopic flows: GPT-2 (2 layers), Llama (1 layer, so the extra
/// heads read the embedding output), and GPT-NeoX (sequential, no attention biases), Qwen2, Qwen3,
/// Mistral (window 3 on every layer), Gemma 2 (window 3 on its last layer, so on the extra blocks too;
/// soft-caps on every block's scores and every head's logits) and OLMo 2, 2 layers each. Fixtures:
/// tools/reference/multi_token_reference.py.
final class MultiTokenHeadsTests: XCTestCase {
    static let families = ["gpt2", "llama", "gpt_neox", "qwen2", "qwen3", "mistral", "gemma2", "olmo2"]

    struct Reference: Decodable {
        struct Flow: Decodable {
            let loss: Double
            let head_losses: [Double]
        }
        struct Family: Decodable {
            let batch: Int
            let seq_len: Int
            let inputs: [[Int32]]
            let targets: [[Int32]]
            let flows: [String: Flow]
        }
        let heads: Int
        let families: [String: Family]
    }

    let folder = fixturesURL.appendingPathComponent("multi_token")

    func reference() throws -> (Reference, SafeTensorsFile) {
        let json = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: folder.appendingPathComponent("multi_token_reference.json")))
        return (json, try SafeTensorsFile(contentsOf: folder.appendingPathComponent("multi_token_reference.safetensors")))
    }

    /// One training step's loss and gradients through the heads' code path.
    func step(_ model: Transformer, inputs: [Int32], targets: [Int32], batch: Int, seqLen: Int,
              cache: ActivationCache) -> (forward: Float, loss: Float, grads: [Float]) {
        model.params.zeroGrads()
        let first = model.forward(tokens: inputs, targets: targets, batch: batch, seqLen: seqLen, cache: cache)!
        let loss = model.forwardPredictionHeads(cache: cache)
        model.backwardPredictionHeads(cache: cache)
        return (first, loss, model.params.gradArray())
    }

    func testLossAndEveryGradientMatchPyTorch() throws {
        let (ref, tensors) = try reference()
        for family in Self.families {
            let f = try XCTUnwrap(ref.families[family])
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent(family))
            XCTAssertEqual(model.config.predictionHeads, ref.heads)
            let cache = model.makeCache(batch: f.batch, seqLen: f.seq_len)
            for (flowName, flow) in [("vanilla", GradientFlow.vanilla), ("myopic", .myopic)] {
                let expected = try XCTUnwrap(f.flows[flowName])
                model.flow = flow
                let r = step(model, inputs: f.inputs.flatMap { $0 }, targets: f.targets.flatMap { $0 },
                             batch: f.batch, seqLen: f.seq_len, cache: cache)
                XCTAssertEqual(Double(r.loss), expected.loss, accuracy: 1e-4, "\(family) \(flowName) loss")
                XCTAssertEqual(Double(r.forward), expected.head_losses[0], accuracy: 1e-4, "\(family) \(flowName) t+1 loss")
                var worst = 0.0, worstRelative = 0.0
                for e in model.params.entries {
                    let want = try tensors.floats("\(family).\(flowName).grad.\(e.name)")
                    let got = Array(r.grads[e.offset..<(e.offset + e.count)])
                    XCTAssertEqual(want.count, got.count, e.name)
                    let diff = zip(got, want).map { abs(Double($0) - Double($1)) }.max() ?? 0
                    worst = max(worst, diff)
                    worstRelative = max(worstRelative, maxRelativeError(got, want))
                    XCTAssertLessThan(diff, 1e-4, "\(family) \(flowName) \(e.name)")
                }
                XCTAssertEqual(Set(tensors.names.filter { $0.hasPrefix("\(family).\(flowName).grad.") }).count,
                               model.params.entries.count, "\(family): the reference's parameters are the model's")
                XCTAssertGreaterThan(model.params.entries.filter { $0.name.hasPrefix("mtp.") }.count, 0)
                XCTAssertLessThan(worst, 1e-4)
                print("\(family) \(flowName): \(ref.heads) heads vs PyTorch, loss \(r.loss) (\(expected.loss)), "
                      + "worst gradient error \(worst) absolute, \(worstRelative) relative to the tensor's largest entry")
            }
        }
    }

    /// With N = 1 the heads' path is the t+1 model: the same loss and the same gradients, bit for bit,
    /// under the vanilla, myopic and bigram flows.
    func testOneHeadIsTeacherForcedTrainingBitForBit() throws {
        for family in Self.families {
            var config: ModelConfig
            switch family {
            case "gpt2": config = ModelConfig(vocabSize: 29, maxPositions: 16, dModel: 16, nLayers: 2, nHeads: 2)
            case "llama": config = ModelConfig.llama(vocabSize: 29, maxPositions: 16, dModel: 16, nLayers: 2, nHeads: 4, nKVHeads: 2, dMLP: 24)
            default:
                // The reference model's shape, windows and soft-caps, with one head.
                config = try ModelConfig.load(from: folder.appendingPathComponent("\(family)/config.json"))
                config.maxPositions = 16
            }
            config.predictionHeads = 1
            let model = Transformer(config: config)
            model.initialize(seed: 7)
            let b = 2, t = 12, v = Int32(config.vocabSize)
            let tokens = (0..<(b * t)).map { Int32($0 * 7 + 3) % v }
            var targets = (0..<(b * t)).map { Int32($0 * 5 + 1) % v }
            targets[4] = CrossEntropy.ignoreIndex
            let cache = model.makeCache(batch: b, seqLen: t)
            for flow in [GradientFlow.vanilla, .myopic, .bigram] {
                model.flow = flow
                model.params.zeroGrads()
                let plain = model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)!
                model.backward(cache: cache)
                let plainGrads = model.params.gradArray()
                let heads = step(model, inputs: tokens, targets: targets, batch: b, seqLen: t, cache: cache)
                XCTAssertEqual(heads.loss.bitPattern, plain.bitPattern, "\(family) \(flow)")
                XCTAssertEqual(heads.grads, plainGrads, "\(family) \(flow)")
            }
        }
    }

    /// Adding heads leaves the t+1 model as it was: the same forward loss and logits.
    func testExtraHeadsLeaveTheNextTokenModelAlone() throws {
        let (ref, _) = try reference()
        let f = try XCTUnwrap(ref.families["gpt2"])
        let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("gpt2"))
        let cache = model.makeCache(batch: f.batch, seqLen: f.seq_len)
        let loss = model.forward(tokens: f.inputs.flatMap { $0 }, targets: f.targets.flatMap { $0 },
                                 batch: f.batch, seqLen: f.seq_len, cache: cache)!
        let logits = cache.logitsArray()
        _ = model.forwardPredictionHeads(cache: cache)
        XCTAssertEqual(cache.logitsArray(), logits)
        XCTAssertEqual(Double(loss), try XCTUnwrap(f.flows["vanilla"]).head_losses[0], accuracy: 1e-5)
    }

    func testLayoutPutsTheExtraBlocksAfterTheStandardKeys() {
        var gpt2 = ModelConfig(vocabSize: 11, maxPositions: 8, dModel: 8, nLayers: 2, nHeads: 2)
        gpt2.predictionHeads = 3
        let names = Transformer.layout(gpt2).map(\.0)
        let standard = names.prefix { !$0.hasPrefix("mtp.") }
        XCTAssertEqual(standard.last, "ln_f.bias")
        XCTAssertEqual(Array(standard), Transformer.layout({ var c = gpt2; c.predictionHeads = 1; return c }()).map(\.0))
        XCTAssertEqual(names.count, standard.count + 2 * 12)
        XCTAssertTrue(names.contains("mtp.2.ln_1.weight"))
        XCTAssertTrue(names.contains("mtp.3.attn.c_attn.weight"))
        var llama = ModelConfig.llama(vocabSize: 11, maxPositions: 8, dModel: 8, nLayers: 1, nHeads: 2, dMLP: 16)
        llama.predictionHeads = 2
        let llamaNames = Transformer.layout(llama).map(\.0)
        XCTAssertEqual(llamaNames.filter { $0.hasPrefix("mtp.") }.count, 9)
        XCTAssertTrue(llamaNames.contains("mtp.2.input_layernorm.weight"))
        XCTAssertTrue(llamaNames.contains("mtp.2.self_attn.q_proj.weight"))
        XCTAssertFalse(llamaNames.contains("mtp.3.input_layernorm.weight"))

        // Initialised as the trunk's blocks: norms 1, GPT-2's residual projections with the trunk's L.
        let model = Transformer(config: gpt2)
        model.initialize(seed: 3)
        XCTAssertEqual(model.params.weight("mtp.2.ln_1.weight")[0], 1)
        XCTAssertEqual(model.params.weight("mtp.3.attn.c_attn.bias")[0], 0)
        let proj = model.params.entry("mtp.2.mlp.c_proj.weight")!
        let values = Array(model.params.buffer(model.params.weights, proj))
        let std = (values.map { Double($0 * $0) }.reduce(0, +) / Double(values.count)).squareRoot()
        XCTAssertEqual(std, 0.02 / 2, accuracy: 0.003)
        // A copy carries them.
        XCTAssertEqual(model.copy().params.weightArray(), model.params.weightArray())
    }

    func testCheckpointRoundTripKeepsTheHeads() throws {
        var config = ModelConfig.llama(vocabSize: 13, maxPositions: 8, dModel: 8, nLayers: 1, nHeads: 2, dMLP: 16)
        config.predictionHeads = 3
        let model = Transformer(config: config)
        model.initialize(seed: 11)
        let dir = try temporaryDirectory(self)
        try Checkpoint.saveModel(model, to: dir)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as? [String: Any]
        XCTAssertEqual(json?["myopia_prediction_heads"] as? Int, 3)
        let loaded = try Checkpoint.loadModel(from: dir)
        XCTAssertEqual(loaded.config.predictionHeads, 3)
        XCTAssertEqual(try loaded.savedConfig.jsonData(), try model.savedConfig.jsonData())
        XCTAssertEqual(loaded.params.entries.map(\.name), model.params.entries.map(\.name))
        XCTAssertEqual(loaded.params.weightArray(), model.params.weightArray())

        // One head: the key is not written at all.
        let plain = Transformer(config: ModelConfig(vocabSize: 13, maxPositions: 8, dModel: 8, nLayers: 1, nHeads: 2))
        let plainDir = try temporaryDirectory(self)
        try Checkpoint.saveModel(plain, to: plainDir)
        let text = try String(contentsOf: plainDir.appendingPathComponent("config.json"), encoding: .utf8)
        XCTAssertFalse(text.contains("myopia_prediction_heads"))
        XCTAssertEqual(try Checkpoint.loadModel(from: plainDir).config.predictionHeads, 1)
    }

    func testBadPredictionHeadsIsRefusedByName() throws {
        let source = folder.appendingPathComponent("gpt2/config.json")
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: source)) as! [String: Any]
        for bad: Any in [0, -2, "three", 1 << 30] {
            var doc = original
            doc["myopia_prediction_heads"] = bad
            let url = try temporaryDirectory(self).appendingPathComponent("config.json")
            try JSONSerialization.data(withJSONObject: doc).write(to: url)
            XCTAssertThrowsError(try ModelConfig.load(from: url), "\(bad)") { error in
                guard let e = error as? InputError else { return XCTFail("not an InputError: \(error)") }
                XCTAssertEqual(e.file, url.path)
                XCTAssertEqual(e.field, "myopia_prediction_heads")
            }
        }
        // Continuous models predict numbers, not tokens ahead.
        var continuous = ModelConfig.continuous(inputFeatures: 2, outputs: 1, maxPositions: 8, dModel: 8, nLayers: 1, nHeads: 2)
        continuous.predictionHeads = 2
        XCTAssertThrowsError(try continuous.validate(file: "c.json")) {
            XCTAssertEqual(($0 as? InputError)?.field, "myopia_prediction_heads")
        }
    }

    func testExtraHeadsHaveHookNamesOfTheirOwn() throws {
        let (ref, _) = try reference()
        for family in Self.families {
            let f = try XCTUnwrap(ref.families[family])
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent(family))
            let config = model.config
            let names = HookPoint.all(config).map(\.description)
            for name in ["mtp.2.hook_resid_pre", "mtp.2.attn.hook_z", "mtp.3.attn.hook_pattern", "mtp.3.hook_resid_post",
                         "mtp.2.ln_final.hook_normalized", "mtp.3.mlp.hook_post"] {
                XCTAssertTrue(names.contains(name), "\(family) \(name)")
            }
            XCTAssertFalse(names.contains("mtp.4.hook_resid_pre"))
            XCTAssertThrowsError(try HookPoint(parsing: "mtp.1.hook_resid_pre", config: config))
            XCTAssertThrowsError(try HookPoint(parsing: "mtp.4.hook_resid_pre", config: config))
            XCTAssertThrowsError(try HookPoint(parsing: "mtp.2.hook_embed", config: config))

            let tokens = f.inputs.flatMap { $0 }, targets = f.targets.flatMap { $0 }
            let last = config.nLayers - 1
            let record = try model.runWithCache(
                tokens: tokens, targets: targets, batch: f.batch, seqLen: f.seq_len,
                names: ["mtp.2.hook_resid_pre", "blocks.\(last).hook_resid_pre", "mtp.3.hook_resid_post",
                        "mtp.3.ln_final.hook_normalized", "mtp.2.attn.hook_pattern", "mtp.2.hook_attn_out"])
            XCTAssertEqual(record["mtp.2.hook_resid_pre"]?.values, record["blocks.\(last).hook_resid_pre"]?.values)
            XCTAssertEqual(record["mtp.3.hook_resid_post"]?.shape, [f.batch, f.seq_len, config.dModel])

            // The same values forwardPredictionHeads leaves; the kept and the rebuilt pattern agree.
            let cache = model.makeCache(batch: f.batch, seqLen: f.seq_len)
            cache.keepsPattern = true
            model.forward(tokens: tokens, targets: targets, batch: f.batch, seqLen: f.seq_len, cache: cache)
            _ = model.forwardPredictionHeads(cache: cache)
            XCTAssertEqual(model.activation(HookPoint(.residPost, predictionHead: 3), in: cache).values,
                           record["mtp.3.hook_resid_post"]?.values)
            XCTAssertEqual(model.activation(HookPoint(.lnFinal, predictionHead: 3), in: cache).values,
                           record["mtp.3.ln_final.hook_normalized"]?.values)
            let kept = model.activation(HookPoint(.pattern, predictionHead: 2), in: cache).values
            let rebuilt = try XCTUnwrap(record["mtp.2.attn.hook_pattern"]).values
            XCTAssertLessThan(zip(kept, rebuilt).map { abs($0 - $1) }.max() ?? 1, 1e-6)
            // The attention output adds to the stream the head reads.
            let mid = model.activation(HookPoint(.residMid, predictionHead: 2), in: cache).values
            let pre = try XCTUnwrap(record["mtp.2.hook_resid_pre"]).values
            let out = try XCTUnwrap(record["mtp.2.hook_attn_out"]).values
            XCTAssertLessThan(zip(mid, zip(pre, out)).map { abs($0 - ($1.0 + $1.1)) }.max() ?? 1, 1e-5)

            XCTAssertThrowsError(try model.runWithCache(tokens: tokens, targets: targets, batch: f.batch, seqLen: f.seq_len,
                                                         names: ["mtp.2.hook_resid_post.grad"]))
        }
    }
}
