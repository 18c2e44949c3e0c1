import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaModel

/// Finite-difference checks of every layer's backward, and of the whole model.
final class GradientCheckTests: XCTestCase {
    func testLinear() {
        let n = 5, inC = 7, outC = 6
        let x = Buffer(randomFloats(n * inC, seed: 1)), w = Buffer(randomFloats(inC * outC, seed: 2, std: 0.5))
        let bias = Buffer(randomFloats(outC, seed: 3)), r = randomFloats(n * outC, seed: 4)
        let out = Buffer(zeros: n * outC)
        func f() -> Double {
            Linear.forward(out: out.p, inp: x.p, weight: w.p, bias: bias.p, n: n, inC: inC, outC: outC)
            return dot(out.p, r)
        }
        let dx = Buffer(zeros: n * inC), dw = Buffer(zeros: inC * outC), db = Buffer(zeros: outC)
        _ = f()
        Linear.backward(dInp: dx.p, dWeight: dw.p, dBias: db.p, dOut: r, inp: x.p, weight: w.p, n: n, inC: inC, outC: outC)
        assertGradientsClose(dx.doubles, numericalGradient(x.p, indices: x.all, eps: 1e-2, f), "dx")
        assertGradientsClose(dw.doubles, numericalGradient(w.p, indices: w.all, eps: 1e-2, f), "dW")
        assertGradientsClose(db.doubles, numericalGradient(bias.p, indices: bias.all, eps: 1e-2, f), "db")
    }

    func testLayerNorm() {
        let n = 4, c = 9
        let x = Buffer(randomFloats(n * c, seed: 5, std: 2)), w = Buffer(randomFloats(c, seed: 6).map { 1 + 0.3 * $0 })
        let b = Buffer(randomFloats(c, seed: 7, std: 0.3)), r = randomFloats(n * c, seed: 8)
        let out = Buffer(zeros: n * c), mean = Buffer(zeros: n), rstd = Buffer(zeros: n)
        func f() -> Double {
            LayerNorm.forward(out: out.p, mean: mean.p, rstd: rstd.p, inp: x.p, weight: w.p, bias: b.p, n: n, c: c, eps: 1e-5)
            return dot(out.p, r)
        }
        _ = f()
        let dx = Buffer(zeros: n * c), dw = Buffer(zeros: c), db = Buffer(zeros: c)
        LayerNorm.backward(dInp: dx.p, dWeight: dw.p, dBias: db.p, dOut: r, inp: x.p, weight: w.p,
                           mean: mean.p, rstd: rstd.p, n: n, c: c)
        assertGradientsClose(dx.doubles, numericalGradient(x.p, indices: x.all, eps: 1e-2, f), "dx")
        assertGradientsClose(dw.doubles, numericalGradient(w.p, indices: w.all, eps: 1e-2, f), "dw")
        assertGradientsClose(db.doubles, numericalGradient(b.p, indices: b.all, eps: 1e-2, f), "db")
    }

