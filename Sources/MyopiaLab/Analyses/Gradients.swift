import Foundation
import Myopia

/// The gradient of `myopia eval`'s loss (mean cross-entropy over consecutive, non-overlapping
/// windows of T+1 tokens) with respect to every parameter, under a chosen gradient flow.
public enum Gradients {
    public struct Result {
        public let loss: Double
        public let tokens: Int
        public let windows: Int
    }

    /// Accumulates the gradient into `model.params.grads` (zeroed first).
    public static func compute(_ model: Transformer, tokens: [Int32], seqLen t: Int, flow: GradientFlow,
                               batch: Int = 8, maxWindows: Int? = nil) -> Result {
        var windows = TokenDataset.windows(tokens, seqLen: t)
        if let maxWindows { windows = min(windows, maxWindows) }
        let saved = model.flow
        model.flow = flow
        defer { model.flow = saved }
        model.params.zeroGrads()
        let b = max(1, min(batch, windows))
        let cache = model.makeCache(batch: b, seqLen: t)
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        var total = 0.0
        var w = 0
        while w < windows {
            let nb = min(b, windows - w)
            TokenDataset.fillWindows(tokens, seqLen: t, first: w, count: nb, inputs: &inputs, targets: &targets)
            let loss = model.forward(tokens: Array(inputs[..<(nb * t)]), targets: Array(targets[..<(nb * t)]),
                                     batch: nb, seqLen: t, cache: cache)!
            total += Double(loss) * Double(nb)
            // backward differentiates this batch's mean; weight it by its share of all windows.
            model.backward(cache: cache, lossScale: Float(nb) / Float(windows))
            w += nb
        }
        return Result(loss: windows > 0 ? total / Double(windows) : .nan, tokens: windows * t, windows: windows)
    }

    /// Writes the gradients under the checkpoint's own key names (F32 safetensors).
    public static func save(_ model: Transformer, to url: URL, metadata: [String: String]) throws {
        let store = model.params
        let tensors = store.entries.map { e in
            (name: model.checkpointKeys[e.name] ?? e.name, shape: e.shape, data: store.buffer(store.grads, e))
        }
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: url)
    }
}
