import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// Every family Myopia reads beside GPT-2 and Llama against float64 PyTorch + transformers: a random
/// `…ForCausalLM` of each (GQA where the family has it, head_dim ≠ d_model/heads where it allows,
/// sliding windows shorter than the sequence, Gemma 2's soft-caps non-linear on these scores),
/// made by tools/reference/family_reference.py. Per tensor, ‖mine − theirs‖ / ‖theirs‖ ≤ 1e-4 for
/// logits, losses, residual streams, every parameter gradient (vanilla and myopic) and the gradient
/// reaching each residual stream; cached greedy decoding reproduces transformers' tokens and logits.
final class FamilyReferenceTests: XCTestCase {
    static let families = ["gpt_neox", "qwen2", "qwen3", "mistral", "gemma2", "olmo2"]
    static let tolerance = 1e-4

    struct Reference: Decodable {
        let B: Int
        let T: Int
        let tokens: [[Int32]]
        let loss: Double
        let decode: Decode
        struct Decode: Decodable {
            let prompt: [Int32]
            let generated: [Int32]
        }
    }

    func folder(_ family: String) -> URL { fixturesURL.appendingPathComponent("families/\(family)") }

    func load(_ family: String) throws -> (Reference, SafeTensorsFile, Transformer) {
        let dir = folder(family)
        let json = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: dir.appendingPathComponent("reference.json")))
        let tensors = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("reference.safetensors"))
        return (json, tensors, try Checkpoint.loadModel(from: dir.appendingPathComponent("hf")))
    }

    /// Inputs (the first T of each row) and targets (the last T).
    func split(_ rows: [[Int32]]) -> ([Int32], [Int32]) {
        (rows.flatMap { $0.dropLast() }, rows.flatMap { $0.dropFirst() })
    }

    func assertClose(_ mine: [Float], _ theirs: [Float], _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(mine.count, theirs.count, label, file: file, line: line)
        XCTAssertLessThanOrEqual(relativeError(mine, theirs), Self.tolerance, label, file: file, line: line)
    }

    func testReadsEachFamilysConfig() throws {
        try forEachKernel { _ in
            for family in Self.families {
                let c = try load(family).2.config
                XCTAssertEqual(c.family.rawValue, family)
                XCTAssertEqual(c.vocabSize, 96, family)
            }
            let neox = try load("gpt_neox").2.config
            XCTAssertEqual([neox.headSize, neox.rotaryDims], [12, 6])
            XCTAssertTrue(neox.parallelResidual)
            let gemma = try load("gemma2").2.config
            XCTAssertEqual(gemma.attentionSoftcap, 5)
            XCTAssertEqual(gemma.finalSoftcap, 3)
            XCTAssertEqual(gemma.queryPreAttentionScalar, 20)
            XCTAssertEqual((0..<3).map { gemma.window(layer: $0) }, [6, nil, 6])
            let mistral = try load("mistral").2.config
            XCTAssertEqual((0..<2).map { mistral.window(layer: $0) }, [6, 6])
            XCTAssertEqual(try load("qwen3").2.config.headSize, 12)
        }
    }

    func testLogitsLossesAndResidualStreamsMatchPyTorch() throws {
        try forEachKernel { _ in
            for family in Self.families {
                let (ref, tensors, model) = try load(family)
                let cache = model.makeCache(batch: ref.B, seqLen: ref.T)
                let (inputs, targets) = split(ref.tokens)
                let loss = model.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: cache)!
                XCTAssertEqual(Double(loss), ref.loss, accuracy: Self.tolerance * ref.loss, family)
                assertClose(cache.logitsArray(), try tensors.floats("logits"), "\(family) logits")
                assertClose(cache.positionLosses(), try tensors.floats("losses"), "\(family) losses")
                for l in 0..<model.config.nLayers {
                    assertClose(cache.residual(layer: l), try tensors.floats("hidden.\(l)"), "\(family) hidden.\(l)")
                }
                assertClose(cache.residual(layer: model.config.nLayers), try tensors.floats("resid_final"), "\(family) resid_final")
            }
        }
    }

    /// Vanilla and myopic parameter gradients, and the gradient reaching the residual stream entering
    /// each layer (and the final one), under both flows.
    func testGradientsOfBothFlowsMatchPyTorch() throws {
        try forEachKernel { _ in
            for family in Self.families {
                let (ref, tensors, model) = try load(family)
                let cache = model.makeCache(batch: ref.B, seqLen: ref.T)
                let (inputs, targets) = split(ref.tokens)
                let L = model.config.nLayers
                let hooks = (0..<L).map { HookPoint(.residPre, layer: $0) } + [HookPoint(.lnFinal)]
                for (flow, prefix) in [(GradientFlow.vanilla, ""), (.myopic, "myopic.")] {
                    model.flow = flow
                    model.params.zeroGrads()
                    model.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: cache)
                    let recorded = model.backward(cache: cache, recording: hooks)
                    for e in model.params.entries {
                        let mine = Array(model.params.buffer(model.params.grads, e))
                        assertClose(mine, try tensors.floats(prefix + "grad." + e.name), "\(family) \(prefix)grad.\(e.name)")
                    }
                    let flowName = flow == .vanilla ? "vanilla" : "myopic"
                    for l in 0..<L {
                        assertClose(recorded[HookPoint(.residPre, layer: l)]!, try tensors.floats("\(flowName).grad_input.\(l)"),
                                    "\(family) \(flowName).grad_input.\(l)")
                    }
                }
            }
        }
    }

    /// Greedy decoding through the KV cache (sliding windows included) gives transformers' tokens,
    /// and at each step the logits of its cached decode.
    func testCachedGreedyDecodingMatchesTransformers() throws {
        try forEachKernel { _ in
            for family in Self.families {
                let (ref, tensors, model) = try load(family)
                let prompt = ref.decode.prompt, generated = ref.decode.generated
                let expected = try tensors.floats("decode.logits"), v = model.config.vocabSize
                let kv = KVCache(config: model.config)
                var logits = model.decode(prompt, cache: kv)
                var mine: [Int32] = [], steps: [Float] = []
                for _ in 0..<generated.count {
                    let row = Array(UnsafeBufferPointer(start: logits, count: v))
                    steps += row
                    let next = Int32(row.indices.max { row[$0] < row[$1] }!)
                    mine.append(next)
                    logits = model.decode([next], cache: kv)
                }
                XCTAssertEqual(mine, generated, family)
                assertClose(steps, expected, "\(family) decode logits")
            }
        }
    }

    /// A model saved by Myopia reads back identically, and its config.json names the family's
    /// transformers class (tools/reference/family_roundtrip_check.py loads it in transformers).
    func testSavedFoldersRoundTrip() throws {
        try forEachKernel { _ in
            for family in Self.families {
                let (ref, _, model) = try load(family)
                let dir = try temporaryDirectory(self).appendingPathComponent(family)
                try Checkpoint.saveModel(model, to: dir)
                let again = try Checkpoint.loadModel(from: dir)
                XCTAssertEqual(again.config, model.config, family)
                let (inputs, targets) = split(ref.tokens)
                let a = model.makeCache(batch: ref.B, seqLen: ref.T), b = again.makeCache(batch: ref.B, seqLen: ref.T)
                let la = model.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: a)
                let lb = again.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: b)
                XCTAssertEqual(la, lb, family)
                XCTAssertEqual(a.logitsArray(), b.logitsArray(), family)
            }
        }
    }

    /// The sites some families add have names, values and gradients as transformers computes them
    /// (tools/reference/named_sites_reference.py): q/k norms' outputs before RoPE (Qwen3, OLMo 2) and
    /// the post-norms' inputs (Gemma 2, OLMo 2). For q/k-norm families hook_rot_q/k.grad is the same
    /// gradient rotated by RoPE: each head vector keeps its norm.
    func testNamedSitesOfQKNormsAndPostNormsMatchTransformers() throws {
        struct Sites: Decodable {
            struct Family: Decodable { let loss: Double; let shapes: [String: [Int]] }
            let families: [String: Family]
        }
        let dir = fixturesURL.appendingPathComponent("families/named_sites")
        let sites = try JSONDecoder().decode(Sites.self, from: Data(contentsOf: dir.appendingPathComponent("named_sites.json"))).families
        XCTAssertEqual(Set(sites.keys), ["qwen3", "olmo2", "gemma2"])
        for (family, expected) in sites.sorted(by: { $0.key < $1.key }) {
            let (ref, _, model) = try load(family)
            let tensors = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("\(family).safetensors"))
            let (inputs, targets) = split(ref.tokens)
            var names = expected.shapes.keys.sorted()
            names += names.map { $0 + ".grad" }
            let qkNorm = model.config.architecture.qkNorm != .none
            if qkNorm { names += ["blocks.0.attn.hook_rot_q.grad", "blocks.0.attn.hook_rot_k.grad"] }
            model.params.zeroGrads()
            let record = try model.runWithCache(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, names: names)
            XCTAssertEqual(Double(record.loss!), expected.loss, accuracy: Self.tolerance * expected.loss, family)
            for (name, shape) in expected.shapes {
                for key in [name, name + ".grad"] {
                    XCTAssertEqual(record[key]?.shape, shape, "\(family) \(key)")
                    assertClose(record[key]?.values ?? [], try tensors.floats(key), "\(family) \(key)")
                }
            }
            guard qkNorm else { continue }
            for (rotated, normed) in [("blocks.0.attn.hook_rot_q.grad", "blocks.0.attn.q_norm.hook_normalized.grad"),
                                      ("blocks.0.attn.hook_rot_k.grad", "blocks.0.attn.k_norm.hook_normalized.grad")] {
                let r = record[rotated]!.values, q = try tensors.floats(normed), hs = model.config.headSize
                XCTAssertNotEqual(r, q, rotated)
                for head in stride(from: 0, to: r.count, by: hs) {
                    let a = r[head..<head + hs].reduce(0) { $0 + $1 * $1 }, b = q[head..<head + hs].reduce(0) { $0 + $1 * $1 }
                    XCTAssertEqual(a, b, accuracy: 1e-4 * max(b, 1e-12), "\(family) \(rotated) head \(head / hs)")
                }
            }
        }
        // Asked of a family without the site: refused by name.
        let qwen2 = try load("qwen2").2
        assertInputError(try qwen2.runWithCache(tokens: [1], batch: 1, seqLen: 1, names: ["blocks.0.attn.q_norm.hook_normalized"]),
                         "invalidValue", field: "blocks.0.attn.q_norm.hook_normalized", reason: "q/k norms")
        assertInputError(try qwen2.runWithCache(tokens: [1], batch: 1, seqLen: 1, names: ["blocks.0.ln2_post.hook_in"]),
                         "invalidValue", field: "blocks.0.ln2_post.hook_in", reason: "norms after attention")
    }

    /// `pad_token_id` is nn.Embedding's padding_idx in every family read under Llama's keys: the pad
    /// row takes no gradient from its lookups (tools/reference/padding_reference.py). Gemma 2 and OLMo 2
    /// take transformers' default (0, 1) when the key is absent; a negative id counts from the end.
    func testThePaddingRowTakesNoLookupGradientAsInTransformers() throws {
        struct Case: Decodable {
            let family: String
            let pad_token_id: Int
            let row: Int
            let tokens: [[Int32]]
            let loss: Double
        }
        struct Cases: Decodable { let cases: [String: Case] }
        let dir = fixturesURL.appendingPathComponent("families/padding")
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: dir.appendingPathComponent("padding.json"))).cases
        XCTAssertEqual(Set(cases.keys), ["gemma2", "olmo2", "qwen2_negative"])
        for (name, c) in cases.sorted(by: { $0.key < $1.key }) {
            // The committed config says null; absent means the family default, else the id itself.
            let hf = folder(c.family).appendingPathComponent("hf")
            var config = try JSONSerialization.jsonObject(with: Data(contentsOf: hf.appendingPathComponent("config.json"))) as! [String: Any]
            if name == c.family { config.removeValue(forKey: "pad_token_id") } else { config["pad_token_id"] = c.pad_token_id }
            let out = try temporaryDirectory(self).appendingPathComponent(name)
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            try JSONSerialization.data(withJSONObject: config).write(to: out.appendingPathComponent("config.json"))
            try FileManager.default.copyItem(at: hf.appendingPathComponent("model.safetensors"),
                                             to: out.appendingPathComponent("model.safetensors"))
            let model = try Checkpoint.loadModel(from: out)
            XCTAssertEqual(model.config.paddingRow, c.row, name)
            let b = c.tokens.count, t = c.tokens[0].count - 1
            let (inputs, targets) = split(c.tokens)
            XCTAssertTrue(inputs.contains(Int32(c.row)), name)
            let cache = model.makeCache(batch: b, seqLen: t)
            model.params.zeroGrads()
            let loss = model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)!
            model.backward(cache: cache)
            XCTAssertEqual(Double(loss), c.loss, accuracy: Self.tolerance * c.loss, name)
            let entry = model.params.entries.first { $0.name == "model.embed_tokens.weight" }!
            let expected = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("\(name).safetensors")).floats("grad.embed")
            assertClose(Array(model.params.buffer(model.params.grads, entry)), expected, "\(name) embedding gradient")
            // Saved and read again, the id stays (a null is written when there is none).
            let saved = try temporaryDirectory(self).appendingPathComponent(name + "-saved")
            try Checkpoint.saveModel(model, to: saved)
            XCTAssertEqual(try Checkpoint.loadModel(from: saved).config.padTokenID, c.pad_token_id, name)
        }
    }
}

