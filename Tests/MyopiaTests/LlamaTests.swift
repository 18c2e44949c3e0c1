import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaModel

/// The Llama family's layers (RMSNorm, RoPE, SwiGLU, grouped-query attention) against finite
/// differences, the whole model's gradient, its KV cache, and the gradient flows and horizon on it.
final class LlamaLayerTests: XCTestCase {
    func testRMSNorm() {
        let n = 3, c = 6
        let x = Buffer(randomFloats(n * c, seed: 1)), w = Buffer(randomFloats(c, seed: 2, std: 0.5).map { $0 + 1 })
        let r = randomFloats(n * c, seed: 3)
        let out = Buffer(zeros: n * c), rstd = Buffer(zeros: n)
        func f() -> Double {
            RMSNorm.forward(out: out.p, rstd: rstd.p, inp: x.p, weight: w.p, n: n, c: c, eps: 1e-5)
            return dot(out.p, r)
        }
        _ = f()
        // out = x / √(mean x² + eps) · w, against a double computation.
        let xs = x.array, ws = w.array, o = out.array
        for row in 0..<n {
            let v = xs[(row * c)..<((row + 1) * c)].map(Double.init)
            let inv = 1 / (v.reduce(0) { $0 + $1 * $1 } / Double(c) + 1e-5).squareRoot()
            for j in 0..<c { XCTAssertEqual(Double(o[row * c + j]), v[j] * inv * Double(ws[j]), accuracy: 1e-5) }
        }
        let dx = Buffer(zeros: n * c), dw = Buffer(zeros: c)
        RMSNorm.backward(dInp: dx.p, dWeight: dw.p, dOut: r, inp: x.p, weight: w.p, rstd: rstd.p, n: n, c: c)
        assertGradientsClose(dx.doubles, numericalGradient(x.p, indices: x.all, eps: 1e-2, f), "dx")
        assertGradientsClose(dw.doubles, numericalGradient(w.p, indices: w.all, eps: 1e-2, f), "dw")
    }

    func testSwiGLU() {
        let count = 40
        let gate = Buffer(randomFloats(count, seed: 4, std: 2)), up = Buffer(randomFloats(count, seed: 5))
        let r = randomFloats(count, seed: 6)
        let act = Buffer(zeros: count)
        func f() -> Double {
            SwiGLU.forward(act: act.p, gate: gate.p, up: up.p, count: count)
            return dot(act.p, r)
        }
        _ = f()
        for i in 0..<count {
            let g = Double(gate.array[i])
            XCTAssertEqual(Double(act.array[i]), g / (1 + Foundation.exp(-g)) * Double(up.array[i]), accuracy: 1e-5)
        }
        let dGate = Buffer(r), dUp = Buffer(zeros: count)
        SwiGLU.backward(dGate: dGate.p, dUp: dUp.p, dAct: dGate.p, gate: gate.p, up: up.p, count: count)
        assertGradientsClose(dGate.doubles, numericalGradient(gate.p, indices: gate.all, eps: 1e-2, f), "dgate")
        assertGradientsClose(dUp.doubles, numericalGradient(up.p, indices: up.all, eps: 1e-2, f), "dup")
    }

    /// A rotation keeps norms; its backward is the inverse rotation; and the two layouts are the
    /// same rotation on permuted dimensions.
    func testRotaryEmbedding() {
        let hs = 8, heads = 3, rows = 5
        for interleaved in [false, true] {
            let rope = RotaryEmbedding(headSize: hs, positions: 16, theta: 100, interleaved: interleaved)
            let x0 = randomFloats(rows * heads * hs, seed: 7)
            let x = Buffer(x0), r = randomFloats(rows * heads * hs, seed: 8)
            func f() -> Double {
                x.p.update(from: x0, count: x0.count)
                rope.rotate(x.p, ld: heads * hs, rows: rows, heads: heads, firstPosition: 3)
                return dot(x.p, r)
            }
            _ = f()
            for row in 0..<rows {
                for h in 0..<heads {
                    let range = (row * heads + h) * hs..<((row * heads + h + 1) * hs)
                    let before = x0[range].reduce(0) { $0 + Double($1 * $1) }
                    let after = x.array[range].reduce(0) { $0 + Double($1 * $1) }
                    XCTAssertEqual(after, before, accuracy: 1e-4)
                }
            }
            let back = Buffer(r)
            rope.rotate(back.p, ld: heads * hs, rows: rows, heads: heads, firstPosition: 3, inverse: true)
            let source = Buffer(x0)
            let numeric = numericalGradient(source.p, indices: source.all, eps: 1e-2) {
                x.p.update(from: source.p, count: x0.count)
                rope.rotate(x.p, ld: heads * hs, rows: rows, heads: heads, firstPosition: 3)
                return dot(x.p, r)
            }
            assertGradientsClose(back.doubles, numeric, "rope (interleaved: \(interleaved))")
        }
        // Position 0 is the identity.
        let rope = RotaryEmbedding(headSize: hs, positions: 4, theta: 10_000, interleaved: false)
        let v = Buffer(randomFloats(hs, seed: 9))
        let before = v.array
        rope.rotate(v.p, ld: hs, rows: 1, heads: 1)
        XCTAssertEqual(v.array, before)
    }

