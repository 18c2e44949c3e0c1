import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaModel

/// The continuous heads (docs/DESIGN.md §3): input projection, output projection, Huber/MSE loss — values,
/// finite-difference gradients, flow invariants, config and checkpoint round trips.
final class ContinuousHeadTests: XCTestCase {
    // MARK: Loss

    func testHuberAndMSEValues() {
        // F.huber_loss(delta=1): ½d² inside |d| < 1, |d| − ½ outside; continuous at |d| = 1.
        let huber = RegressionLoss.huber
        XCTAssertEqual(huber.value(0), 0)
        XCTAssertEqual(huber.value(0.5), 0.125)
        XCTAssertEqual(huber.value(-0.5), 0.125)
        XCTAssertEqual(huber.value(1), 0.5)
        XCTAssertEqual(huber.value(3), 2.5)
        XCTAssertEqual(huber.value(-3), 2.5)
        XCTAssertEqual(huber.derivative(0.5), 0.5)
        XCTAssertEqual(huber.derivative(-3), -1)
        XCTAssertEqual(huber.derivative(3), 1)
        XCTAssertEqual(RegressionLoss.mse.value(-3), 9)
        XCTAssertEqual(RegressionLoss.mse.derivative(-3), -6)
        XCTAssertEqual(huber.mean(predictions: [0, 0, 0], targets: [0.5, -3, 1]), (0.125 + 2.5 + 0.5) / 3, accuracy: 1e-7)
    }

    /// The per-row forward and its backward, for both losses, with residuals on both sides of δ.
    func testRegressionLossGradient() {
        let rows = 5, o = 3
        let targets = randomFloats(rows * o, seed: 21, std: 2)
        for kind in RegressionLoss.allCases {
            let pred = Buffer(randomFloats(rows * o, seed: 22, std: 2))
            let rowLoss = Buffer(zeros: rows)
            func f() -> Double {
                kind.forward(rowLoss: rowLoss.p, predictions: pred.p, targets: targets, rows: rows, outputs: o)
            }
            let mean = f()
            // The row losses average the outputs, and their mean is the mean over all elements.
            XCTAssertEqual(mean, kind.mean(predictions: pred.array, targets: targets), accuracy: 1e-6)
            let inside = zip(pred.array, targets).filter { abs($0 - $1) < 1 }.count
            XCTAssertTrue(inside > 0 && inside < rows * o, "both Huber regimes should be exercised")
            let d = Buffer(zeros: rows * o)
            kind.backward(dPredictions: d.p, predictions: pred.p, targets: targets, rows: rows, outputs: o,
                          scale: 1 / Float(rows))
            assertGradientsClose(d.doubles, numericalGradient(pred.p, indices: pred.all, eps: 1e-3, f), atol: 1e-4,
                                 "d\(kind)")
        }
    }

    // MARK: Layers

    /// The input projection plus positions: features (B, T, FI) → (B, T, C).
    func testFeatureEmbeddingGradient() {
        let b = 2, t = 3, c = 5, fi = 2
        let features = randomFloats(b * t * fi, seed: 31)
        let w = Buffer(randomFloats(fi * c, seed: 32, std: 0.5)), bias = Buffer(randomFloats(c, seed: 33))
        let wpe = Buffer(randomFloats(t * c, seed: 34)), r = randomFloats(b * t * c, seed: 35)
        let out = Buffer(zeros: b * t * c)
        func f() -> Double {
            FeatureEmbedding.forward(out: out.p, features: features, weight: w.p, bias: bias.p, wpe: wpe.p,
                                     b: b, t: t, c: c, fi: fi)
            return dot(out.p, r)
        }
        _ = f()
        // Forward is the definition: features · W + b + wpe[t].
        for row in 0..<(b * t) {
            for j in 0..<c {
                var e = bias.p[j] + wpe.p[(row % t) * c + j]
                for k in 0..<fi { e += features[row * fi + k] * w.p[k * c + j] }
                XCTAssertEqual(out.p[row * c + j], e, accuracy: 1e-5)
            }
        }
        let dw = Buffer(zeros: fi * c), db = Buffer(zeros: c), dwpe = Buffer(zeros: t * c)
        FeatureEmbedding.backward(dWeight: dw.p, dBias: db.p, dWpe: dwpe.p, dOut: r, features: features, weight: w.p,
                                  b: b, t: t, c: c, fi: fi)
        assertGradientsClose(dw.doubles, numericalGradient(w.p, indices: w.all, eps: 1e-2, f), "dW input_proj")
        assertGradientsClose(db.doubles, numericalGradient(bias.p, indices: bias.all, eps: 1e-2, f), "db input_proj")
        assertGradientsClose(dwpe.doubles, numericalGradient(wpe.p, indices: wpe.all, eps: 1e-2, f), "dwpe")
    }