    func testCausalAttention() {
        let b = 2, t = 5, c = 8, nh = 2
        let qkv = Buffer(randomFloats(b * t * 3 * c, seed: 9)), r = randomFloats(b * t * c, seed: 10)
        let z = Buffer(zeros: b * t * c), probs = Buffer(zeros: b * nh * t * t), stats = Buffer(zeros: b * nh * t * 2)
        func f() -> Double {
            Attention.forward(z: z.p, statistics: stats.p, probs: probs.p, qkv: qkv.p, b: b, t: t,
                              shape: AttentionShape(nh: nh, nkv: nh, hs: c / nh))
            return dot(z.p, r)
        }
        _ = f()
        // Causality: every attention row sums to one over s ≤ t and is zero above the diagonal.
        let p = probs.array
        for row in 0..<(b * nh * t) {
            let q = row % t
            let r = p[(row * t)..<((row + 1) * t)]
            XCTAssertEqual(r.prefix(q + 1).reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertEqual(r.dropFirst(q + 1).reduce(0) { $0 + abs($1) }, 0)
        }
        let dqkv = Buffer(zeros: qkv.count), scores = Buffer(zeros: probs.count)
        Attention.backward(dqkv: dqkv.p, dz: r, qkv: qkv.p, statistics: stats.p, probs: probs.p, scoreGradients: scores.p,
                           b: b, t: t, shape: AttentionShape(nh: nh, nkv: nh, hs: c / nh))
        assertGradientsClose(dqkv.doubles, numericalGradient(qkv.p, indices: qkv.all, eps: 1e-2, f), "dqkv")
    }

    func testMLP() {
        let n = 3, c = 4, f = 16
        let x = Buffer(randomFloats(n * c, seed: 11)), w = Buffer(randomFloats(c * f, seed: 12, std: 0.5))
        let bias = Buffer(randomFloats(f, seed: 13, std: 0.5)), r = randomFloats(n * f, seed: 14)
        let pre = Buffer(zeros: n * f), act = Buffer(zeros: n * f)
        func obj() -> Double {
            MLP.forward(fcPre: pre.p, act: act.p, x: x.p, fcWeight: w.p, fcBias: bias.p, n: n, c: c, f: f)
            return dot(act.p, r)
        }
        _ = obj()
        let dAct = Buffer(r), dx = Buffer(zeros: n * c), dw = Buffer(zeros: c * f), db = Buffer(zeros: f)
        MLP.backward(dx: dx.p, dFcWeight: dw.p, dFcBias: db.p, dAct: dAct.p, fcPre: pre.p, x: x.p, fcWeight: w.p,
                     n: n, c: c, f: f)
        assertGradientsClose(dx.doubles, numericalGradient(x.p, indices: x.all, eps: 1e-2, obj), "dx")
        assertGradientsClose(dw.doubles, numericalGradient(w.p, indices: w.all, eps: 1e-2, obj), "dW")
        assertGradientsClose(db.doubles, numericalGradient(bias.p, indices: bias.all, eps: 1e-2, obj), "db")
    }

    func testEmbedding() {
        let b = 2, t = 3, c = 4, v = 5
        let tokens: [Int32] = [1, 4, 1, 0, 1, 3]
        let wte = Buffer(randomFloats(v * c, seed: 15)), wpe = Buffer(randomFloats(t * c, seed: 16))
        let r = randomFloats(b * t * c, seed: 17)
        let out = Buffer(zeros: b * t * c)
        func f() -> Double {
            Embedding.forward(out: out.p, tokens: tokens, wte: wte.p, wpe: wpe.p, b: b, t: t, c: c)
            return dot(out.p, r)
        }
        _ = f()
        let dwte = Buffer(zeros: v * c), dwpe = Buffer(zeros: t * c)
        Embedding.backward(dWte: dwte.p, dWpe: dwpe.p, dOut: r, tokens: tokens, b: b, t: t, c: c)
        // Token 2 never occurs: its rows get no gradient, and the check must see that too.
        assertGradientsClose(dwte.doubles, numericalGradient(wte.p, indices: wte.all, eps: 1e-2, f), "dwte")
        assertGradientsClose(dwpe.doubles, numericalGradient(wpe.p, indices: wpe.all, eps: 1e-2, f), "dwpe")
    }

    func testCrossEntropy() {
        let rows = 4, v = 11
        let logits = Buffer(randomFloats(rows * v, seed: 18, std: 2))
        let targets: [Int32] = [0, 10, 3, 3]
        let loss = Buffer(zeros: rows), logZ = Buffer(zeros: rows), scratch = Buffer(zeros: CrossEntropy.chunks * v)
        func f() -> Double {
            CrossEntropy.forward(rowLoss: loss.p, logZ: logZ.p, logits: logits.p, targets: targets, rows: rows, v: v,
                                 scratch: scratch.p)
            return loss.doubles.reduce(0, +) / Double(rows)
        }
        let mean = f()
        // The loss of a row is −log softmax(target), checked against a double computation.
        var expected = 0.0
        let l = logits.array
        for r in 0..<rows {
            let row = l[(r * v)..<((r + 1) * v)].map(Double.init)
            let m = row.max()!
            expected += m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) }) - row[Int(targets[r])]
        }
        XCTAssertEqual(mean, expected / Double(rows), accuracy: 1e-5)
        let numeric = numericalGradient(logits.p, indices: logits.all, eps: 1e-2, f)
        let d = Buffer(l)
        CrossEntropy.backward(logits: d.p, logZ: logZ.p, targets: targets, rows: rows, v: v, scale: 1 / Float(rows))
        assertGradientsClose(d.doubles, numeric, atol: 1e-4, "dlogits")
    }

    /// The whole model: every parameter tensor along a random direction, and single coordinates.
    func testWholeModel() {
        var config = ModelConfig(vocabSize: 13, maxPositions: 8, dModel: 12, nLayers: 2, nHeads: 3)
        config.tokenizer = nil
        let model = Transformer(config: config)
        model.initialize(seed: 3)
        // Larger weights than GPT-2's init and non-trivial norms and biases, so every path carries signal.
        var rng = SeededGenerator(seed: 4)
        for e in model.params.entries {
            let p = model.params.weights + e.offset
            for i in 0..<e.count { p[i] += Float(rng.nextNormal()) * 0.2 }
        }
        let b = 2, t = 6
        let tokens: [Int32] = (0..<(b * t)).map { Int32(($0 * 7 + 3) % 13) }
        let targets: [Int32] = (0..<(b * t)).map { Int32(($0 * 5 + 1) % 13) }
        let cache = model.makeCache(batch: b, seqLen: t)
        assertWholeModelGradient(model, label: "gpt2", directionEps: 1e-2, directionSeed: 99, coordinateSeed: 5,
                                 loss: { Double(model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)!) },
                                 backward: { model.backward(cache: cache) })
    }
}

