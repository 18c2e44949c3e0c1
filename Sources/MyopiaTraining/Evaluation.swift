import Foundation
import MyopiaModel
import MyopiaData

/// Next-token loss over a token sequence cut into consecutive, non-overlapping windows of T+1 tokens
/// (T predictions each; a shorter tail is dropped) — the definition `myopia eval` reports.
public struct EvaluationResult: Codable, Equatable, Sendable {
    /// Mean cross-entropy per prediction, nats.
    public var loss: Double
    /// Number of predictions.
    public var tokens: Int
    public var windows: Int
    /// Mean loss at each position 0..<T of the window.
    public var positionLoss: [Double]

    enum CodingKeys: String, CodingKey {
        case loss, tokens, windows
        case positionLoss = "position_loss"
    }
}

public enum Evaluation {
    /// Evaluates `model` on at most `maxWindows` windows (all if nil), `batch` windows per forward.
    public static func run(_ model: Transformer, tokens: [Int32], seqLen t: Int, batch: Int = 8,
                           maxWindows: Int? = nil, cache reuse: ActivationCache? = nil) -> EvaluationResult {
        var windows = TokenDataset.windows(tokens, seqLen: t)
        if let maxWindows { windows = min(windows, maxWindows) }
        let b = max(1, min(batch, windows))
        let cache = reuse.flatMap { $0.capacityB >= b && $0.capacityT >= t ? $0 : nil }
            ?? model.makeCache(batch: b, seqLen: t)
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        var total = 0.0
        var position = [Double](repeating: 0, count: t)
        var w = 0
        while w < windows {
            let nb = min(b, windows - w)
            TokenDataset.fillWindows(tokens, seqLen: t, first: w, count: nb, inputs: &inputs, targets: &targets)
            model.forward(tokens: Array(inputs[..<(nb * t)]), targets: Array(targets[..<(nb * t)]),
                          batch: nb, seqLen: t, cache: cache)
            for i in 0..<nb {
                for j in 0..<t {
                    let l = Double(cache.rowLoss[i * t + j])
                    total += l
                    position[j] += l
                }
            }
            w += nb
        }
        let n = windows * t
        return EvaluationResult(loss: n > 0 ? total / Double(n) : .nan, tokens: n, windows: windows,
                                positionLoss: position.map { windows > 0 ? $0 / Double(windows) : .nan })
    }
}