    /// ln_f, the output projection and the Huber loss, through `backwardHead`: the gradient it leaves
    /// in `dResid` with lossScale = N is ∂ℓ_t/∂h_{L,t} row by row (the head is row-wise), and it
    /// accumulates output_proj's and ln_f's gradients.
    func testRegressionHeadGradient() {
        let model = Self.model(seed: 41)
        let b = 2, t = 4, n = b * t, c = model.config.dModel
        let (features, targets) = Self.data(b: b, t: t, seed: 42)
        let cache = model.makeCache(batch: b, seqLen: t)
        model.forward(features: features, targets: targets, batch: b, seqLen: t, cache: cache)
        model.params.zeroGrads()
        model.backwardHead(cache: cache, lossScale: Float(n))
        let dResid = Array(UnsafeBufferPointer(start: cache.dResid, count: n * c))
        let row = 5
        let numeric = numericalGradient(cache.residFinal, indices: (0..<c).map { row * c + $0 }, eps: 1e-2) {
            _ = model.forwardRegressionHead(cache: cache)
            return Double(cache.rowLoss[row])
        }
        assertGradientsClose((0..<c).map { Double(dResid[row * c + $0]) }, numeric, atol: 5e-4, "∂ℓ_t/∂h_L,t")
        // Parameters of the head, with lossScale 1 (the mean loss).
        model.forward(features: features, targets: targets, batch: b, seqLen: t, cache: cache)
        model.params.zeroGrads()
        model.backwardHead(cache: cache)
        for name in ["output_proj.weight", "output_proj.bias", "ln_f.weight", "ln_f.bias"] {
            let e = model.params.entry(name)!
            let g = (0..<e.count).map { Double(model.params.grads[e.offset + $0]) }
            let numeric = numericalGradient(model.params.weights + e.offset, indices: Array(0..<e.count), eps: 1e-2) {
                Double(model.forwardRegressionHead(cache: cache)!)
            }
            assertGradientsClose(g, numeric, atol: 5e-4, name)
        }
    }

    // MARK: Whole model

    /// Every parameter tensor along a random direction, and single coordinates, for both losses.
    func testWholeContinuousModel() {
        for loss in RegressionLoss.allCases {
            let model = Self.model(seed: 51, loss: loss)
            let b = 2, t = 6
            let (features, targets) = Self.data(b: b, t: t, seed: 52)
            let cache = model.makeCache(batch: b, seqLen: t)
            // A smaller whole-tensor step keeps the central difference linear (input_proj reads N(0,1) features).
            assertWholeModelGradient(model, label: "\(loss)", directionEps: 2e-3, directionSeed: 7, coordinateSeed: 53,
                                     loss: { Double(model.forward(features: features, targets: targets, batch: b, seqLen: t, cache: cache)!) },
                                     backward: { model.backward(cache: cache) })
        }
    }

