import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaModel

/// The local-myopic flow (LocalMyopic.swift): at zero fine-tuning steps it is the reference bit for
/// bit; its gradients match PyTorch (tools/reference/local_myopic_reference.py) for GPT-2 and Llama
/// (GQA); it is the true derivative of its own forward; no gradient crosses positions or reaches the
/// reference; and fine-tuning leaves the reference untouched.
final class LocalMyopicTests: XCTestCase {
    struct Tokens: Decodable { let tokens: [[Int32]] }
    struct Fixture: Decodable {
        struct Losses: Decodable { let local_myopic: Double; let reference_vanilla: Double }
        let losses: Losses
    }

    /// Inputs and targets (B·T each) of a fixture's reference.json.
    func fixtureTokens(_ folder: URL) throws -> (inputs: [Int32], targets: [Int32], b: Int, t: Int) {
        let rows = try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: folder.appendingPathComponent("reference.json"))).tokens
        return (rows.flatMap { $0.dropLast() }, rows.flatMap { $0.dropFirst() }, rows.count, rows[0].count - 1)
    }

    /// A trained model attending to `reference` (a copy of it unless `trained` is given).
    func localMyopic(_ reference: Transformer, trained: Transformer? = nil) -> Transformer {
        let model = trained ?? reference.copy()
        model.flow = .localMyopic
        model.reference = reference
        return model
    }

    /// Adds N(0, std²) to every weight.
    func perturb(_ model: Transformer, seed: UInt64, std: Float = 0.05) {
        var rng = SeededGenerator(seed: seed)
        for i in 0..<model.params.count { model.params.weights[i] += Float(rng.nextNormal()) * std }
    }

    // MARK: - Zero fine-tuning steps

    func assertZeroStepsIsTheReference(_ reference: Transformer, inputs: [Int32], targets: [Int32], b: Int, t: Int,
                                       _ what: String) {
        let own = reference.makeCache(batch: b, seqLen: t)
        let expected = reference.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: own)!
        let model = localMyopic(reference)
        let cache = model.makeCache(batch: b, seqLen: t)
        let got = model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)!
        XCTAssertEqual(got, expected, "\(what): loss")
        XCTAssertTrue(cache.logitsArray() == own.logitsArray(), "\(what): logits differ")
        XCTAssertTrue(cache.positionLosses() == own.positionLosses(), "\(what): per-position losses differ")
        for l in 0..<reference.config.nLayers {
            XCTAssertTrue(cache.residual(layer: l + 1) == own.residual(layer: l + 1), "\(what): residual \(l + 1)")
        }
    }

    /// Same past, same present: the local-myopic loss of the reference itself is its own loss, bit for bit.
    func testZeroStepsIsTheReferenceBitForBit() throws {
        for name in ["gpt2_tiny", "llama_tiny"] {
            let folder = fixturesURL.appendingPathComponent(name)
            let (inputs, targets, b, t) = try fixtureTokens(folder)
            assertZeroStepsIsTheReference(try Checkpoint.loadModel(from: folder.appendingPathComponent("hf")),
                                          inputs: inputs, targets: targets, b: b, t: t, name)
        }
        let tokens: [Int32] = (0..<14).map { Int32(($0 * 7 + 3) % 13) }, targets: [Int32] = (0..<14).map { Int32(($0 * 5 + 1) % 13) }
        assertZeroStepsIsTheReference(smallLlama(tied: true, interleaved: true), inputs: tokens, targets: targets, b: 2, t: 7,
                                      "small llama (tied, interleaved RoPE)")
    }

    // MARK: - PyTorch

    /// The loss and every parameter gradient of a perturbed model attending to the fixture's model,
    /// against PyTorch autograd (float64), for GPT-2 and for Llama with grouped-query attention.
    func testGradientsMatchPyTorch() throws {
        for name in ["gpt2_tiny", "llama_tiny"] {
            let folder = fixturesURL.appendingPathComponent(name)
            let file = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("local_myopic_reference.safetensors"))
            let doc = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: folder.appendingPathComponent("local_myopic_reference.json")))
            let reference = try Checkpoint.loadModel(from: folder.appendingPathComponent("hf"))
            let before = reference.params.weightArray()
            let model = localMyopic(reference, trained: reference.copy())
            for e in model.params.entries {
                let w = try file.floats("trained.\(e.name)")
                XCTAssertEqual(w.count, e.count, e.name)
                w.withUnsafeBufferPointer { (model.params.weights + e.offset).update(from: $0.baseAddress!, count: e.count) }
            }
            let (inputs, targets, b, t) = try fixtureTokens(folder)
            let cache = model.makeCache(batch: b, seqLen: t)
            model.params.zeroGrads()
            let loss = model.forward(tokens: inputs, targets: targets, batch: b, seqLen: t, cache: cache)!
            model.backward(cache: cache)
            XCTAssertEqual(Double(loss), doc.losses.local_myopic, accuracy: 1e-5, "\(name) loss")
            XCTAssertNotEqual(doc.losses.local_myopic, doc.losses.reference_vanilla, accuracy: 1e-3)
            let g = model.params.gradArray()
            for e in model.params.entries {
                let expected = try file.floats("grad.\(e.name)"), got = Array(g[e.offset..<(e.offset + e.count)])
                XCTAssertLessThan(relativeError(got, expected), 1e-4, "\(name) \(e.name)")
                XCTAssertLessThan(maxRelativeError(got, expected), 1e-4, "\(name) \(e.name)")
            }
            // The frozen reference: no gradient, no change.
            XCTAssertTrue(reference.params.gradArray().allSatisfy { $0 == 0 }, "\(name): the reference got a gradient")
            XCTAssertTrue(reference.params.weightArray() == before, "\(name): the reference changed")
        }
    }

    // MARK: - Invariants

    /// The reference's keys and values are constants of the local-myopic loss, so backward is the
    /// true derivative with respect to the trained model's parameters: finite differences along a
    /// random direction per tensor, on a Llama with GQA, RoPE and an untied head.
    func testGradientIsTheDerivativeOfTheLocalMyopicLoss() {
        let reference = smallLlama()
        let model = localMyopic(reference, trained: reference.copy())
        perturb(model, seed: 21, std: 0.2)
        let b = 2, t = 7
        let tokens: [Int32] = (0..<(b * t)).map { Int32(($0 * 7 + 3) % 13) }, targets: [Int32] = (0..<(b * t)).map { Int32(($0 * 5 + 1) % 13) }
        let cache = model.makeCache(batch: b, seqLen: t)
        func f() -> Double { Double(model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)!) }
        model.params.zeroGrads()
        _ = f()
        model.backward(cache: cache)
        let grads = model.params.gradArray()
        for e in model.params.entries {
            let d = randomFloats(e.count, seed: UInt64(e.offset + 7))
            let w = model.params.weights + e.offset
            let saved = Array(UnsafeBufferPointer(start: w, count: e.count))
            let eps: Float = 2e-3
            for i in 0..<e.count { w[i] = saved[i] + eps * d[i] }
            let up = f()
            for i in 0..<e.count { w[i] = saved[i] - eps * d[i] }
            let down = f()
            for i in 0..<e.count { w[i] = saved[i] }
            let numeric = (up - down) / Double(2 * eps)
            var analytic = 0.0
            for i in 0..<e.count { analytic += Double(grads[e.offset + i]) * Double(d[i]) }
            XCTAssertEqual(analytic, numeric, accuracy: 2e-3 + 2e-2 * abs(numeric), e.name)
            XCTAssertGreaterThan(abs(analytic), 1e-5, "\(e.name) gets no gradient")
        }
    }

    /// Grouped-query local-myopic attention against finite differences in the model's own q, k, v;
    /// the reference's rows are constants.
    func testAttentionFiniteDifferences() {
        let b = 2, t = 5, shape = AttentionShape(nh: 4, nkv: 2, hs: 3)
        let qkv = Buffer(randomFloats(b * t * shape.width, seed: 30)), past = Buffer(randomFloats(b * t * shape.width, seed: 31))
        let r = randomFloats(b * t * shape.out, seed: 32)
        let z = Buffer(zeros: b * t * shape.out), probs = Buffer(zeros: b * shape.nh * t * t)
        func f() -> Double {
            Attention.forwardLocalMyopic(z: z.p, probs: probs.p, qkv: qkv.p, past: past.p, b: b, t: t, shape: shape)
            return dot(z.p, r)
        }
        _ = f()
        let dqkv = Buffer(zeros: qkv.count), scratch = Buffer(zeros: probs.count)
        Attention.backwardLocalMyopic(dqkv: dqkv.p, scratch: scratch.p, dz: r, qkv: qkv.p, past: past.p, probs: probs.p,
                                      b: b, t: t, shape: shape)
        assertGradientsClose(dqkv.doubles, numericalGradient(qkv.p, indices: qkv.all, eps: 1e-2, f), "dqkv")
        // Position 0 attends only to itself: z_0 = v_0 whatever the past.
        _ = f()
        for h in 0..<shape.nh {
            for j in 0..<shape.hs {
                XCTAssertEqual(z.array[h * shape.hs + j], qkv.array[shape.valueColumn + (h / shape.group) * shape.hs + j], accuracy: 1e-6)
            }
        }
        // With past = own rows it is ordinary attention.
        let zVanilla = Buffer(zeros: z.count), probsVanilla = Buffer(zeros: probs.count)
        let stats = Buffer(zeros: b * shape.nh * t * 2)
        Attention.forward(z: zVanilla.p, statistics: stats.p, probs: probsVanilla.p, qkv: qkv.p, b: b, t: t, shape: shape)
        Attention.forwardLocalMyopic(z: z.p, probs: probs.p, qkv: qkv.p, past: qkv.p, b: b, t: t, shape: shape)
        XCTAssertTrue(z.array == zVanilla.array && probs.array == probsVanilla.array)
    }

    /// The same with Gemma 2's options: a query scale, soft-capped scores and a sliding window. The
    /// soft-cap's derivative comes from the row statistics the forward kept; with past = own rows it
    /// is ordinary (capped, windowed) attention, bit for bit.
    func testSoftCappedWindowedAttentionFiniteDifferences() {
        let b = 2, t = 6
        var shape = AttentionShape(nh: 4, nkv: 2, hs: 3)
        shape.scale = 0.4
        shape.softcap = 1.5
        shape.window = 3
        let qkv = Buffer(randomFloats(b * t * shape.width, seed: 40)), past = Buffer(randomFloats(b * t * shape.width, seed: 41))
        for i in 0..<qkv.count { qkv.p[i] *= 3; past.p[i] *= 3 }   // scores well into tanh's curve
        let r = randomFloats(b * t * shape.out, seed: 42)
        let z = Buffer(zeros: b * t * shape.out), probs = Buffer(zeros: b * shape.nh * t * t)
        let stats = Buffer(zeros: b * shape.nh * t * 2)
        func f() -> Double {
            Attention.forwardLocalMyopic(z: z.p, probs: probs.p, statistics: stats.p, qkv: qkv.p, past: past.p, b: b, t: t, shape: shape)
            return dot(z.p, r)
        }
        _ = f()
        // The window: a query at 5 reads keys 3…5 only.
        XCTAssertEqual(probs.array[5 * t + 2], 0)
        XCTAssertGreaterThan(probs.array[5 * t + 3], 0)
        let dqkv = Buffer(zeros: qkv.count), scratch = Buffer(zeros: probs.count)
        Attention.backwardLocalMyopic(dqkv: dqkv.p, scratch: scratch.p, dz: r, qkv: qkv.p, past: past.p, probs: probs.p,
                                      statistics: stats.p, b: b, t: t, shape: shape)
        assertGradientsClose(dqkv.doubles, numericalGradient(qkv.p, indices: qkv.all, eps: 1e-2, f), "dqkv")
        // Without the cap's derivative the query gradient is off: the check above can fail.
        var uncapped = shape
        uncapped.softcap = nil
        let dWrong = Buffer(zeros: qkv.count)
        _ = f()
        Attention.backwardLocalMyopic(dqkv: dWrong.p, scratch: scratch.p, dz: r, qkv: qkv.p, past: past.p, probs: probs.p,
                                      statistics: stats.p, b: b, t: t, shape: uncapped)
        XCTAssertGreaterThan(relativeError(dWrong.array, dqkv.array), 1e-2)
        let zVanilla = Buffer(zeros: z.count), probsVanilla = Buffer(zeros: probs.count), statsVanilla = Buffer(zeros: stats.count)
        Attention.forward(z: zVanilla.p, statistics: statsVanilla.p, probs: probsVanilla.p, qkv: qkv.p, b: b, t: t, shape: shape)
        Attention.forwardLocalMyopic(z: z.p, probs: probs.p, statistics: stats.p, qkv: qkv.p, past: qkv.p, b: b, t: t, shape: shape)
        XCTAssertTrue(z.array == zVanilla.array && probs.array == probsVanilla.array && stats.array == statsVanilla.array)
    }

    /// The loss at one position t reaches the embeddings at t only: exactly zero gradient at every
    /// other position (vanilla: earlier positions get some).
    func testNoGradientCrossesPositions() {
        let reference = smallLlama()
        let model = localMyopic(reference, trained: reference.copy())
        perturb(model, seed: 22)
        let t = 7, target = 5
        let tokens: [Int32] = (0..<t).map { Int32(($0 * 7 + 3) % 13) }
        let targets: [Int32] = (0..<t).map { $0 == target ? 4 : -1 }
        let c = model.config.dModel
        for flow in [GradientFlow.vanilla, .localMyopic] {
            model.flow = flow
            let cache = model.makeCache(batch: 1, seqLen: t)
            model.params.zeroGrads()
            model.forward(tokens: tokens, targets: targets, batch: 1, seqLen: t, cache: cache)
            model.backward(cache: cache)
            // cache.dResid now holds dL/d(embedding output), (T, C).
            let d = Array(UnsafeBufferPointer(start: cache.dResid, count: t * c))
            let earlier = d[0..<(target * c)].map(abs).max()!, own = d[(target * c)..<((target + 1) * c)].map(abs).max()!
            XCTAssertEqual(d[((target + 1) * c)...].map(abs).max()!, 0)
            XCTAssertGreaterThan(own, 1e-4)
            if flow == .localMyopic { XCTAssertEqual(earlier, 0, "the loss at \(target) reached earlier positions") }
            else { XCTAssertGreaterThan(earlier, 1e-4) }
        }
    }

    /// A forward under another flow on the same cache forgets the reference's past: vanilla after
    /// local-myopic is vanilla, bit for bit.
    func testSwitchingFlowsOnOneCache() {
        let reference = smallLlama()
        let model = localMyopic(reference, trained: reference.copy())
        perturb(model, seed: 23)
        let b = 2, t = 7
        let tokens: [Int32] = (0..<(b * t)).map { Int32(($0 * 3 + 1) % 13) }, targets: [Int32] = (0..<(b * t)).map { Int32(($0 * 5 + 2) % 13) }
        func pass(_ cache: ActivationCache, _ flow: GradientFlow) -> (Float, [Float]) {
            model.flow = flow
            model.params.zeroGrads()
            let loss = model.forward(tokens: tokens, targets: targets, batch: b, seqLen: t, cache: cache)!
            model.backward(cache: cache)
            return (loss, model.params.gradArray())
        }
        let fresh = pass(model.makeCache(batch: b, seqLen: t), .vanilla)
        let shared = model.makeCache(batch: b, seqLen: t)
        let local = pass(shared, .localMyopic)
        let after = pass(shared, .vanilla)
        XCTAssertEqual(after.0, fresh.0)
        XCTAssertTrue(after.1 == fresh.1)
        XCTAssertNotEqual(local.0, fresh.0)
        XCTAssertGreaterThan(relativeError(local.1, fresh.1), 1e-3)
        // A smaller batch in the same cache.
        model.flow = .localMyopic
        let one = model.forward(tokens: Array(tokens[..<t]), targets: Array(targets[..<t]), batch: 1, seqLen: t, cache: shared)!
        let alone = model.forward(tokens: Array(tokens[..<t]), targets: Array(targets[..<t]), batch: 1, seqLen: t,
                                  cache: model.makeCache(batch: 1, seqLen: t))!
        XCTAssertEqual(one, alone)
    }

    func testReferenceChecksAndParsing() throws {
        let model = smallLlama()
        XCTAssertNoThrow(try model.checkReference(smallLlama(seed: 9), seqLen: 16))
        XCTAssertThrowsError(try model.checkReference(smallLlama(), seqLen: 17))
        XCTAssertThrowsError(try model.checkReference(Transformer(config: ModelConfig(vocabSize: 13, maxPositions: 16, dModel: 12,
                                                                                      nLayers: 2, nHeads: 4)), seqLen: 8))
        var bigram = smallLlama().config
        bigram.attention = .selfOnly
        XCTAssertThrowsError(try model.checkReference(Transformer(config: bigram), seqLen: 8))
        XCTAssertEqual(try GradientFlow(parsing: "local-myopic"), .localMyopic)
        XCTAssertEqual(GradientFlow.localMyopic.description, "local-myopic")
        XCTAssertThrowsError(try GradientFlow(parsing: "local-myopic", allowsLocalMyopic: false))
        let json = try JSONEncoder().encode(["flow": GradientFlow.localMyopic])
        XCTAssertEqual(try JSONDecoder().decode([String: GradientFlow].self, from: json)["flow"], .localMyopic)
        // A copy is independent of the original.
        let copy = model.copy()
        copy.params.weights[0] += 1
        XCTAssertNotEqual(copy.params.weights[0], model.params.weights[0])
    }

    // MARK: - Training

    func smallConfig(_ flow: GradientFlow) -> TrainConfig {
        var c = TrainConfig()
        c.layers = 2; c.heads = 2; c.dModel = 32; c.seqLen = 16; c.batch = 4
        c.steps = 6; c.warmup = 2; c.lr = 3e-3; c.minLR = 3e-4
        c.evalEvery = 3; c.evalWindows = 4; c.logEvery = 2; c.checkpointEvery = 3
        c.flow = flow
        return c
    }

    var text: TokenDataset {
        TokenDataset.split(ByteTokenizer().encode(String(repeating: "to be or not to be, that is the question. ", count: 40)),
                           validationFraction: 0.2, source: "inline")
    }

    /// Fine-tuning local-myopic from a reference leaves the reference exactly as it was; without a
    /// reference the run is refused; resuming continues bit for bit.
    func testFineTuningKeepsTheReferenceFrozen() throws {
        let vanilla = try Trainer(config: smallConfig(.vanilla), dataset: text, out: try temporaryDirectory(self))
        try vanilla.run()
        let reference = vanilla.model
        reference.params.zeroGrads()   // (its own training left its last gradient there)
        let before = reference.params.weightArray()
        XCTAssertThrowsError(try Trainer(config: smallConfig(.localMyopic), dataset: text, out: try temporaryDirectory(self)))

        let out = try temporaryDirectory(self)
        let trainer = try Trainer(config: smallConfig(.localMyopic), dataset: text, out: out, reference: reference)
        XCTAssertTrue(trainer.model !== reference && trainer.model.reference === reference)
        XCTAssertTrue(trainer.model.params.weightArray() == before, "fine-tuning starts from the reference")
        let last = try trainer.run()
        XCTAssertTrue(reference.params.weightArray() == before, "the reference changed")
        XCTAssertTrue(reference.params.gradArray().allSatisfy { $0 == 0 }, "the reference got a gradient")
        XCTAssertGreaterThan(relativeError(trainer.model.params.weightArray(), before), 1e-4)
        XCTAssertTrue(last?.valLoss?.isFinite ?? false)
        // The logged validation loss is the local-myopic one.
        let eval = Evaluation.run(trainer.model, tokens: text.validation, seqLen: 16, batch: 4, maxWindows: 4)
        XCTAssertEqual(eval.loss, last!.valLoss!, accuracy: 1e-6)

        // Interrupted and resumed: the same weights.
        let split = try temporaryDirectory(self)
        try Trainer(config: smallConfig(.localMyopic), dataset: text, out: split, reference: reference).run(stoppingAfter: 4)
        let resumed = try Trainer(config: smallConfig(.localMyopic), dataset: text, out: split, resume: true, reference: reference)
        XCTAssertEqual(resumed.step, 4)
        try resumed.run()
        XCTAssertTrue(resumed.model.params.weightArray() == trainer.model.params.weightArray(), "resume differs")
    }
}
