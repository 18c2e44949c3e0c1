import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// Invariants every family's description must keep, on the float64-verified fixtures of
/// FamilyReferenceTests: the gradient horizon's channel backward (which re-walks each block on a
/// window of rows) equals a whole backward pass of one target's loss, under the vanilla and myopic
/// flows; the local-myopic flow with the model as its own reference is the model, bit for bit.
final class FamilyInvariantTests: XCTestCase {
    static let families = ["gpt_neox", "qwen2", "qwen3", "mistral", "gemma2", "olmo2"]

    func load(_ family: String) throws -> (Transformer, [Int32], [Int32], Int, Int) {
        let dir = fixturesURL.appendingPathComponent("families/\(family)")
        struct Reference: Decodable { let B: Int, T: Int, tokens: [[Int32]] }
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: dir.appendingPathComponent("reference.json")))
        let model = try Checkpoint.loadModel(from: dir.appendingPathComponent("hf"))
        return (model, ref.tokens.flatMap { $0.dropLast() }, ref.tokens.flatMap { $0.dropFirst() }, ref.B, ref.T)
    }

    /// g_{l,i,t} = ∂ℓ_t/∂h_{l,i} from `horizonBackward` against backward of ℓ_t alone (every other
    /// target −1) recorded at each residual stream, for every target of the first window.
    func testHorizonEqualsSingleTargetBackward() throws {
        for family in Self.families {
            let (model, inputs, targets, _, t) = try load(family)
            let row = Array(inputs[0..<t]), rowTargets = Array(targets[0..<t])
            let L = model.config.nLayers, c = model.config.dModel
            for flow in [GradientFlow.vanilla, .myopic] {
                model.flow = flow
                let cache = model.makeCache(batch: 1, seqLen: t)
                model.forward(tokens: row, targets: rowTargets, batch: 1, seqLen: t, cache: cache)
                // horizon[(target·(L+1) + l)·T·C + i·C + j]
                let count = t * (L + 1) * t * c
                let horizon = UnsafeMutablePointer<Float>.allocate(capacity: count)
                horizon.initialize(repeating: 0, count: count)
                defer { horizon.deallocate() }
                let out = SendablePointer(horizon)
                model.horizonBackward(cache: cache, maxOffset: t - 1, flow: flow) { r in
                    let rows = r.target - r.firstPosition + 1
                    (out.p + ((r.target * (L + 1) + r.layer) * t + r.firstPosition) * c).update(from: r.rows, count: rows * c)
                }
                for target in [0, t / 2, t - 1] {
                    var only = [Int32](repeating: -1, count: t)
                    only[target] = rowTargets[target]
                    let single = model.makeCache(batch: 1, seqLen: t)
                    model.forward(tokens: row, targets: only, batch: 1, seqLen: t, cache: single)
                    model.params.zeroGrads()
                    let hooks = (0..<L).map { HookPoint(.residPre, layer: $0) }
                    let recorded = model.backward(cache: single, recording: hooks)
                    for l in 0..<L {
                        let expected = recorded[HookPoint(.residPre, layer: l)]!
                        let got = Array(UnsafeBufferPointer(start: horizon + ((target * (L + 1) + l) * t) * c, count: t * c))
                        XCTAssertLessThan(relativeError(got, expected), 1e-5, "\(family) \(flow) target \(target) layer \(l)")
                    }
                }
            }
            model.flow = .vanilla
        }
    }

    /// Same past, same present: attending to a copy of itself under the local-myopic flow, each
    /// family's model gives its own logits and losses bit for bit.
    func testLocalMyopicWithItselfAsReferenceIsTheModel() throws {
        for family in Self.families {
            let (model, inputs, targets, b, t) = try load(family)
            let own = model.makeCache(batch: b, seqLen: t)
            let expected = model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: own)!
            let local = model.copy()
            local.flow = .localMyopic
            local.reference = model.copy()
            let cache = local.makeCache(batch: b, seqLen: t)
            XCTAssertEqual(local.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)!, expected, family)
            XCTAssertTrue(cache.logitsArray() == own.logitsArray(), "\(family): logits differ")
        }
    }

    /// Gemma 2 under the local-myopic flow (soft-capped scores, sliding windows, post-norms): the
    /// reference's keys and values are constants, so backward is the derivative of the local-myopic
    /// loss — finite differences along a random direction per tensor of a model moved off its reference.
    func testLocalMyopicGemma2GradientIsTheDerivativeOfItsLoss() throws {
        let (reference, inputs, targets, b, t) = try load("gemma2")
        try reference.checkReference(reference.copy(), seqLen: t)
        let model = reference.copy()
        model.flow = .localMyopic
        model.reference = reference.copy()
        for e in model.params.entries {
            let d = randomFloats(e.count, seed: UInt64(e.offset + 3))
            for i in 0..<e.count { model.params.weights[e.offset + i] += 0.05 * d[i] }
        }
        let cache = model.makeCache(batch: b, seqLen: t)
        assertWholeModelGradient(model, label: "gemma2 local-myopic", directionEps: 2e-3, directionSeed: 11, coordinateSeed: 5,
                                 loss: { Double(model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)!) },
                                 backward: { model.backward(cache: cache) })
    }
}

private struct SendablePointer: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { self.p = p }
}