    /// Grouped-query attention: a finite-difference check, and equality with multi-head attention
    /// on key/value heads copied to every query head of their group.
    func testGroupedQueryAttention() {
        let b = 2, t = 5, nh = 4, nkv = 2, hs = 3
        let shape = AttentionShape(nh: nh, nkv: nkv, hs: hs)
        let qkv = Buffer(randomFloats(b * t * shape.width, seed: 10)), r = randomFloats(b * t * shape.out, seed: 11)
        let z = Buffer(zeros: b * t * shape.out), stats = Buffer(zeros: b * nh * t * 2)
        func f() -> Double {
            Attention.forward(z: z.p, statistics: stats.p, probs: nil, qkv: qkv.p, b: b, t: t, shape: shape)
            return dot(z.p, r)
        }
        _ = f()
        let dqkv = Buffer(zeros: qkv.count)
        Attention.backward(dqkv: dqkv.p, dz: r, qkv: qkv.p, statistics: stats.p, probs: nil, scoreGradients: nil,
                           b: b, t: t, shape: shape)
        assertGradientsClose(dqkv.doubles, numericalGradient(qkv.p, indices: qkv.all, eps: 1e-2, f), "dqkv")
        _ = f()  // z at the unperturbed input

        // The same attention as MHA: k and v head h/G copied to head h.
        let mha = AttentionShape(nh: nh, nkv: nh, hs: hs)
        var wide = [Float](repeating: 0, count: b * t * mha.width)
        let narrow = qkv.array
        for row in 0..<(b * t) {
            for j in 0..<(nh * hs) { wide[row * mha.width + j] = narrow[row * shape.width + j] }
            for h in 0..<nh {
                for j in 0..<hs {
                    wide[row * mha.width + mha.keyColumn + h * hs + j] = narrow[row * shape.width + shape.keyColumn + (h / 2) * hs + j]
                    wide[row * mha.width + mha.valueColumn + h * hs + j] = narrow[row * shape.width + shape.valueColumn + (h / 2) * hs + j]
                }
            }
        }
        let zWide = Buffer(zeros: z.count), statsWide = Buffer(zeros: stats.count)
        wide.withUnsafeBufferPointer {
            Attention.forward(z: zWide.p, statistics: statsWide.p, probs: nil, qkv: $0.baseAddress!, b: b, t: t, shape: mha)
        }
        XCTAssertLessThan(maxRelativeError(z.array, zWide.array), 1e-6)
    }

    /// The myopic flow's input share with groups: β = 1 is the ordinary gradient, and with β = 0
    /// a position's key/value gradient is what it gets when no later query reads it.
    func testGroupedInputShare() {
        let b = 1, t = 4, shape = AttentionShape(nh: 4, nkv: 2, hs: 3)
        let qkv = Buffer(randomFloats(b * t * shape.width, seed: 12)), dz = randomFloats(b * t * shape.out, seed: 13)
        let z = Buffer(zeros: b * t * shape.out), stats = Buffer(zeros: b * 4 * t * 2)
        Attention.forward(z: z.p, statistics: stats.p, probs: nil, qkv: qkv.p, b: b, t: t, shape: shape)
        let full = Buffer(zeros: qkv.count), input = Buffer(zeros: qkv.count)
        Attention.backward(dqkv: full.p, dz: dz, qkv: qkv.p, statistics: stats.p, probs: nil, scoreGradients: nil,
                           b: b, t: t, shape: shape, dqkvInput: input.p, inputShare: 1)
        XCTAssertEqual(full.array, input.array)
        Attention.backward(dqkv: full.p, dz: dz, qkv: qkv.p, statistics: stats.p, probs: nil, scoreGradients: nil,
                           b: b, t: t, shape: shape, dqkvInput: input.p, inputShare: 0)
        // The last position's keys and values are read by no later query: their gradient is all diagonal.
        let last = (t - 1) * shape.width
        for j in shape.keyColumn..<shape.width {
            XCTAssertEqual(input.array[last + j], full.array[last + j], accuracy: 1e-6)
        }
        // Position 0's value is read by later queries, so the myopic share differs from the full one.
        let v0 = shape.valueColumn
        XCTAssertGreaterThan(abs(input.array[v0] - full.array[v0]), 1e-6)
        // Queries are never changed.
        for row in 0..<t { for j in 0..<shape.out {
            XCTAssertEqual(input.array[row * shape.width + j], full.array[row * shape.width + j])
        } }
    }
}