    /// The flows act on the blocks, whatever the heads: β = 1 is vanilla and β = 0 myopic bit for bit,
    /// forward is the same under every gradient flow, and myopic changes the layers below the last
    /// attention but nothing downstream of it.
    func testFlowInvariantsHoldForContinuousHeads() {
        let b = 3, t = 8
        let (features, targets) = Self.data(b: b, t: t, seed: 62)
        func run(_ flow: GradientFlow) -> (Float, [Float]) {
            let model = Self.model(seed: 61, layers: 2)
            model.flow = flow
            let cache = model.makeCache(batch: b, seqLen: t)
            model.params.zeroGrads()
            let loss = model.forward(features: features, targets: targets, batch: b, seqLen: t, cache: cache)!
            model.backward(cache: cache)
            return (loss, model.params.gradArray())
        }
        let vanilla = run(.vanilla), myopic = run(.myopic)
        XCTAssertTrue(run(.interpolated(1)).1 == vanilla.1, "beta=1 differs from vanilla")
        XCTAssertTrue(run(.interpolated(0)).1 == myopic.1, "beta=0 differs from myopic")
        XCTAssertEqual(myopic.0, vanilla.0)
        XCTAssertEqual(run(.interpolated(0.3)).0, vanilla.0)
        let model = Self.model(seed: 61, layers: 2)
        for e in model.params.entries {
            let gv = Array(vanilla.1[e.offset..<(e.offset + e.count)]), gm = Array(myopic.1[e.offset..<(e.offset + e.count)])
            let downstream = e.name.hasPrefix("ln_f") || e.name.hasPrefix("output_proj") || e.name.hasPrefix("h.1.attn")
                || e.name.hasPrefix("h.1.ln_2") || e.name.hasPrefix("h.1.mlp")
            if downstream {
                XCTAssertEqual(relativeError(gm, gv), 0, accuracy: 1e-6, e.name)
            } else {
                XCTAssertGreaterThan(relativeError(gm, gv), 1e-3, "\(e.name) should differ under myopic flow")
            }
        }
        // One position: nothing to pre-cache, every flow gives the same gradient.
        let (f1, y1) = Self.data(b: 2, t: 1, seed: 63)
        func one(_ flow: GradientFlow) -> [Float] {
            let model = Self.model(seed: 61, layers: 2)
            model.flow = flow
            let cache = model.makeCache(batch: 2, seqLen: 1)
            model.params.zeroGrads()
            model.forward(features: f1, targets: y1, batch: 2, seqLen: 1, cache: cache)
            model.backward(cache: cache)
            return model.params.gradArray()
        }
        XCTAssertTrue(one(.myopic) == one(.vanilla))
    }

    /// Causal: an earlier prediction ignores later inputs. Bigram attention works for a continuous
    /// model too: a prediction then reads its own position's input only.
    func testCausalityAndBigram() {
        let model = Self.model(seed: 71)
        let t = 5
        var (features, _) = Self.data(b: 1, t: t, seed: 72)
        let cache = model.makeCache(batch: 1, seqLen: t)
        model.forward(features: features, targets: nil, batch: 1, seqLen: t, cache: cache)
        let before = cache.predictionsArray()
        XCTAssertEqual(before.count, t * 2)
        features[2 * 3] += 1 // position 2's first feature (3 features per position)
        model.forward(features: features, targets: nil, batch: 1, seqLen: t, cache: cache)
        let after = cache.predictionsArray()
        XCTAssertEqual(Array(before[..<4]), Array(after[..<4]))
        XCTAssertNotEqual(Array(before[4...]), Array(after[4...]))
        model.flow = .bigram
        model.forward(features: features, targets: nil, batch: 1, seqLen: t, cache: cache)
        let bigram = cache.predictionsArray()
        features[2 * 3] -= 1
        model.forward(features: features, targets: nil, batch: 1, seqLen: t, cache: cache)
        let bigramBefore = cache.predictionsArray()
        XCTAssertEqual(Array(bigram[..<4]) + Array(bigram[6...]), Array(bigramBefore[..<4]) + Array(bigramBefore[6...]))
        XCTAssertNotEqual(Array(bigram[4..<6]), Array(bigramBefore[4..<6]))
    }

    // MARK: Config and checkpoints

