import Foundation
import MyopiaKernels
import MyopiaModel

/// AdamW with decoupled weight decay, step for step the arithmetic of `torch.optim.AdamW`
/// (single-tensor path): p ← p·(1 − lr·wd); m ← lerp(m, g, 1 − β1); v ← β2·v + (1 − β2)·g²;
/// p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε).
public struct AdamW: Codable, Equatable, Sendable {
    public var beta1: Double = 0.9
    public var beta2: Double = 0.95
    public var eps: Double = 1e-8
    public var weightDecay: Double = 0.1
    /// Parameters whose name contains one of these never decay. Parameters with fewer than two
    /// dimensions (biases, norm gains) never decay either, as in GPT-2 / nanoGPT practice.
    public var noDecay: [String] = []

    public init(beta1: Double = 0.9, beta2: Double = 0.95, eps: Double = 1e-8, weightDecay: Double = 0.1,
                noDecay: [String] = []) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        self.noDecay = noDecay
    }

    public func decays(_ e: ParameterStore.Entry) -> Bool {
        e.shape.count >= 2 && !noDecay.contains { e.name.contains($0) }
    }

    /// One update at 1-based step `step` with learning rate `lr`, over every registered parameter.
    /// With `gradScale` ≠ 1 the gradients are first scaled by it (and left scaled), in the same pass:
    /// `update(store, lr:, step:, gradScale: GradientClipping.factor(norm:maxNorm:))` is bit for bit
    /// `GradientClipping.clip` followed by `update`, with one trip through memory instead of two.
    /// Returns true when every weight and moment is finite after the update (checked in that pass).
    @discardableResult
    public func update(_ store: ParameterStore, lr: Double, step: Int, gradScale: Float = 1) -> Bool {
        store.ensureMoments()
        guard let m = store.moment1, let v = store.moment2 else { return true }
        let w = store.weights, g = store.grads
        var allFinite = true
        for e in store.entries {
            let decay = decays(e) ? Float(1 - lr * weightDecay) : 1
            let k = AdamWConstants(gradScale: gradScale, decay: decay, beta1: beta1, beta2: beta2, eps: eps, lr: lr, step: step)
            let finite = RowOps.adamW(weights: w + e.offset, grads: g + e.offset, moment1: m + e.offset,
                                      moment2: v + e.offset, count: e.count, k)
            allFinite = allFinite && finite
        }
        return allFinite
    }
}

/// Gradient clipping by global norm (`torch.nn.utils.clip_grad_norm_`): returns the norm before
/// clipping and scales the gradients by max/(norm + 1e-6) when that is below one.
public enum GradientClipping {
    public static func globalNorm(_ store: ParameterStore) -> Double {
        RowOps.sumOfSquares(store.grads, count: store.count).squareRoot()
    }

    @discardableResult
    public static func clip(_ store: ParameterStore, maxNorm: Double) -> Double {
        let norm = globalNorm(store)
        let s = factor(norm: norm, maxNorm: maxNorm)
        if s != 1 { RowOps.scale(store.grads, count: store.count, by: s) }
        return norm
    }

    /// What `clip` multiplies the gradients by: max/(norm + 1e-6) when that is below one, else 1.
    /// Pass it to `AdamW.update(gradScale:)` to clip inside the optimiser's pass.
    public static func factor(norm: Double, maxNorm: Double) -> Float {
        let coef = maxNorm / (norm + 1e-6)
        return coef < 1 ? Float(coef) : 1
    }
}

/// Linear warmup to `maxLR`, then cosine decay to `minLR` at the last step.
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    public var maxLR: Double
    public var minLR: Double
    public var warmupSteps: Int
    public var totalSteps: Int

    public init(maxLR: Double, minLR: Double, warmupSteps: Int, totalSteps: Int) {
        self.maxLR = maxLR
        self.minLR = minLR
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// Learning rate of the update with 0-based index `step`.
    public func rate(at step: Int) -> Double {
        if step < warmupSteps { return maxLR * Double(step + 1) / Double(warmupSteps) }
        let progress = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
        return minLR + 0.5 * (maxLR - minLR) * (1 + Foundation.cos(Double.pi * min(1, progress)))
    }
}