/// A small random Llama with every part on: GQA, a head size that is not C/NH, an untied head.
func smallLlama(tied: Bool = false, interleaved: Bool = false, seed: UInt64 = 3) -> Transformer {
    var config = ModelConfig.llama(vocabSize: 13, maxPositions: 16, dModel: 12, nLayers: 2, nHeads: 4, nKVHeads: 2,
                                   headDim: 4, dMLP: 20, ropeTheta: 50, rmsNormEps: 1e-6, tiedEmbeddings: tied,
                                   tokenizer: nil)
    config.ropeInterleaved = interleaved
    let model = Transformer(config: config)
    model.initialize(seed: seed)
    // Larger weights than the init, and norms away from 1, so every path carries signal.
    var rng = SeededGenerator(seed: seed + 1)
    for e in model.params.entries {
        let p = model.params.weights + e.offset
        let std: Float = e.name.hasSuffix("norm.weight") ? 0.2 : 0.3
        for i in 0..<e.count { p[i] += Float(rng.nextNormal()) * std }
    }
    return model
}

final class LlamaModelTests: XCTestCase {
    let b = 2, t = 7
    var tokens: [Int32] { (0..<(b * t)).map { Int32(($0 * 7 + 3) % 13) } }
    var targets: [Int32] { (0..<(b * t)).map { Int32(($0 * 5 + 1) % 13) } }

    func testLayoutAndNames() {
        let model = smallLlama()
        let names = model.params.entries.map(\.name)
        XCTAssertEqual(names.first, "model.embed_tokens.weight")
        XCTAssertEqual(names.last, "lm_head.weight")
        XCTAssertEqual(model.params.entry("model.layers.1.self_attn.k_proj.weight")?.shape, [8, 12])
        XCTAssertEqual(model.params.entry("model.layers.1.self_attn.o_proj.weight")?.shape, [12, 16])
        XCTAssertEqual(model.params.entry("model.layers.0.mlp.gate_proj.weight")?.shape, [20, 12])
        XCTAssertNil(model.params.entry("lm_head.weight").flatMap { _ in smallLlama(tied: true).params.entry("lm_head.weight") })
    }

