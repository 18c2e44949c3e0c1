import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaTraining
@testable import MyopiaKernels
@testable import MyopiaModel

/// The channel backward of the gradient horizon against a brute-force loop of single-target
/// backward passes, against torch.autograd, and against itself with a smaller window.
final class HorizonTests: XCTestCase {
    let folder = fixturesURL.appendingPathComponent("gpt2_tiny")
    struct Tokens: Decodable { let tokens: [[Int32]] }

    func setUpModel(sequences: Int = 2, t: Int = 16) throws -> (Transformer, ActivationCache, [Int32], [Int32]) {
        let model = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
        let rows = try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: folder.appendingPathComponent("reference.json"))).tokens
        let inputs = rows.prefix(sequences).flatMap { $0.prefix(t) }
        let targets = rows.prefix(sequences).flatMap { $0.dropFirst().prefix(t) }
        let cache = model.makeCache(batch: sequences, seqLen: t)
        model.forward(tokens: inputs, targets: targets, batch: sequences, seqLen: t, cache: cache)
        return (model, cache, inputs, targets)
    }

    func testChannelsEqualBruteForce() throws {
        let (model, cache, inputs, targets) = try setUpModel()
        let channels = channelGradients(model, cache, maxOffset: 15)
        let brute = bruteForce(model, inputs: inputs, targets: targets, b: 2, t: 16)
        XCTAssertLessThan(relativeError(channels, brute), 1e-5)
        XCTAssertLessThan(maxRelativeError(channels, brute), 1e-5)
    }

    func testChannelsEqualTorchAutograd() throws {
        let (model, cache, _, _) = try setUpModel(sequences: 1)
        let channels = channelGradients(model, cache, maxOffset: 15)
        // torch's layout is [l, t, i, C]; ours [t, l, i, C] for the one sequence.
        let torch = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("horizon_reference.safetensors")).floats("grads")
        let t = 16, c = model.config.dModel, layers = model.config.nLayers + 1
        var reordered = [Float](repeating: 0, count: torch.count)
        for l in 0..<layers { for target in 0..<t { for i in 0..<t { for j in 0..<c {
            reordered[((target * layers + l) * t + i) * c + j] = torch[((l * t + target) * t + i) * c + j]
        } } } }
        XCTAssertLessThan(relativeError(channels, reordered), 1e-4)
        XCTAssertLessThan(maxRelativeError(channels, reordered), 1e-4)
    }

    func testMaxOffsetIsExactForSmallerOffsets() throws {
        let (model, cache, _, _) = try setUpModel()
        let full = channelGradients(model, cache, maxOffset: 15)
        let windowed = channelGradients(model, cache, maxOffset: 3)
        let t = 16, c = model.config.dModel, layers = model.config.nLayers + 1
        var worst: Float = 0, compared = 0
        for bi in 0..<2 { for target in 0..<t { for l in 0..<layers { for i in max(0, target - 3)...target {
            let base = (((bi * t + target) * layers + l) * t + i) * c
            for j in 0..<c { worst = max(worst, abs(full[base + j] - windowed[base + j])); compared += 1 }
        } } } }
        XCTAssertGreaterThan(compared, 0)
        XCTAssertEqual(worst, 0, "a smaller window must give the same numbers, bit for bit")
    }

    /// Σ_t g_{l,i,t} is the ordinary gradient of the summed loss at h_{l,i}.
    func testChannelsSumToTheOrdinaryGradient() throws {
        let (model, cache, inputs, targets) = try setUpModel()
        let channels = channelGradients(model, cache, maxOffset: 15)
        let t = 16, c = model.config.dModel, layers = model.config.nLayers + 1, b = 2
        var summed = [Float](repeating: 0, count: b * layers * t * c)
        for bi in 0..<b { for target in 0..<t { for l in 0..<layers { for i in 0..<t { for j in 0..<c {
            summed[((bi * layers + l) * t + i) * c + j] += channels[(((bi * t + target) * layers + l) * t + i) * c + j]
        } } } } }
        // Ordinary backward of Σ_t ℓ_t, reading the residual gradient between blocks.
        let plain = model.makeCache(batch: b, seqLen: t)
        model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: plain)
        model.backwardHead(cache: plain, lossScale: Float(b * t))
        var ordinary = [Float](repeating: 0, count: summed.count)
        func record(_ l: Int) {
            for bi in 0..<b { for i in 0..<t { for j in 0..<c {
                ordinary[((bi * layers + l) * t + i) * c + j] = plain.dResid[(bi * t + i) * c + j]
            } } }
        }
        record(model.config.nLayers)
        for l in stride(from: model.config.nLayers - 1, through: 0, by: -1) {
            Block.backward(plain.layers[l], scratch: plain, w: model.params.weights, g: model.params.grads,
                           p: model.blocks[l], shape: model.shapes[l], b: b, t: t,
                           inputShare: 1, probs: plain.keptPattern(layer: l))
            record(l)
        }
        XCTAssertLessThan(relativeError(summed, ordinary), 1e-5)
    }

    /// Under the myopic flow, what reaches h_{l,i} from ℓ_t with t > i is exactly nothing: the
    /// horizon of the myopic training signal is offset 0 alone.
    func testMyopicSignalHasNoFutureOffsets() throws {
        let (model, cache, _, _) = try setUpModel()
        let g = channelGradients(model, cache, maxOffset: 15, flow: .myopic)
        let t = 16, c = model.config.dModel, layers = model.config.nLayers + 1
        var offDiagonal: Float = 0, diagonal: Float = 0
        for bi in 0..<2 { for target in 0..<t { for l in 0..<layers { for i in 0...target {
            let base = (((bi * t + target) * layers + l) * t + i) * c
            for j in 0..<c { if i == target { diagonal += abs(g[base + j]) } else { offDiagonal += abs(g[base + j]) } }
        } } } }
        XCTAssertGreaterThan(diagonal, 0)
        XCTAssertEqual(offDiagonal, 0)
    }

    func testGradientsAreLeftUntouched() throws {
        let (model, cache, _, _) = try setUpModel()
        model.params.zeroGrads()
        model.params.grads[3] = 42
        _ = channelGradients(model, cache, maxOffset: 2)
        XCTAssertEqual(model.params.grads[3], 42)
        XCTAssertEqual(GradientClipping.globalNorm(model.params), 42)
    }
}

