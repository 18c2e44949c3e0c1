// TrainingStep: the one optimiser step every trainer runs — the trainer, the synthetic tasks and
// the bench: zero the gradients, forward, backward, check that the loss and the gradient are
// finite, clip the global norm and update with AdamW (clipping inside the optimiser's pass, the
// same bits as clip-then-update), then check that what a checkpoint would save is finite.
//
// It allocates nothing: the forward pass comes in as a non-escaping closure and the timestamps of
// the phases are plain integers.

import Dispatch
import MyopiaModel

public final class TrainingStep {
    public let model: Transformer
    public let optimizer: AdamW
    /// The global gradient norm is clipped to this value.
    public let clip: Double

    /// Test hook: called after each backward pass with the step (from 1) and the model, before
    /// the gradients are checked (tests plant a NaN here).
    public var afterBackward: ((Int, Transformer) -> Void)?

    /// Monotonic timestamps (ns) of the last step's phases: before zeroing, after zeroing, after
    /// forward, after backward, after the update. Read by the bench.
    public struct Phases: Sendable {
        public var start: UInt64 = 0, zeroed: UInt64 = 0, forwardDone: UInt64 = 0, backwardDone: UInt64 = 0, end: UInt64 = 0
    }
    public private(set) var phases = Phases()

    /// What a step measured.
    public struct Result: Sendable {
        public let loss: Float
        public let gradNorm: Double
    }

    public init(model: Transformer, optimizer: AdamW, clip: Double) {
        self.model = model
        self.optimizer = optimizer
        self.clip = clip
    }

    /// Runs optimiser step `step` (counted from 1) at learning rate `lr`. `forward` runs the model's
    /// forward pass with targets on the step's batch into `cache` and returns the mean loss. A non-finite loss,
    /// gradient or updated value throws `TrainingError.nonFinite` naming what went wrong (the first
    /// offending tensor and element) and `lastCheckpoint`, the newest checkpoint left to resume from.
    @discardableResult
    public func run(step: Int, lr: Double, cache: ActivationCache, lastCheckpoint: String? = nil,
                    forward: () -> Float?) throws -> Result {
        try run(step: step, lr: lr, cache: cache, lastCheckpoint: lastCheckpoint, forward: forward) {
            model.backward(cache: cache)
        }
    }

    /// `run(step:lr:cache:lastCheckpoint:forward:)` with the backward pass given too: `backward`
    /// accumulates the gradient of the step's loss into the zeroed `model.params.grads` (a training
    /// game's: `model.backward(cache:adjustingLogitGradient:)` with its policy term).
    @discardableResult
    public func run(step: Int, lr: Double, cache: ActivationCache, lastCheckpoint: String? = nil,
                    forward: () -> Float?, backward: () -> Void) throws -> Result {
        phases.start = DispatchTime.now().uptimeNanoseconds
        model.params.zeroGrads()
        phases.zeroed = DispatchTime.now().uptimeNanoseconds
        let loss = forward() ?? .nan
        phases.forwardDone = DispatchTime.now().uptimeNanoseconds
        guard loss.isFinite else {
            throw TrainingError.nonFinite(step: step, what: "the training loss (\(loss))", lastCheckpoint: lastCheckpoint)
        }
        backward()
        phases.backwardDone = DispatchTime.now().uptimeNanoseconds
        afterBackward?(step, model)
        // A non-finite gradient makes the norm non-finite; it is named before the optimiser's
        // pass, where clipping would spread it to every element. (The searches for names run
        // only once something is wrong: the step itself makes no extra pass over memory.)
        let params = model.params
        let norm = GradientClipping.globalNorm(params)
        guard norm.isFinite else {
            let what = Self.firstNonFinite(params, params.grads).map { "the gradient of \($0)" }
                ?? "the gradient norm (\(norm); every element is finite, their squares overflow)"
            throw TrainingError.nonFinite(step: step, what: what, lastCheckpoint: lastCheckpoint)
        }
        // Clipping happens inside the optimiser's pass (the same bits as clip, then update),
        // which also checks that what the next checkpoint would save is finite.
        let finite = optimizer.update(params, lr: lr, step: step, gradScale: GradientClipping.factor(norm: norm, maxNorm: clip))
        phases.end = DispatchTime.now().uptimeNanoseconds
        if !finite, let bad = Self.firstNonFiniteSaved(params) {
            throw TrainingError.nonFinite(step: step, what: "\(bad) after the update (lr \(lr))", lastCheckpoint: lastCheckpoint)
        }
        return Result(loss: loss, gradNorm: norm)
    }

    /// "the weight of NAME (…)" (or "the AdamW first moment of", "… second moment of") for the first
    /// non-finite value a checkpoint would save, weights first; nil when all are finite. Checked
    /// buffer by buffer, with no array of them (it runs only after the optimiser's pass found a
    /// non-finite value, but a step allocates nothing either way).
    static func firstNonFiniteSaved(_ store: ParameterStore) -> String? {
        if let bad = firstNonFinite(store, store.weights) { return "the weight of \(bad)" }
        if let m = store.moment1, let bad = firstNonFinite(store, m) { return "the AdamW first moment of \(bad)" }
        if let v = store.moment2, let bad = firstNonFinite(store, v) { return "the AdamW second moment of \(bad)" }
        return nil
    }

    /// "NAME (nan at element I)" for the first parameter, in registry order, whose values in
    /// `buffer` (weights, gradients or a moment) are not all finite; nil when all are.
    static func firstNonFinite(_ store: ParameterStore, _ buffer: UnsafeMutablePointer<Float>) -> String? {
        guard !allFinite(buffer, count: store.count) else { return nil }
        for e in store.entries {
            let p = buffer + e.offset
            for i in 0..<e.count where !p[i].isFinite {
                return "\(e.name) (\(p[i]) at element \(i) of \(e.shape))"
            }
        }
        return nil
    }

    /// One SIMD pass: x − x is 0 for a finite x and NaN for ±inf or NaN, so the sum is NaN exactly
    /// when some element is not finite (huge finite values cannot overflow it).
    static func allFinite(_ p: UnsafePointer<Float>, count: Int) -> Bool {
        var acc = SIMD8<Float>(repeating: 0)
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            acc += v - v
            i += 8
        }
        var tail: Float = 0
        while i < count { tail += p[i] - p[i]; i += 1 }
        return (acc.sum() + tail).isFinite
    }
}
