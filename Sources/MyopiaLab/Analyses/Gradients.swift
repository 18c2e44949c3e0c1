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

    /// Leaves the gradient in `model.params.grads`. The windows go in batches of `batch`; each
    /// batch's gradient is computed into a zeroed buffer and the batches' gradients are added left
    /// to right in batch order (OrderedBatchSum), so that the bits do not depend on which batches
    /// share a buffer: in a group of several ranks batch k is rank (k mod N)'s and every rank ends
    /// with one process's gradient and loss. Every rank of `group` must call it.
    public static func compute(_ model: Transformer, tokens: [Int32], seqLen t: Int, flow: GradientFlow,
                               batch: Int = 8, maxWindows: Int? = nil, group: any ProcessGroup = SingleProcess()) -> Result {
        var windows = TokenDataset.windows(tokens, seqLen: t)
        if let maxWindows { windows = min(windows, maxWindows) }
        let saved = model.flow
        model.flow = flow
        defer { model.flow = saved }
        let params = model.params
        params.zeroGrads()
        guard windows > 0 else { return Result(loss: .nan, tokens: 0, windows: 0) }
        let b = max(1, min(batch, windows)), batches = (windows + b - 1) / b
        let sum = OrderedBatchSum(count: params.count, batches: batches, group: group)
        let cache = model.makeCache(batch: b, seqLen: t)
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        // Each batch's mean loss times its windows (this rank's batches, then every rank's).
        var weighted = [Double](repeating: 0, count: batches)
        for round in 0..<sum.rounds {
            if let k = sum.batch(of: group.rank, inRound: round) {
                let w = k * b, nb = min(b, windows - w)
                TokenDataset.fillWindows(tokens, seqLen: t, first: w, count: nb, inputs: &inputs, targets: &targets)
                let loss = model.forward(tokens: Array(inputs[..<(nb * t)]), targets: Array(targets[..<(nb * t)]),
                                         batch: nb, seqLen: t, cache: cache)!
                weighted[k] = Double(loss) * Double(nb)
                params.zeroGrads()
                // backward differentiates this batch's mean; weight it by its share of all windows.
                model.backward(cache: cache, lossScale: Float(nb) / Float(windows))
            }
            sum.add(round: round, params.grads)
        }
        sum.finish(into: params.grads)
        let n = group.size
        if n > 1 {
            var all = [Double](repeating: 0, count: n * batches)
            group.allGather(doubles: weighted, count: batches, into: &all)
            for k in 0..<batches { weighted[k] = all[(k % n) * batches + k] }
        }
        var total = 0.0
        for k in 0..<batches { total += weighted[k] }
        return Result(loss: total / Double(windows), tokens: windows * t, windows: windows)
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
