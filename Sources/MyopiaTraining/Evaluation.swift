import Foundation
import MyopiaDistributed
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
    /// In a group of several ranks each computes a contiguous run of the batches (the same batches
    /// one process forms) and every rank receives every window's losses, added in window order:
    /// the same figures on any number of ranks. Every rank of `group` must call it.
    public static func run(_ model: Transformer, tokens: [Int32], seqLen t: Int, batch: Int = 8,
                           maxWindows: Int? = nil, cache reuse: ActivationCache? = nil,
                           group: any ProcessGroup = SingleProcess()) -> EvaluationResult {
        var windows = TokenDataset.windows(tokens, seqLen: t)
        if let maxWindows { windows = min(windows, maxWindows) }
        let b = max(1, min(batch, windows))
        let cache = reuse.flatMap { $0.capacityB >= b && $0.capacityT >= t ? $0 : nil }
            ?? model.makeCache(batch: b, seqLen: t)
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        // Row losses (windows, T): this rank's batches, then every rank's.
        var losses = [Float](repeating: 0, count: windows * t)
        let batches = (windows + b - 1) / b
        let spans = WindowSpans(batches: batches, batch: b, windows: windows, ranks: group.size)
        let mine = spans.windows(of: group.rank)
        var w = mine.lowerBound
        while w < mine.upperBound {
            let nb = min(b, mine.upperBound - w)
            TokenDataset.fillWindows(tokens, seqLen: t, first: w, count: nb, inputs: &inputs, targets: &targets)
            model.forward(tokens: Array(inputs[..<(nb * t)]), targets: Array(targets[..<(nb * t)]),
                          batch: nb, seqLen: t, cache: cache)
            for i in 0..<(nb * t) { losses[w * t + i] = cache.rowLoss[i] }
            w += nb
        }
        if group.size > 1 { spans.gather(&losses, rowWidth: t, group: group) }
        var total = 0.0
        var position = [Double](repeating: 0, count: t)
        for i in 0..<windows {
            for j in 0..<t {
                let l = Double(losses[i * t + j])
                total += l
                position[j] += l
            }
        }
        let n = windows * t
        return EvaluationResult(loss: n > 0 ? total / Double(n) : .nan, tokens: n, windows: windows,
                                positionLoss: position.map { windows > 0 ? $0 / Double(windows) : .nan })
    }
}

/// Windows in batches of `batch`, the batches spread over the ranks in contiguous runs: rank r
/// takes batches ⌊r·n/N⌋ ..< ⌊(r+1)·n/N⌋ of the n. The sharded analyses cut their windows so,
/// each batch formed as one process forms it, and gather per-window results in window order.
public struct WindowSpans: Sendable {
    public let batches: Int, batch: Int, windows: Int, ranks: Int

    public init(batches: Int, batch: Int, windows: Int, ranks: Int) {
        self.batches = batches
        self.batch = batch
        self.windows = windows
        self.ranks = ranks
    }

    /// The windows rank `rank` computes.
    public func windows(of rank: Int) -> Range<Int> {
        let first = rank * batches / ranks, last = (rank + 1) * batches / ranks
        return min(windows, first * batch)..<min(windows, last * batch)
    }

    /// Every rank's rows of `values` ((windows, rowWidth), each rank's own rows filled) to every rank.
    public func gather<Element: BitwiseCopyable>(_ values: inout [Element], rowWidth: Int, group: any ProcessGroup) {
        let size = MemoryLayout<Element>.stride
        let counts = (0..<ranks).map { Int32(windows(of: $0).count * rowWidth * size) }
        let offsets = (0..<ranks).map { Int32(windows(of: $0).lowerBound * rowWidth * size) }
        let own = windows(of: group.rank)
        let mine = Array(values[(own.lowerBound * rowWidth)..<(own.upperBound * rowWidth)])
        mine.withUnsafeBytes { send in
            values.withUnsafeMutableBytes { receive in
                group.allGather(send.baseAddress ?? UnsafeRawPointer(bitPattern: 4)!, count: send.count,
                                into: receive.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 4)!, counts: counts, offsets: offsets)
            }
        }
    }
}
