import XCTest
import MyopiaTestSupport
import Myopia

/// Myopia against PyTorch + transformers on a random, non-square GPT-2 (3 layers, 3 heads, d_model 96,
/// vocab 256, 64 positions, B 3, T 40). Fixtures: tools/reference/gpt2_reference.py.
final class GPT2ReferenceTests: XCTestCase {
    struct Reference: Decodable {
        struct AdamWRun: Decodable {
            let betas: [Double]
            let eps: Double
            let weight_decay: Double
            let max_lr: Double
            let min_lr: Double
            let warmup: Int
            let total: Int
            let clip: Double
            let lrs: [Double]
            let train_tokens: [[[Int32]]]
            let losses: [Double]
            let grad_norms: [Double]
        }
        let B: Int
        let T: Int
        let tokens: [[Int32]]
        let loss: Double
        let adamw: AdamWRun
    }

    let folder = fixturesURL.appendingPathComponent("gpt2_tiny")

    func loadReference() throws -> (Reference, SafeTensorsFile) {
        let json = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: folder.appendingPathComponent("reference.json")))
        let tensors = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("reference.safetensors"))
        return (json, tensors)
    }

    /// Rows of T+1 tokens -> inputs (first T) and targets (last T), flattened.
    func split(_ rows: [[Int32]]) -> ([Int32], [Int32]) {
        (rows.flatMap { $0.dropLast() }, rows.flatMap { $0.dropFirst() })
    }

    func testLoadsTransformersFolder() throws {
        try forEachKernel { _ in
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            XCTAssertEqual(model.config.nLayers, 3)
            XCTAssertEqual(model.config.nHeads, 3)
            XCTAssertEqual(model.config.dModel, 96)
            XCTAssertEqual(model.config.dMLP, 384)
            XCTAssertEqual(model.params.count, 256 * 96 + 64 * 96 + 3 * (12 * 96 * 96 + 13 * 96) + 2 * 96)
        }
    }

    func testLogitsLossAndHiddenStatesMatchPyTorch() throws {
        try forEachKernel { _ in
            let (ref, tensors) = try loadReference()
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            let cache = model.makeCache(batch: ref.B, seqLen: ref.T)
            let (inputs, targets) = split(ref.tokens)
            let loss = model.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: cache)!
            XCTAssertEqual(Double(loss), ref.loss, accuracy: 1e-4 * ref.loss)
            let logits = try tensors.floats("logits")
            XCTAssertLessThan(maxRelativeError(cache.logitsArray(), logits), 1e-4)
            for l in 0..<model.config.nLayers {
                XCTAssertLessThan(maxRelativeError(cache.residual(layer: l), try tensors.floats("hidden.\(l)")), 1e-4, "hidden.\(l)")
            }
            XCTAssertLessThan(maxRelativeError(cache.residual(layer: model.config.nLayers), try tensors.floats("resid_final")), 1e-4)
        }
    }

    func testEveryParameterGradientMatchesPyTorch() throws {
        try forEachKernel { _ in
            let (ref, tensors) = try loadReference()
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            let cache = model.makeCache(batch: ref.B, seqLen: ref.T)
            let (inputs, targets) = split(ref.tokens)
            model.params.zeroGrads()
            model.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: cache)
            model.backward(cache: cache)
            for e in model.params.entries {
                let expected = try tensors.floats("grad." + e.name)
                let got = Array(model.params.buffer(model.params.grads, e))
                XCTAssertLessThan(relativeError(got, expected), 1e-4, e.name)
                XCTAssertLessThan(maxRelativeError(got, expected), 1e-4, e.name)
            }
        }
    }

    func testTenAdamWStepsMatchPyTorch() throws {
        try forEachKernel { _ in
            let (ref, tensors) = try loadReference()
            let run = ref.adamw
            let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            let cache = model.makeCache(batch: ref.B, seqLen: ref.T)
            let optimizer = AdamW(beta1: run.betas[0], beta2: run.betas[1], eps: run.eps, weightDecay: run.weight_decay)
            let schedule = LearningRateSchedule(maxLR: run.max_lr, minLR: run.min_lr, warmupSteps: run.warmup, totalSteps: run.total)
            for step in 0..<run.total {
                XCTAssertEqual(schedule.rate(at: step), run.lrs[step], accuracy: 1e-12)
                let (inputs, targets) = split(run.train_tokens[step])
                model.params.zeroGrads()
                let loss = model.forward(tokens: inputs, targets: targets, batch: ref.B, seqLen: ref.T, cache: cache)!
                XCTAssertEqual(Double(loss), run.losses[step], accuracy: 1e-4 * run.losses[step], "loss at step \(step)")
                model.backward(cache: cache)
                let norm = GradientClipping.clip(model.params, maxNorm: run.clip)
                XCTAssertEqual(norm, run.grad_norms[step], accuracy: 1e-4 * run.grad_norms[step], "grad norm at step \(step)")
                optimizer.update(model.params, lr: schedule.rate(at: step), step: step + 1)
            }
            for e in model.params.entries {
                let expected = try tensors.floats("final." + e.name)
                let got = Array(model.params.buffer(model.params.weights, e))
                // Adam moves every coordinate by about lr whatever its gradient's size, so a coordinate whose
                // gradient is a rounding error away from zero may move either way: compare in norm, and
                // bound each coordinate by a fraction of one step.
                XCTAssertLessThan(relativeError(got, expected), 1e-4, e.name)
                XCTAssertLessThan(zip(got, expected).map { abs($0 - $1) }.max() ?? 0, 1e-4, e.name)
            }
        }
    }
}