extension HorizonTests {
    func testForwardCacheIsLeftIntact() throws {
        let (model, cache, _, _) = try setUpModel()
        let logits = cache.logitsArray()
        let first = channelGradients(model, cache, maxOffset: 4)
        XCTAssertTrue(cache.logitsArray() == logits)
        XCTAssertTrue(channelGradients(model, cache, maxOffset: 4) == first)
    }
}

extension HorizonTests {
    /// The channels of a model with continuous heads (sine task) sum to its ordinary gradient of
    /// the summed Huber loss, at every layer.
    func testContinuousModelChannelsSumToTheOrdinaryGradient() throws {
        let config = ModelConfig.continuous(inputFeatures: 2, outputs: 1, maxPositions: 12, dModel: 16, nLayers: 2, nHeads: 2)
        let model = Transformer(config: config)
        model.initialize(seed: 9)
        let (b, t, c) = (2, 12, 16)
        var rng = SeededGenerator(seed: 10)
        let data = SineTask(p: 0.5, frequency: 3, window: 4).makeBatch(batch: b, seqLen: t, rng: &rng)
        let cache = model.makeCache(batch: b, seqLen: t)
        model.forward(features: data.features, targets: data.targets, batch: b, seqLen: t, cache: cache)
        let layers = config.nLayers + 1
        var summed = [Float](repeating: 0, count: b * layers * t * c)
        summed.withUnsafeMutableBufferPointer { g in
            // Serial sums per (sequence, layer) would race across channels: collect, then add.
            var all = [Float](repeating: 0, count: b * t * layers * t * c)
            all.withUnsafeMutableBufferPointer { a in
                model.horizonBackward(cache: cache, maxOffset: t - 1) { rows in
                    for r in 0...(rows.target - rows.firstPosition) {
                        let i = rows.firstPosition + r
                        for j in 0..<c { a[(((rows.sequence * t + rows.target) * layers + rows.layer) * t + i) * c + j] = rows.rows[r * c + j] }
                    }
                }
            }
            for bi in 0..<b { for target in 0..<t { for l in 0..<layers { for i in 0..<t { for j in 0..<c {
                g[((bi * layers + l) * t + i) * c + j] += all[(((bi * t + target) * layers + l) * t + i) * c + j]
            } } } } }
        }
        let plain = model.makeCache(batch: b, seqLen: t)
        model.forward(features: data.features, targets: data.targets, batch: b, seqLen: t, cache: plain)
        model.backwardHead(cache: plain, lossScale: Float(b * t))
        var ordinary = [Float](repeating: 0, count: summed.count)
        func record(_ l: Int) {
            for bi in 0..<b { for i in 0..<t { for j in 0..<c { ordinary[((bi * layers + l) * t + i) * c + j] = plain.dResid[(bi * t + i) * c + j] } } }
        }
        record(config.nLayers)
        for l in stride(from: config.nLayers - 1, through: 0, by: -1) {
            Block.backward(plain.layers[l], scratch: plain, w: model.params.weights, g: model.params.grads, p: model.blocks[l],
                           shape: model.shapes[l], b: b, t: t, inputShare: 1, probs: plain.keptPattern(layer: l))
            record(l)
        }
        XCTAssertLessThan(relativeError(summed, ordinary), 1e-5)
        XCTAssertGreaterThan(ordinary.map(abs).max() ?? 0, 0)
    }
}