/// config.json values a family does not implement are refused by name, never ignored.
final class FamilyConfigTests: XCTestCase {
    /// `config` written to a temporary config.json, then read as Myopia reads a folder's.
    func read(_ config: [String: Any]) throws -> ModelConfig {
        let url = try temporaryDirectory(self).appendingPathComponent("config.json")
        try JSONSerialization.data(withJSONObject: config).write(to: url)
        return try ModelConfig.load(from: url)
    }

    func base(_ family: String) throws -> [String: Any] {
        let url = fixturesURL.appendingPathComponent("families/\(family)/hf/config.json")
        return try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    func testUnsupportedModelTypeNamesTheFileTheValueAndTheFamilies() throws {
        try forEachKernel { _ in
            var c = try base("qwen2")
            c["model_type"] = "phi3"
            let error = assertInputError(try read(c), "unsupported", field: "model_type", reason: "phi3")
            XCTAssertTrue(error?.description.contains("config.json") == true)
            for family in ["gpt2", "llama", "gpt_neox", "qwen2", "qwen3", "mistral", "gemma2", "olmo2"] {
                XCTAssertTrue(error?.description.contains(family) == true, family)
            }
        }
    }

    func testPadTokenIDOutsideTheVocabularyIsRefusedAndGPTNeoXHasNoPaddingRow() throws {
        var c = try base("gemma2")
        c["pad_token_id"] = 96
        assertInputError(try read(c).validate(), "invalidValue", field: "pad_token_id", reason: "96")
        c["pad_token_id"] = NSNull()
        XCTAssertNil(try read(c).paddingRow)
        var neox = try base("gpt_neox")
        neox["pad_token_id"] = 3
        XCTAssertNil(try read(neox).paddingRow)
    }

    func testFieldsThatChangeTheComputationAreRefusedByName() throws {
        try forEachKernel { _ in
            let cases: [(String, String, Any, String)] = [
                ("qwen2", "rope_scaling", ["rope_type": "yarn", "factor": 4.0], "rope_scaling"),
                ("qwen3", "rope_parameters", ["rope_type": "linear", "rope_theta": 1000.0], "rope_parameters"),
                ("qwen3", "attention_bias", true, "attention_bias"),
                ("olmo2", "mlp_bias", true, "mlp_bias"),
                ("mistral", "partial_rotary_factor", 0.5, "partial_rotary_factor"),
                ("mistral", "attn_logit_softcapping", 30.0, "attn_logit_softcapping"),
                ("gemma2", "hidden_activation", "gelu", "hidden_activation"),
                ("gemma2", "use_bidirectional_attention", true, "use_bidirectional_attention"),
                ("gemma2", "layer_types", ["sliding_attention", "chunked_attention", "full_attention"], "layer_types[1]"),
                ("gpt_neox", "hidden_act", "relu", "hidden_act"),
                ("gpt_neox", "rope_scaling", ["rope_type": "dynamic", "factor": 2.0], "rope_scaling"),
            ]
            for (family, key, value, field) in cases {
                var c = try base(family)
                c[key] = value
                _ = assertInputError(try read(c), "unsupported", field: field)
            }
            var windowless = try base("gemma2")
            windowless["sliding_window"] = NSNull()
            _ = assertInputError(try read(windowless), "missing", field: "sliding_window")
            var neox = try base("gpt_neox")
            neox["rope_parameters"] = ["rope_type": "default", "rope_theta": 1000.0, "partial_rotary_factor": 0.3]
            _ = assertInputError(try read(neox), "invalidValue", field: "rotary_pct")
        }
    }

    /// An absent key means transformers' default for the family (which is not always "off"); an
    /// explicit null turns a Gemma 2 cap off.
    func testAbsentKeysTakeTransformersDefaults() throws {
        try forEachKernel { _ in
            var qwen3 = try base("qwen3")
            qwen3.removeValue(forKey: "head_dim")
            XCTAssertEqual(try read(qwen3).headSize, 128)
            var mistral = try base("mistral")
            mistral.removeValue(forKey: "head_dim")
            mistral.removeValue(forKey: "sliding_window")
            let m = try read(mistral)
            XCTAssertEqual([m.headSize, m.window(layer: 0), m.window(layer: 1)], [32 / 4, 4096, 4096])
            var gemma = try base("gemma2")
            for key in ["attn_logit_softcapping", "final_logit_softcapping", "query_pre_attn_scalar", "sliding_window", "layer_types"] {
                gemma.removeValue(forKey: key)
            }
            let g = try read(gemma)
            XCTAssertEqual([g.attentionSoftcap, g.finalSoftcap, g.queryPreAttentionScalar], [50, 30, 256])
            XCTAssertEqual((0..<3).map { g.window(layer: $0) }, [4096, nil, 4096])
            gemma["attn_logit_softcapping"] = NSNull()
            XCTAssertNil(try read(gemma).attentionSoftcap)
            var olmo = try base("olmo2")
            olmo.removeValue(forKey: "rms_norm_eps")
            XCTAssertEqual(try read(olmo).layerNormEps, 1e-5)
        }
    }
}
