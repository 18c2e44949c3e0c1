import Foundation

// Dimensions: N rows (B·T), O outputs per row.

/// The loss of a continuous head (docs/DESIGN.md §3): elementwise on the residual d = prediction − target,
/// averaged over all N·O elements, as PyTorch's `F.huber_loss` / `F.mse_loss` with reduction "mean".
/// The config key `myopia_loss` names it.
public enum RegressionLoss: String, Codable, Equatable, Sendable, CaseIterable {
    /// ½d² for |d| < δ, δ(|d| − ½δ) beyond (`F.huber_loss(delta=1)`, which equals `SmoothL1Loss` at δ = 1).
    case huber
    /// d².
    case mse

    /// δ of the Huber loss: PyTorch's default, and the one Wu et al. use.
    public static let huberDelta: Float = 1

    /// The loss of one element with residual d = prediction − target.
    @inline(__always)
    public func value(_ d: Float) -> Float {
        switch self {
        case .huber:
            let a = abs(d), delta = Self.huberDelta
            return a < delta ? 0.5 * d * d : delta * (a - 0.5 * delta)
        case .mse:
            return d * d
        }
    }

    /// d(loss)/dd for one element (PyTorch's subgradient: δ·sign(d) from |d| = δ on, 0 at d = 0).
    @inline(__always)
    public func derivative(_ d: Float) -> Float {
        switch self {
        case .huber:
            let delta = Self.huberDelta
            return abs(d) < delta ? d : (d > 0 ? delta : -delta)
        case .mse:
            return 2 * d
        }
    }

    /// The mean loss of `predictions` against `targets` (equal counts), accumulated in double.
    public func mean(predictions: [Float], targets: [Float]) -> Double {
        precondition(predictions.count == targets.count)
        guard !targets.isEmpty else { return .nan }
        var total = 0.0
        for i in 0..<targets.count { total += Double(value(predictions[i] - targets[i])) }
        return total / Double(targets.count)
    }

    /// rowLoss (N) = the mean over a row's O outputs, so that the mean of rowLoss over rows is the
    /// mean over all elements. Returns that mean (double accumulation, fixed order).
    @discardableResult
    func forward(rowLoss: UnsafeMutablePointer<Float>, predictions: UnsafePointer<Float>,
                 targets: UnsafePointer<Float>, rows: Int, outputs o: Int) -> Double {
        var total = 0.0
        for r in 0..<rows {
            var row: Float = 0
            for j in 0..<o { row += value(predictions[r * o + j] - targets[r * o + j]) }
            rowLoss[r] = row / Float(o)
            total += Double(rowLoss[r])
        }
        return rows > 0 ? total / Double(rows) : 0
    }

    /// dPredictions (N, O) = scale/O · loss′(prediction − target): the gradient of `scale` × (the mean
    /// over a row's outputs), row by row. `scale` is dL/dℓ_r (1/N for the mean over rows).
    func backward(dPredictions: UnsafeMutablePointer<Float>, predictions: UnsafePointer<Float>,
                  targets: UnsafePointer<Float>, rows: Int, outputs o: Int, scale: Float) {
        let s = scale / Float(o)
        for i in 0..<(rows * o) { dPredictions[i] = s * derivative(predictions[i] - targets[i]) }
    }
}