final class IgnoredTargetTests: XCTestCase {
    /// Positions whose target is −1 add no loss and no gradient; the mean is over the others.
    func testIgnoredTargetsAreLeftOut() {
        var config = ModelConfig(vocabSize: 11, maxPositions: 6, dModel: 8, nLayers: 1, nHeads: 2)
        config.tokenizer = nil
        let model = Transformer(config: config)
        model.initialize(seed: 2)
        let tokens: [Int32] = [1, 2, 3, 4, 5, 6]
        let all: [Int32] = [2, 3, 4, 5, 6, 7], masked: [Int32] = [-1, -1, 4, -1, 6, -1]
        let cache = model.makeCache(batch: 1, seqLen: 6)
        _ = model.forward(tokens: tokens, targets: all, batch: 1, seqLen: 6, cache: cache)
        let losses = cache.positionLosses()
        let maskedLoss = model.forward(tokens: tokens, targets: masked, batch: 1, seqLen: 6, cache: cache)!
        XCTAssertEqual(maskedLoss, (losses[2] + losses[4]) / 2, accuracy: 1e-6)
        // The gradient equals the mean of the two positions' gradients, computed position by position.
        model.params.zeroGrads()
        model.backward(cache: cache)
        let g = model.params.gradArray()
        var sum = [Float](repeating: 0, count: g.count)
        for keep in [2, 4] {
            var one = [Int32](repeating: -1, count: 6)
            one[keep] = all[keep]
            model.params.zeroGrads()
            model.forward(tokens: tokens, targets: one, batch: 1, seqLen: 6, cache: cache)
            model.backward(cache: cache, lossScale: 0.5)
            let gi = model.params.gradArray()
            for i in 0..<g.count { sum[i] += gi[i] }
        }
        XCTAssertLessThan(relativeError(g, sum), 1e-5)
    }
}