    func testConfigRoundTripAndLayout() throws {
        let config = ModelConfig.continuous(inputFeatures: 2, outputs: 1, maxPositions: 16, dModel: 8, nLayers: 1,
                                            nHeads: 2, loss: .mse)
        let json = try JSONSerialization.jsonObject(with: try config.jsonData()) as! [String: Any]
        XCTAssertEqual(json["myopia_input_features"] as? Int, 2)
        XCTAssertEqual(json["myopia_outputs"] as? Int, 1)
        XCTAssertEqual(json["myopia_loss"] as? String, "mse")
        let decoded = try JSONDecoder().decode(ModelConfig.self, from: try config.jsonData())
        XCTAssertEqual(decoded, config)
        XCTAssertNoThrow(try decoded.validate())
        let names = Transformer.layout(config).map(\.0)
        XCTAssertEqual(names.first, "input_proj.weight")
        XCTAssertEqual(Array(names.suffix(2)), ["output_proj.weight", "output_proj.bias"])
        XCTAssertFalse(names.contains("wte.weight"))
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: Transformer.layout(config))["input_proj.weight"], [2, 8])
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: Transformer.layout(config))["output_proj.weight"], [8, 1])
        // A language model's config.json gains no keys.
        let lm = ModelConfig(vocabSize: 256, maxPositions: 16, dModel: 8, nLayers: 1, nHeads: 2)
        let lmJSON = try JSONSerialization.jsonObject(with: try lm.jsonData()) as! [String: Any]
        XCTAssertFalse(lmJSON.keys.contains { $0.hasPrefix("myopia_") && $0 != "myopia_tokenizer" })
        XCTAssertFalse(lm.isContinuous)
        XCTAssertEqual(Transformer.layout(lm).first?.0, "wte.weight")
    }

    func testConfigValidation() throws {
        func check(_ edit: (inout [String: Any]) -> Void, mentions field: String) throws {
            var json = try JSONSerialization.jsonObject(with: try Self.config().jsonData()) as! [String: Any]
            edit(&json)
            let dir = try temporaryDirectory(self)
            let url = dir.appendingPathComponent("config.json")
            try JSONSerialization.data(withJSONObject: json).write(to: url)
            XCTAssertThrowsError(try ModelConfig.load(from: url)) { error in
                XCTAssertTrue("\(error)".contains(field), "\(error)")
            }
        }
        try check({ $0["myopia_outputs"] = 0 }, mentions: "myopia_outputs")
        try check({ $0["myopia_input_features"] = -2 }, mentions: "myopia_input_features")
        try check({ $0.removeValue(forKey: "myopia_outputs") }, mentions: "myopia_outputs")
        try check({ $0["myopia_loss"] = "l1" }, mentions: "myopia_loss")
    }

    /// Saved and loaded, a continuous model predicts exactly what it did.
    func testCheckpointRoundTrip() throws {
        let model = Self.model(seed: 81)
        let (features, targets) = Self.data(b: 2, t: 5, seed: 82)
        let cache = model.makeCache(batch: 2, seqLen: 5)
        let loss = model.forward(features: features, targets: targets, batch: 2, seqLen: 5, cache: cache)!
        let predictions = cache.predictionsArray()
        let dir = try temporaryDirectory(self)
        try Checkpoint.saveModel(model, to: dir)
        let loaded = try Checkpoint.loadModel(from: dir)
        XCTAssertEqual(loaded.config, model.config)
        let cache2 = loaded.makeCache(batch: 2, seqLen: 5)
        XCTAssertEqual(loaded.forward(features: features, targets: targets, batch: 2, seqLen: 5, cache: cache2), loss)
        XCTAssertEqual(cache2.predictionsArray(), predictions)
        let file = try SafeTensorsFile(contentsOf: dir.appendingPathComponent(Checkpoint.modelFile))
        XCTAssertNotNil(file["input_proj.weight"])
        XCTAssertNil(file["wte.weight"])
    }

    // MARK: Helpers

    static func config(layers: Int = 2, loss: RegressionLoss = .huber) -> ModelConfig {
        .continuous(inputFeatures: 3, outputs: 2, maxPositions: 8, dModel: 12, nLayers: layers, nHeads: 3, loss: loss)
    }

    /// A small model with weights larger than GPT-2's init and non-trivial norms and biases, so every
    /// path carries signal.
    static func model(seed: UInt64, layers: Int = 2, loss: RegressionLoss = .huber) -> Transformer {
        let model = Transformer(config: config(layers: layers, loss: loss))
        model.initialize(seed: seed)
        var rng = SeededGenerator(seed: seed + 1000)
        for e in model.params.entries {
            let p = model.params.weights + e.offset
            for i in 0..<e.count { p[i] += Float(rng.nextNormal()) * 0.3 }
        }
        return model
    }

    /// Features (B, T, 3) and targets (B, T, 2) spread enough that Huber sees both regimes.
    static func data(b: Int, t: Int, seed: UInt64) -> ([Float], [Float]) {
        (randomFloats(b * t * 3, seed: seed), randomFloats(b * t * 2, seed: seed + 1, std: 2))
    }
}