/// g[b][t][l] = (T, C) gradients ∂ℓ_t/∂h_{l,·} of sequence b, from the channel backward.
func channelGradients(_ model: Transformer, _ cache: ActivationCache, maxOffset: Int,
                      flow: GradientFlow = .vanilla) -> [Float] {
    let b = cache.batch, t = cache.seqLen, c = model.config.dModel, layers = model.config.nLayers + 1
    var out = [Float](repeating: 0, count: b * t * layers * t * c)
    out.withUnsafeMutableBufferPointer { g in
        model.horizonBackward(cache: cache, maxOffset: maxOffset, flow: flow) { rows in
            for r in 0...(rows.target - rows.firstPosition) {
                let i = rows.firstPosition + r
                let dst = (((rows.sequence * t + rows.target) * layers + rows.layer) * t + i) * c
                for j in 0..<c { g[dst + j] = rows.rows[r * c + j] }
            }
        }
    }
    return out
}

/// The same by brute force: for each target t, an ordinary backward of ℓ_t alone, reading the
/// residual gradient between blocks.
func bruteForce(_ model: Transformer, inputs: [Int32], targets: [Int32], b: Int, t: Int,
                only: Int? = nil) -> [Float] {
    let c = model.config.dModel, layers = model.config.nLayers + 1
    var out = [Float](repeating: 0, count: b * t * layers * t * c)
    let cache = model.makeCache(batch: b, seqLen: t)
    for target in 0..<t where only == nil || only == target {
        var masked = [Int32](repeating: -1, count: b * t)
        for bi in 0..<b { masked[bi * t + target] = targets[bi * t + target] }
        model.forward(tokens: inputs, targets: masked, batch: b, seqLen: t, cache: cache)
        // The mean over the b counted targets; scale by b to get each ℓ_t itself.
        model.backwardHead(cache: cache, lossScale: Float(b))
        func record(_ layer: Int) {
            for bi in 0..<b {
                for i in 0..<t {
                    let src = (bi * t + i) * c
                    let dst = (((bi * t + target) * layers + layer) * t + i) * c
                    for j in 0..<c { out[dst + j] = cache.dResid[src + j] }
                }
            }
        }
        record(model.config.nLayers)
        for l in stride(from: model.config.nLayers - 1, through: 0, by: -1) {
            Block.backward(cache.layers[l], scratch: cache, w: model.params.weights, g: model.params.grads,
                           p: model.blocks[l], shape: model.shapes[l], b: b, t: t,
                           inputShare: model.flow.offDiagonalInputShare, probs: cache.keptPattern(layer: l))
            record(l)
        }
    }
    return out
}
