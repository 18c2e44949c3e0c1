import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// Named activations (TransformerLens names) and their gradients, on the PyTorch reference models:
/// the residual streams and their gradients against transformers + autograd under every flow; the
/// rest through identities that tie each activation to its neighbours and each gradient to the
/// parameter gradients PyTorch computed (e.g. ∂L/∂W_O = zᵀ · ∂L/∂attn_out).
final class NamedActivationsTests: XCTestCase {
    struct Reference: Decodable {
        let B: Int
        let T: Int
        let tokens: [[Int32]]
    }

    struct Fixture {
        let model: Transformer
        let b: Int, t: Int
        let inputs: [Int32], targets: [Int32]
        let reference: SafeTensorsFile
        let flows: SafeTensorsFile
    }

    func fixture(_ name: String) throws -> Fixture {
        let folder = fixturesURL.appendingPathComponent(name)
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: folder.appendingPathComponent("reference.json")))
        return Fixture(model: try Checkpoint.loadModel(from: folder.appendingPathComponent("hf")), b: ref.B, t: ref.T,
                       inputs: ref.tokens.flatMap { $0.dropLast() }, targets: ref.tokens.flatMap { $0.dropFirst() },
                       reference: try SafeTensorsFile(contentsOf: folder.appendingPathComponent("reference.safetensors")),
                       flows: try SafeTensorsFile(contentsOf: folder.appendingPathComponent("flow_reference.safetensors")))
    }

    /// Every activation and every gradient of the model, vanilla flow.
    func everything(_ f: Fixture) throws -> ActivationRecord {
        let names = HookPoint.all(f.model.config).flatMap { [$0.description, $0.description + ".grad"] }
        f.model.params.zeroGrads()
        return try f.model.runWithCache(tokens: f.inputs, targets: f.targets, batch: f.b, seqLen: f.t, names: names)
    }

    // MARK: - Names

    func testNamesRoundTripWithTheirShapes() throws {
        let gpt2 = try fixture("gpt2_tiny").model.config, llama = try fixture("llama_tiny").model.config
        for config in [gpt2, llama] {
            let hooks = HookPoint.all(config)
            for hook in hooks { XCTAssertEqual(try HookPoint(parsing: hook.description, config: config), hook) }
            XCTAssertEqual(Set(hooks.map(\.description)).count, hooks.count)
        }
        // GPT-2: embed, pos_embed, 15 per block, ln_final; Llama: embed, 18 per block (with rot_q,
        // rot_k and pre_linear), ln_final.
        XCTAssertEqual(HookPoint.all(gpt2).count, 2 + 15 * 3 + 1)
        XCTAssertEqual(HookPoint.all(llama).count, 1 + 18 * 2 + 1)
        let shapes: [(String, [Int])] = [("hook_embed", [2, 16, 32]), ("blocks.1.attn.hook_q", [2, 16, 4, 8]),
                                         ("blocks.1.attn.hook_k", [2, 16, 2, 8]), ("blocks.0.attn.hook_rot_k", [2, 16, 2, 8]),
                                         ("blocks.0.attn.hook_pattern", [2, 4, 16, 16]), ("blocks.0.attn.hook_z", [2, 16, 4, 8]),
                                         ("blocks.0.mlp.hook_pre_linear", [2, 16, 48]), ("ln_final.hook_normalized", [2, 16, 32])]
        for (name, shape) in shapes {
            XCTAssertEqual(try HookPoint(parsing: name, config: llama).shape(llama, batch: 2, seqLen: 16), shape, name)
        }
        XCTAssertEqual(try ActivationName(parsing: "blocks.2.hook_resid_post.grad", config: gpt2).description, "blocks.2.hook_resid_post.grad")
        for bad in ["blocks.3.hook_resid_pre", "blocks.x.hook_resid_pre", "hook_resid_pre", "blocks.0.hook_nothing",
                    "blocks.0.attn.hook_rot_q", "blocks.0.mlp.hook_pre_linear", "ln_final", ""] {
            XCTAssertThrowsError(try ActivationName(parsing: bad, config: gpt2), bad) { XCTAssertTrue($0 is InputError) }
        }
        XCTAssertThrowsError(try HookPoint(parsing: "hook_pos_embed", config: llama))
    }

    func testOnlyTheNamesAskedForComeBack() throws {
        let f = try fixture("gpt2_tiny")
        let record = try f.model.runWithCache(tokens: f.inputs, targets: f.targets, batch: f.b, seqLen: f.t,
                                              names: ["blocks.1.attn.hook_pattern", "blocks.0.hook_resid_mid.grad"])
        XCTAssertEqual(Set(record.tensors.keys), ["blocks.1.attn.hook_pattern", "blocks.0.hook_resid_mid.grad"])
        XCTAssertEqual(record["blocks.1.attn.hook_pattern"]?.shape, [3, 3, 40, 40])
        XCTAssertNotNil(record.loss)
        XCTAssertThrowsError(try f.model.runWithCache(tokens: f.inputs, batch: f.b, seqLen: f.t, names: ["hook_embed.grad"])) {
            XCTAssertTrue("\($0)".contains("targets"), "\($0)")
        }
        XCTAssertThrowsError(try f.model.runWithCache(tokens: [999] + f.inputs.dropFirst(), batch: f.b, seqLen: f.t, names: []))
        XCTAssertThrowsError(try f.model.runWithCache(tokens: f.inputs, batch: f.b, seqLen: f.t - 1, names: []))
    }

    // MARK: - Against PyTorch

    /// The residual streams against transformers' hidden states, and their gradients against
    /// autograd under every flow (vanilla, myopic, β = 0.5, bigram).
    func checkResidualsAgainstPyTorch(_ name: String) throws {
        let f = try fixture(name)
        let layers = f.model.config.nLayers
        var names = (0..<layers).map { "blocks.\($0).hook_resid_pre" } + ["blocks.\(layers - 1).hook_resid_post"]
        names += names.map { $0 + ".grad" }
        for (flowName, flow) in [("vanilla", GradientFlow.vanilla), ("myopic", .myopic), ("beta0.5", .interpolated(0.5)),
                                 ("bigram", .bigram)] {
            f.model.flow = flow
            let record = try f.model.runWithCache(tokens: f.inputs, targets: f.targets, batch: f.b, seqLen: f.t, names: names)
            for l in 0..<layers {
                let grad = try XCTUnwrap(record["blocks.\(l).hook_resid_pre.grad"]).values
                XCTAssertLessThan(maxRelativeError(grad, try f.flows.floats("\(flowName).grad_input.\(l)")), 1e-4, "\(name) \(flowName) \(l)")
                if flow == .vanilla {
                    let h = try XCTUnwrap(record["blocks.\(l).hook_resid_pre"]).values
                    XCTAssertLessThan(maxRelativeError(h, try f.reference.floats("hidden.\(l)")), 1e-4)
                }
            }
            let final = try XCTUnwrap(record["blocks.\(layers - 1).hook_resid_post.grad"]).values
            XCTAssertLessThan(maxRelativeError(final, try f.flows.floats("\(flowName).grad_input.final")), 1e-4, "\(name) \(flowName)")
            if flow == .vanilla {
                let h = try XCTUnwrap(record["blocks.\(layers - 1).hook_resid_post"]).values
                XCTAssertLessThan(maxRelativeError(h, try f.reference.floats("resid_final")), 1e-4)
            }
        }
        f.model.flow = .vanilla
    }

    func testGPT2ResidualsAndTheirGradientsMatchPyTorch() throws { try checkResidualsAgainstPyTorch("gpt2_tiny") }
    func testLlamaResidualsAndTheirGradientsMatchPyTorch() throws { try checkResidualsAgainstPyTorch("llama_tiny") }

    /// Recording gradients changes nothing about backward: the parameter gradients are bit for bit
    /// those of `backward`, under every flow.
    func testRecordingBackwardGivesTheOrdinaryParameterGradients() throws {
        for name in ["gpt2_tiny", "llama_tiny"] {
            let f = try fixture(name)
            let cache = f.model.makeCache(batch: f.b, seqLen: f.t)
            f.model.reference = f.model.copy()
            for flow in [GradientFlow.vanilla, .myopic, .interpolated(0.3), .bigram, .localMyopic] {
                f.model.flow = flow
                f.model.params.zeroGrads()
                f.model.forward(tokens: f.inputs, targets: f.targets, batch: f.b, seqLen: f.t, cache: cache)
                f.model.backward(cache: cache)
                let ordinary = f.model.params.gradArray()
                // Under local-myopic, attention reads the reference's keys and values: no scores or pattern gradient.
                let names = HookPoint.all(f.model.config).filter { flow != .localMyopic || ($0.kind != .pattern && $0.kind != .attnScores) }
                    .map { $0.description + ".grad" }
                f.model.params.zeroGrads()
                _ = try f.model.runWithCache(tokens: f.inputs, targets: f.targets, batch: f.b, seqLen: f.t, names: names, cache: cache)
                XCTAssertEqual(f.model.params.gradArray(), ordinary, "\(name) \(flow)")
            }
        }
    }

    // MARK: - Forward identities

    func testGPT2ForwardIdentities() throws { try checkForwardIdentities("gpt2_tiny") }
    func testLlamaForwardIdentities() throws { try checkForwardIdentities("llama_tiny") }

    func checkForwardIdentities(_ name: String) throws {
        let f = try fixture(name)
        let config = f.model.config, llama = config.family == .llama
        let b = f.b, t = f.t, n = b * t, c = config.dModel, nh = config.nHeads, nkv = config.kvHeads, hs = config.headSize
        let cache = f.model.makeCache(batch: b, seqLen: t)
        let record = try f.model.runWithCache(tokens: f.inputs, batch: b, seqLen: t,
                                              names: HookPoint.all(config).map(\.description), cache: cache)
        func get(_ name: String) -> [Float] { record[name]!.values }
        func eps() -> Double { config.layerNormEps }
        let w = f.model.params
        // Embeddings: resid_pre of block 0 is embed (+ pos_embed), bit for bit.
        let embed = get("hook_embed")
        let sum = llama ? embed : zip(embed, get("hook_pos_embed")).map { $0 + $1 }
        XCTAssertEqual(sum, get("blocks.0.hook_resid_pre"))
        for l in 0..<config.nLayers {
            let p = "blocks.\(l)."
            let pre = get(p + "hook_resid_pre"), mid = get(p + "hook_resid_mid"), post = get(p + "hook_resid_post")
            XCTAssertEqual(post, l + 1 < config.nLayers ? get("blocks.\(l + 1).hook_resid_pre") : cache.residual(layer: config.nLayers))
            XCTAssertLessThan(maxRelativeError(zip(pre, get(p + "hook_attn_out")).map { $0 + $1 }, mid), 1e-6, p)
            XCTAssertLessThan(maxRelativeError(zip(mid, get(p + "hook_mlp_out")).map { $0 + $1 }, post), 1e-6, p)
            // The norms, recomputed in double.
            let names = llama ? ("model.layers.\(l).input_layernorm", "model.layers.\(l).post_attention_layernorm")
                              : ("h.\(l).ln_1", "h.\(l).ln_2")
            XCTAssertLessThan(maxRelativeError(norm(pre, c, w, names.0, llama, eps()), get(p + "ln1.hook_normalized")), 1e-5)
            XCTAssertLessThan(maxRelativeError(norm(mid, c, w, names.1, llama, eps()), get(p + "ln2.hook_normalized")), 1e-5)
            // RoPE by hand (half-split pairs): rot_q = R q, rot_k = R k.
            let q = get(p + "attn.hook_q"), k = get(p + "attn.hook_k"), v = get(p + "attn.hook_v")
            let qr = llama ? get(p + "attn.hook_rot_q") : q, kr = llama ? get(p + "attn.hook_rot_k") : k
            if llama {
                XCTAssertLessThan(maxRelativeError(rope(q, heads: nh, hs: hs, t: t, theta: config.ropeTheta), qr), 1e-5)
                XCTAssertLessThan(maxRelativeError(rope(k, heads: nkv, hs: hs, t: t, theta: config.ropeTheta), kr), 1e-5)
            }
            // scores = q·k/√HS (−inf above the diagonal), pattern = softmax(scores), z = pattern · v.
            let scores = get(p + "attn.hook_attn_scores"), pattern = get(p + "attn.hook_pattern"), z = get(p + "attn.hook_z")
            var zByHand = [Float](repeating: 0, count: n * nh * hs)
            for bi in 0..<b {
                for h in 0..<nh {
                    let g = h / (nh / nkv), base = (bi * nh + h) * t * t
                    for i in 0..<t {
                        var expected = [Double](repeating: 0, count: t)
                        for s in 0...i {
                            var dot = 0.0
                            for j in 0..<hs { dot += Double(qr[((bi * t + i) * nh + h) * hs + j]) * Double(kr[((bi * t + s) * nkv + g) * hs + j]) }
                            expected[s] = dot / Double(hs).squareRoot()
                            XCTAssertEqual(Double(scores[base + i * t + s]), expected[s], accuracy: 1e-5 * max(1, abs(expected[s])))
                        }
                        for s in (i + 1)..<max(i + 1, t) {
                            XCTAssertEqual(scores[base + i * t + s], -.infinity)
                            XCTAssertEqual(pattern[base + i * t + s], 0)
                        }
                        let top = expected[0...i].max()!
                        let partition = expected[0...i].reduce(0) { $0 + Foundation.exp($1 - top) }
                        for s in 0...i {
                            XCTAssertEqual(Double(pattern[base + i * t + s]), Foundation.exp(expected[s] - top) / partition, accuracy: 1e-6)
                            for j in 0..<hs {
                                zByHand[((bi * t + i) * nh + h) * hs + j] += pattern[base + i * t + s] * v[((bi * t + s) * nkv + g) * hs + j]
                            }
                        }
                    }
                }
            }
            XCTAssertLessThan(maxRelativeError(zByHand, z), 1e-5, p)
            // The MLP's nonlinearity.
            let mlpPre = get(p + "mlp.hook_pre"), mlpPost = get(p + "mlp.hook_post")
            var expectedPost = mlpPre.map { Float(gelu(Double($0))) }
            if llama {
                let linear = get(p + "mlp.hook_pre_linear")
                for i in mlpPre.indices { expectedPost[i] = Float(silu(Double(mlpPre[i])) * Double(linear[i])) }
            }
            XCTAssertLessThan(maxRelativeError(expectedPost, mlpPost), 1e-5, p)
        }
        // The final norm, and the head reads it: logits = ln_final · headᵀ.
        let final = cache.residual(layer: config.nLayers), lnf = get("ln_final.hook_normalized")
        XCTAssertLessThan(maxRelativeError(norm(final, c, w, llama ? "model.norm" : "ln_f", llama, eps()), lnf), 1e-5)
        let head = w.buffer(w.weights, w.entry(llama && !config.tiedEmbeddings ? "lm_head.weight" : llama ? "model.embed_tokens.weight" : "wte.weight")!)
        let logits = cache.logitsArray(), v = config.vocabSize
        for r in stride(from: 0, to: n, by: 7) {
            for j in stride(from: 0, to: v, by: 5) {
                var dot = 0.0
                for i in 0..<c { dot += Double(lnf[r * c + i]) * Double(head[j * c + i]) }
                XCTAssertEqual(Double(logits[r * v + j]), dot, accuracy: 1e-4)
            }
        }
    }

    // MARK: - Gradient identities against PyTorch's parameter gradients

    func testGPT2GradientsAgreeWithPyTorchParameterGradients() throws {
        let f = try fixture("gpt2_tiny")
        let record = try everything(f)
        func get(_ name: String) -> [Float] { record[name]!.values }
        func torch(_ key: String) throws -> [Float] { try f.reference.floats("grad." + key) }
        let n = f.b * f.t, c = 96
        for l in 0..<3 {
            let p = "blocks.\(l).", h = "h.\(l)."
            // c_attn (C, 3C) = ln1ᵀ · [dq | dk | dv]
            let dq = get(p + "attn.hook_q.grad"), dk = get(p + "attn.hook_k.grad"), dv = get(p + "attn.hook_v.grad")
            var dqkv = [Float](repeating: 0, count: n * 3 * c)
            for r in 0..<n {
                for j in 0..<c {
                    dqkv[r * 3 * c + j] = dq[r * c + j]
                    dqkv[r * 3 * c + c + j] = dk[r * c + j]
                    dqkv[r * 3 * c + 2 * c + j] = dv[r * c + j]
                }
            }
            try expect(transposeTimes(get(p + "ln1.hook_normalized"), dqkv, rows: n), torch(h + "attn.c_attn.weight"), h + "c_attn.weight")
            try expect(columnSums(dqkv, rows: n), torch(h + "attn.c_attn.bias"), h + "c_attn.bias")
            try expect(transposeTimes(get(p + "attn.hook_z"), get(p + "hook_attn_out.grad"), rows: n), torch(h + "attn.c_proj.weight"), h + "attn.c_proj")
            try expect(columnSums(get(p + "hook_resid_mid.grad"), rows: n), torch(h + "attn.c_proj.bias"), h + "attn.c_proj.bias")
            try expect(transposeTimes(get(p + "ln2.hook_normalized"), get(p + "mlp.hook_pre.grad"), rows: n), torch(h + "mlp.c_fc.weight"), h + "c_fc")
            try expect(transposeTimes(get(p + "mlp.hook_post"), get(p + "hook_mlp_out.grad"), rows: n), torch(h + "mlp.c_proj.weight"), h + "mlp.c_proj")
            try expect(columnSums(get(p + "ln1.hook_normalized.grad"), rows: n), torch(h + "ln_1.bias"), h + "ln_1.bias")
            try expect(columnSums(get(p + "ln2.hook_normalized.grad"), rows: n), torch(h + "ln_2.bias"), h + "ln_2.bias")
            let xhat = norm(get(p + "hook_resid_mid"), c, nil, "", false, 1e-5)
            try expect(columnSums(zip(get(p + "ln2.hook_normalized.grad"), xhat).map { $0 * $1 }, rows: n), torch(h + "ln_2.weight"), h + "ln_2.weight")
            XCTAssertEqual(get(p + "hook_resid_mid.grad"), get(p + "hook_attn_out.grad"))
            XCTAssertEqual(get(p + "hook_resid_post.grad"), get(p + "hook_mlp_out.grad"))
            // pre.grad = post.grad ⊙ gelu'(pre)
            let pre = get(p + "mlp.hook_pre")
            let chained = zip(get(p + "mlp.hook_post.grad"), pre).map { Float(Double($0) * geluDerivative(Double($1))) }
            XCTAssertLessThan(relativeError(chained, get(p + "mlp.hook_pre.grad")), 1e-5)
            try checkAttentionGradients(record, layer: l, config: f.model.config, b: f.b, t: f.t)
        }
        try expect(columnSums(get("ln_final.hook_normalized.grad"), rows: n), torch("ln_f.bias"), "ln_f.bias")
        // wpe[t] gets ∂L/∂pos_embed summed over the batch.
        let dpos = get("hook_pos_embed.grad"), torchWpe = try torch("wpe.weight")
        var wpe = [Float](repeating: 0, count: f.t * c)
        for r in 0..<n { for j in 0..<c { wpe[(r % f.t) * c + j] += dpos[r * c + j] } }
        try expect(wpe, Array(torchWpe[0..<(f.t * c)]), "wpe")
        XCTAssertEqual(get("hook_embed.grad"), get("blocks.0.hook_resid_pre.grad"))
    }

    func testLlamaGradientsAgreeWithPyTorchParameterGradients() throws {
        let f = try fixture("llama_tiny")
        let config = f.model.config
        let record = try everything(f)
        func get(_ name: String) -> [Float] { record[name]!.values }
        func torch(_ key: String) throws -> [Float] { try f.reference.floats("grad." + key) }
        let n = f.b * f.t, c = config.dModel
        for l in 0..<config.nLayers {
            let p = "blocks.\(l).", h = "model.layers.\(l)."
            // nn.Linear weights (out, in) get dOutᵀ · input; q and k before RoPE.
            let ln1 = get(p + "ln1.hook_normalized"), ln2 = get(p + "ln2.hook_normalized")
            try expect(transposeTimes(get(p + "attn.hook_q.grad"), ln1, rows: n), torch(h + "self_attn.q_proj.weight"), h + "q_proj")
            try expect(transposeTimes(get(p + "attn.hook_k.grad"), ln1, rows: n), torch(h + "self_attn.k_proj.weight"), h + "k_proj")
            try expect(transposeTimes(get(p + "attn.hook_v.grad"), ln1, rows: n), torch(h + "self_attn.v_proj.weight"), h + "v_proj")
            try expect(transposeTimes(get(p + "hook_attn_out.grad"), get(p + "attn.hook_z"), rows: n), torch(h + "self_attn.o_proj.weight"), h + "o_proj")
            try expect(transposeTimes(get(p + "mlp.hook_pre.grad"), ln2, rows: n), torch(h + "mlp.gate_proj.weight"), h + "gate_proj")
            try expect(transposeTimes(get(p + "mlp.hook_pre_linear.grad"), ln2, rows: n), torch(h + "mlp.up_proj.weight"), h + "up_proj")
            try expect(transposeTimes(get(p + "hook_mlp_out.grad"), get(p + "mlp.hook_post"), rows: n), torch(h + "mlp.down_proj.weight"), h + "down_proj")
            // RMSNorm weights get Σ dOut ⊙ x·rstd.
            let xhat1 = norm(get(p + "hook_resid_pre"), c, nil, "", true, config.layerNormEps)
            let xhat2 = norm(get(p + "hook_resid_mid"), c, nil, "", true, config.layerNormEps)
            try expect(columnSums(zip(get(p + "ln1.hook_normalized.grad"), xhat1).map { $0 * $1 }, rows: n), torch(h + "input_layernorm.weight"), h + "input_layernorm")
            try expect(columnSums(zip(get(p + "ln2.hook_normalized.grad"), xhat2).map { $0 * $1 }, rows: n), torch(h + "post_attention_layernorm.weight"), h + "post_attention_layernorm")
            // SwiGLU: pre_linear.grad = post.grad ⊙ silu(pre).
            let gate = get(p + "mlp.hook_pre"), dPost = get(p + "mlp.hook_post.grad")
            let chained = gate.indices.map { Float(Double(dPost[$0]) * silu(Double(gate[$0]))) }
            XCTAssertLessThan(relativeError(chained, get(p + "mlp.hook_pre_linear.grad")), 1e-5)
            try checkAttentionGradients(record, layer: l, config: config, b: f.b, t: f.t)
        }
        let xf = norm(get("blocks.\(config.nLayers - 1).hook_resid_post"), c, nil, "", true, config.layerNormEps)
        try expect(columnSums(zip(get("ln_final.hook_normalized.grad"), xf).map { $0 * $1 }, rows: n), torch("model.norm.weight"), "model.norm")
        // The (untied) embedding gets ∂L/∂embed at each position's token.
        let dEmbed = get("hook_embed.grad")
        var embedGrad = [Float](repeating: 0, count: config.vocabSize * c)
        for r in 0..<n { for j in 0..<c { embedGrad[Int(f.inputs[r]) * c + j] += dEmbed[r * c + j] } }
        try expect(embedGrad, torch("model.embed_tokens.weight"), "embed_tokens")
    }

    /// Inside attention: v.grad = Σ patternᵀ · z.grad; scores.grad = the softmax backward of
    /// pattern.grad (0 where masked); rot_q.grad = scores.grad · k_rot / √HS and rot_k.grad the
    /// transpose (summed over the query heads that share a key head). GPT-2 has no RoPE: q and k.
    func checkAttentionGradients(_ record: ActivationRecord, layer l: Int, config: ModelConfig, b: Int, t: Int) throws {
        func get(_ name: String) -> [Float] { record["blocks.\(l).attn." + name]!.values }
        let nh = config.nHeads, nkv = config.kvHeads, hs = config.headSize, group = nh / nkv
        let rot = config.family == .llama
        let pattern = get("hook_pattern"), dPattern = get("hook_pattern.grad"), dScores = get("hook_attn_scores.grad")
        let dz = get("hook_z.grad"), v = get("hook_v"), dv = get("hook_v.grad")
        let q = get(rot ? "hook_rot_q" : "hook_q"), k = get(rot ? "hook_rot_k" : "hook_k")
        let dq = get(rot ? "hook_rot_q.grad" : "hook_q.grad"), dk = get(rot ? "hook_rot_k.grad" : "hook_k.grad")
        var dvByHand = [Float](repeating: 0, count: dv.count), dqByHand = [Float](repeating: 0, count: dq.count)
        var dkByHand = [Float](repeating: 0, count: dk.count), dScoresByHand = [Float](repeating: 0, count: dScores.count)
        var dPatternByHand = [Float](repeating: 0, count: dPattern.count)
        let scale = 1 / Float(hs).squareRoot()
        for bi in 0..<b {
            for h in 0..<nh {
                let g = h / group, base = (bi * nh + h) * t * t
                for i in 0..<t {
                    var dot: Float = 0
                    for s in 0..<t {
                        // dpattern[i, s] = dz_i · v_s, for every s (the masked ones too)
                        var e: Float = 0
                        for j in 0..<hs { e += dz[((bi * t + i) * nh + h) * hs + j] * v[((bi * t + s) * nkv + g) * hs + j] }
                        dPatternByHand[base + i * t + s] = e
                        dot += pattern[base + i * t + s] * dPattern[base + i * t + s]
                    }
                    for s in 0...i {
                        let ds = pattern[base + i * t + s] * (dPattern[base + i * t + s] - dot)
                        dScoresByHand[base + i * t + s] = ds
                        for j in 0..<hs {
                            dvByHand[((bi * t + s) * nkv + g) * hs + j] += pattern[base + i * t + s] * dz[((bi * t + i) * nh + h) * hs + j]
                            dqByHand[((bi * t + i) * nh + h) * hs + j] += dScores[base + i * t + s] * scale * k[((bi * t + s) * nkv + g) * hs + j]
                            dkByHand[((bi * t + s) * nkv + g) * hs + j] += dScores[base + i * t + s] * scale * q[((bi * t + i) * nh + h) * hs + j]
                        }
                    }
                }
            }
        }
        XCTAssertLessThan(relativeError(dPatternByHand, dPattern), 1e-5, "pattern.grad \(l)")
        XCTAssertLessThan(relativeError(dScoresByHand, dScores), 1e-5, "attn_scores.grad \(l)")
        XCTAssertLessThan(relativeError(dvByHand, dv), 1e-5, "v.grad \(l)")
        XCTAssertLessThan(relativeError(dqByHand, dq), 1e-5, "q.grad \(l)")
        XCTAssertLessThan(relativeError(dkByHand, dk), 1e-5, "k.grad \(l)")
    }

    // MARK: - Continuous heads

    func testContinuousModelRecordsTheSameWay() throws {
        let config = ModelConfig.continuous(inputFeatures: 2, outputs: 1, maxPositions: 12, dModel: 16, nLayers: 2, nHeads: 2)
        let model = Transformer(config: config)
        model.initialize(seed: 3)
        let b = 2, t = 12
        var rng = SeededGenerator(seed: 5)
        let data = SineTask(p: 0.5, frequency: 3, window: 4).makeBatch(batch: b, seqLen: t, rng: &rng)
        let cache = model.makeCache(batch: b, seqLen: t)
        model.params.zeroGrads()
        model.forward(features: data.features, targets: data.targets, batch: b, seqLen: t, cache: cache)
        model.backward(cache: cache)
        let ordinary = model.params.gradArray()
        model.params.zeroGrads()
        let record = try model.runWithCache(features: data.features, targets: data.targets, batch: b, seqLen: t,
                                            names: ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre",
                                                    "blocks.1.hook_resid_pre.grad", "blocks.1.hook_resid_post"], cache: cache)
        XCTAssertEqual(model.params.gradArray(), ordinary)
        XCTAssertEqual(zip(record["hook_embed"]!.values, record["hook_pos_embed"]!.values).map { $0 + $1 },
                       record["blocks.0.hook_resid_pre"]!.values)
        XCTAssertEqual(record["blocks.1.hook_resid_post"]!.values, cache.residual(layer: 2))
        XCTAssertEqual(record["blocks.1.hook_resid_pre.grad"]!.shape, [2, 12, 16])
        // forwardResiduals stops after the blocks asked for: the same residuals as the full forward.
        let partial = model.makeCache(batch: b, seqLen: t)
        data.features.withUnsafeBufferPointer { model.forwardResiduals(features: $0.baseAddress!, batch: b, seqLen: t, blocks: 1, cache: partial) }
        XCTAssertEqual(partial.residual(layer: 1), cache.residual(layer: 1))
    }

    // MARK: - Helpers

    func expect(_ got: [Float], _ expected: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(got.count, expected.count, what, file: file, line: line)
        XCTAssertLessThan(relativeError(got, expected), 1e-4, what, file: file, line: line)
    }

    /// aᵀ · b for a (rows, P) and b (rows, Q): (P, Q), in double.
    func transposeTimes(_ a: [Float], _ b: [Float], rows: Int) -> [Float] {
        let p = a.count / rows, q = b.count / rows
        var out = [Double](repeating: 0, count: p * q)
        for r in 0..<rows {
            for i in 0..<p where a[r * p + i] != 0 {
                let x = Double(a[r * p + i])
                for j in 0..<q { out[i * q + j] += x * Double(b[r * q + j]) }
            }
        }
        return out.map(Float.init)
    }

    func columnSums(_ a: [Float], rows: Int) -> [Float] {
        let cols = a.count / rows
        var out = [Double](repeating: 0, count: cols)
        for r in 0..<rows { for j in 0..<cols { out[j] += Double(a[r * cols + j]) } }
        return out.map(Float.init)
    }

    /// LayerNorm (or RMSNorm) of rows of x in double, with the weight and bias of `name` (nil store: none).
    func norm(_ x: [Float], _ c: Int, _ store: ParameterStore?, _ name: String, _ rms: Bool, _ eps: Double) -> [Float] {
        let rows = x.count / c
        let weight = store.map { Array($0.buffer($0.weights, $0.entry(name + ".weight")!)) }
        let bias = store.flatMap { s in s.entry(name + ".bias").map { Array(s.buffer(s.weights, $0)) } }
        var out = [Float](repeating: 0, count: x.count)
        for r in 0..<rows {
            let row = x[(r * c)..<((r + 1) * c)].map(Double.init)
            let mean = rms ? 0 : row.reduce(0, +) / Double(c)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(c)
            let inv = 1 / (variance + eps).squareRoot()
            for j in 0..<c {
                var y = (row[j] - mean) * inv
                if let weight { y *= Double(weight[j]) }
                if let bias { y += Double(bias[j]) }
                out[r * c + j] = Float(y)
            }
        }
        return out
    }

    /// Half-split RoPE of (B, T, heads, HS) rows in double.
    func rope(_ x: [Float], heads: Int, hs: Int, t: Int, theta: Double) -> [Float] {
        var out = x
        let half = hs / 2, rows = x.count / (heads * hs)
        for r in 0..<rows {
            let position = Double(r % t)
            for h in 0..<heads {
                let base = (r * heads + h) * hs
                for i in 0..<half {
                    let angle = position * Foundation.pow(theta, -2 * Double(i) / Double(hs))
                    let a = Double(x[base + i]), b = Double(x[base + i + half])
                    out[base + i] = Float(a * Foundation.cos(angle) - b * Foundation.sin(angle))
                    out[base + i + half] = Float(b * Foundation.cos(angle) + a * Foundation.sin(angle))
                }
            }
        }
        return out
    }

    func silu(_ x: Double) -> Double { x / (1 + Foundation.exp(-x)) }

    func gelu(_ x: Double) -> Double { 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) }

    func geluDerivative(_ x: Double) -> Double {
        let u = 0.7978845608028654 * (x + 0.044715 * x * x * x), th = tanh(u)
        return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * 0.7978845608028654 * (1 + 3 * 0.044715 * x * x)
    }
}