    /// Every parameter tensor along a random direction, and single coordinates, for untied and tied heads.
    func testWholeModelGradient() {
        for tied in [false, true] {
            let model = smallLlama(tied: tied)
            let cache = model.makeCache(batch: b, seqLen: t)
            let tokens = self.tokens, targets = self.targets, b = self.b, t = self.t
            assertWholeModelGradient(model, label: "llama (tied: \(tied))", directionEps: 2e-3, directionSeed: 99, coordinateSeed: 5,
                                     loss: { Double(model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)!) },
                                     backward: { model.backward(cache: cache) })
        }
    }

    /// llama.cpp's row order for q and k (GGUF row h·HS + 2i + j = HF row h·HS + j·HS/2 + i) with
    /// interleaved RoPE is the same model as Hugging Face's order with half-split RoPE.
    func testInterleavedRopeOnPermutedRowsIsTheSameModel() {
        let hf = smallLlama(), gguf = smallLlama(interleaved: true)
        gguf.params.copyWeights(from: hf.params)
        let hs = hf.config.headSize, c = hf.config.dModel
        for l in 0..<hf.config.nLayers {
            for (name, heads) in [("q_proj", hf.config.nHeads), ("k_proj", hf.config.kvHeads)] {
                let key = "model.layers.\(l).self_attn.\(name).weight"
                let src = hf.params.weight(key), dst = gguf.params.weight(key)
                for h in 0..<heads { for i in 0..<(hs / 2) { for j in 0..<2 {
                    (dst + (h * hs + 2 * i + j) * c).update(from: src + (h * hs + j * hs / 2 + i) * c, count: c)
                } } }
            }
        }
        let a = hf.makeCache(batch: b, seqLen: t), g = gguf.makeCache(batch: b, seqLen: t)
        let lossA = hf.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: a)!
        let lossG = gguf.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: g)!
        XCTAssertEqual(lossA, lossG, accuracy: 1e-5)
        XCTAssertLessThan(maxRelativeError(g.logitsArray(), a.logitsArray()), 1e-5)
    }

    /// Cached decoding gives the full forward's logits at every position (RoPE at the right
    /// positions, grouped keys and values in the cache).
    func testKVCacheLogitsEqualFullForward() {
        let model = smallLlama()
        let n = 16, v = model.config.vocabSize
        let tokens: [Int32] = (0..<n).map { Int32(($0 * 5 + 2) % 13) }
        let full = model.makeCache(batch: 1, seqLen: n)
        model.forward(tokens: tokens, targets: nil, batch: 1, seqLen: n, cache: full)
        let expected = full.logitsArray()
        for (prompt, chunk) in [(1, 64), (9, 4), (16, 16)] {
            let kv = KVCache(config: model.config, chunk: chunk)
            var got = Array(UnsafeBufferPointer(start: model.decode(Array(tokens.prefix(prompt)), cache: kv), count: v))
            for i in prompt..<n {
                got += Array(UnsafeBufferPointer(start: model.decode([tokens[i]], cache: kv), count: v))
            }
            XCTAssertLessThan(maxRelativeError(got, Array(expected[((prompt - 1) * v)...])), 1e-5,
                              "prompt \(prompt), chunk \(chunk)")
        }
    }

    /// Under the myopic flow, a single position's loss has the same gradient as under vanilla
    /// (nothing is in its future), and the flows differ on a longer sequence; β interpolates.
    func testGradientFlows() {
        let model = smallLlama()
        let cache = model.makeCache(batch: b, seqLen: t)
        func grads(_ flow: GradientFlow) -> [Float] {
            model.flow = flow
            model.params.zeroGrads()
            model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)
            model.backward(cache: cache)
            return model.params.gradArray()
        }
        let vanilla = grads(.vanilla), myopic = grads(.myopic), half = grads(.interpolated(0.5))
        XCTAssertGreaterThan(relativeError(myopic, vanilla), 1e-3)
        XCTAssertEqual(grads(.interpolated(1)), vanilla)
        XCTAssertEqual(grads(.interpolated(0)), myopic)
        for e in model.params.entries {
            let range = e.offset..<(e.offset + e.count)
            let v = Array(vanilla[range]), m = Array(myopic[range]), h = Array(half[range])
            // How many attention inputs (where the flows differ) lie between the loss and the parameter.
            let junctions = e.name.hasPrefix("model.embed_tokens") || e.name == "model.layers.0.input_layernorm.weight" ? 2
                : e.name.hasPrefix("model.layers.0.") || e.name == "model.layers.1.input_layernorm.weight" ? 1 : 0
            if junctions == 0 {
                XCTAssertLessThan(relativeError(m, v), 1e-6, e.name)
            } else if junctions == 1 {
                // Linear in β: the midpoint flow gives the midpoint gradient.
                XCTAssertGreaterThan(relativeError(m, v), 1e-4, e.name)
                XCTAssertLessThan(relativeError(h, zip(v, m).map { ($0 + $1) / 2 }), 1e-5, e.name)
            }
        }
    }

    /// The horizon's channels on a Llama: equal to brute-force single-target backward passes
    /// (vanilla and myopic), and exactly zero at k > 0 for the myopic signal below the last attention.
    func testHorizonChannelsEqualBruteForce() {
        let model = smallLlama()
        let cache = model.makeCache(batch: b, seqLen: t)
        model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)
        for flow in [GradientFlow.vanilla, .myopic] {
            model.flow = flow
            let channels = channelGradients(model, cache, maxOffset: t - 1, flow: flow)
            let brute = bruteForce(model, inputs: tokens, targets: targets, b: b, t: t)
            model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)
            XCTAssertLessThan(maxRelativeError(channels, brute), 1e-5, "\(flow)")
            XCTAssertGreaterThan(channels.map(abs).max() ?? 0, 1e-4)
        }
    }
}
