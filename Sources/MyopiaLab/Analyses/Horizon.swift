import Foundation
import Myopia

/// The gradient horizon of a model on some text (docs/DESIGN.md §4): for each layer l = 0…L and offset
/// k = t − i, the mean of ‖∂ℓ_t/∂h_{l,i}‖ over all sequences and positions i with i + k < T; the
/// share of Σ‖g‖² at each offset; and the mean offset under that share. Exact, from the channel
/// backward (`Transformer.horizonBackward`).
public struct HorizonTable: Codable, Sendable {
    /// The file `myopia horizon` writes into a run folder (`--out`), where `myopia report` finds it.
    public static let fileName = "horizon.json"
    /// Rows l = 0…L: the residual stream entering block l; l = L is the final one, before ln_f.
    public var meanNorm: [[Double]]
    public var share: [[Double]]
    public var meanOffset: [Double]
    /// Number of (sequence, position) pairs averaged at each offset.
    public var counts: [Int]
    public var maxOffset: Int
    public var layers: Int
    public var sequences: Int
    public var seqLen: Int
    public var flow: String

    enum CodingKeys: String, CodingKey {
        case share, counts, layers, sequences, flow
        case meanNorm = "mean_norm", meanOffset = "mean_offset", maxOffset = "max_offset", seqLen = "seq_len"
    }
}

public enum Horizon {
    /// Runs over up to `sequences` consecutive windows of T+1 tokens (all if nil), `batch` at a time.
    /// Over a group of several ranks each takes a contiguous run of the batches (WindowSpans) and
    /// the per-position sums are added on every rank in one process's order: the same table.
    public static func compute(_ model: Transformer, tokens: [Int32], seqLen t: Int, maxOffset: Int? = nil,
                               sequences: Int? = nil, flow: GradientFlow = .vanilla, batch: Int = 8,
                               group: any ProcessGroup = SingleProcess(),
                               progress: (Int, Int) -> Void = { _, _ in }) -> HorizonTable {
        var windows = TokenDataset.windows(tokens, seqLen: t)
        if let sequences { windows = min(windows, sequences) }
        var inputs = [Int32](repeating: 0, count: max(1, min(batch, windows)) * t), targets = inputs
        return accumulate(model, sequences: windows, seqLen: t, maxOffset: maxOffset, flow: flow, batch: batch,
                          group: group, progress: progress) { first, count, cache in
            TokenDataset.fillWindows(tokens, seqLen: t, first: first, count: count, inputs: &inputs, targets: &targets)
            model.forward(tokens: Array(inputs[..<(count * t)]), targets: Array(targets[..<(count * t)]),
                          batch: count, seqLen: t, cache: cache)
        }
    }

    /// The horizon of a model with continuous heads on sequences of the sine task.
    public static func compute(_ model: Transformer, sine data: SineBatch, maxOffset: Int? = nil,
                               flow: GradientFlow = .vanilla, batch: Int = 8,
                               progress: (Int, Int) -> Void = { _, _ in }) -> HorizonTable {
        let t = data.seqLen, features = data.features.count / max(1, data.batch * t)
        return accumulate(model, sequences: data.batch, seqLen: t, maxOffset: maxOffset, flow: flow, batch: batch,
                          progress: progress) { first, count, cache in
            model.forward(features: Array(data.features[(first * t * features)..<((first + count) * t * features)]),
                          targets: Array(data.targets[(first * t)..<((first + count) * t)]),
                          batch: count, seqLen: t, cache: cache)
        }
    }

    /// The engine: `forward(first, count, cache)` runs sequences first..<first+count with targets.
    /// `perSequence`, if given, receives each sequence's sums of ‖g‖ over its positions, laid out
    /// (L+1, K+1) (layer l, offset k at l·(K+1) + k).
    static func accumulate(_ model: Transformer, sequences windows: Int, seqLen t: Int, maxOffset: Int?,
                           flow: GradientFlow, batch: Int, group: any ProcessGroup = SingleProcess(),
                           progress: (Int, Int) -> Void,
                           perSequence: ((Int, ArraySlice<Double>) -> Void)? = nil,
                           forward: (Int, Int, ActivationCache) -> Void) -> HorizonTable {
        let k = min(maxOffset ?? (t - 1), t - 1)
        let layers = model.config.nLayers
        let b = max(1, min(batch, windows))
        let cache = model.makeCache(batch: b, seqLen: t)
        // Per channel (b·T + t) sums, reduced in a fixed order after each batch. Over several ranks
        // every window's channels are kept, gathered, then reduced batch by batch in the same order.
        let stride = (layers + 1) * (k + 1)
        let spans = WindowSpans(batches: (windows + b - 1) / b, batch: b, windows: windows, ranks: group.size)
        let kept = group.size > 1 ? windows : b
        var channelNorm = [Double](repeating: 0, count: kept * t * stride)
        var channelSquares = channelNorm
        var sumNorm = [Double](repeating: 0, count: stride), sumSquares = sumNorm
        let c = model.config.dModel
        /// Adds one batch's channels (from element `first`) to the sums, channel by channel.
        func reduce(_ channelNorm: [Double], _ channelSquares: [Double], first: Int, windows batch: Range<Int>) {
            for ch in 0..<(batch.count * t) {
                for j in 0..<stride {
                    sumNorm[j] += channelNorm[first + ch * stride + j]
                    sumSquares[j] += channelSquares[first + ch * stride + j]
                }
            }
            if let perSequence {
                for s in 0..<batch.count {
                    var sums = [Double](repeating: 0, count: stride)
                    for tt in 0..<t {
                        for j in 0..<stride { sums[j] += channelNorm[first + (s * t + tt) * stride + j] }
                    }
                    perSequence(batch.lowerBound + s, sums[...])
                }
            }
        }
        let mine = spans.windows(of: group.rank)
        var done = mine.lowerBound
        while done < mine.upperBound {
            let nb = min(b, mine.upperBound - done)
            forward(done, nb, cache)
            let first = group.size > 1 ? done * t * stride : 0
            for i in first..<(first + nb * t * stride) { channelNorm[i] = 0; channelSquares[i] = 0 }
            channelNorm.withUnsafeMutableBufferPointer { allNorms in
                channelSquares.withUnsafeMutableBufferPointer { allSquares in
                    let norms = allNorms.baseAddress! + first, squares = allSquares.baseAddress! + first
                    model.horizonBackward(cache: cache, maxOffset: k, flow: flow) { rows in
                        let base = (rows.sequence * t + rows.target) * stride + rows.layer * (k + 1)
                        for r in 0...(rows.target - rows.firstPosition) {
                            var s = 0.0
                            let g = rows.rows + r * c
                            for j in 0..<c { s += Double(g[j]) * Double(g[j]) }
                            let offset = rows.target - rows.firstPosition - r
                            norms[base + offset] += s.squareRoot()
                            squares[base + offset] += s
                        }
                    }
                }
            }
            if group.size == 1 {
                reduce(channelNorm, channelSquares, first: 0, windows: done..<(done + nb))
            }
            done += nb
            progress(done - mine.lowerBound, mine.count)
        }
        if group.size > 1 {
            spans.gather(&channelNorm, rowWidth: t * stride, group: group)
            spans.gather(&channelSquares, rowWidth: t * stride, group: group)
            var w = 0
            while w < windows {
                let nb = min(b, windows - w)
                reduce(channelNorm, channelSquares, first: w * t * stride, windows: w..<(w + nb))
                w += nb
            }
        }
        let counts = (0...k).map { windows * (t - $0) }
        var meanNorm: [[Double]] = [], share: [[Double]] = [], meanOffset: [Double] = []
        for l in 0...layers {
            let row = (0...k).map { sumNorm[l * (k + 1) + $0] / Double(max(1, counts[$0])) }
            let total = (0...k).reduce(0.0) { $0 + sumSquares[l * (k + 1) + $1] }
            let s = (0...k).map { total > 0 ? sumSquares[l * (k + 1) + $0] / total : 0 }
            meanNorm.append(row)
            share.append(s)
            meanOffset.append(s.enumerated().reduce(0) { $0 + Double($1.offset) * $1.element })
        }
        return HorizonTable(meanNorm: meanNorm, share: share, meanOffset: meanOffset, counts: counts, maxOffset: k,
                            layers: layers, sequences: windows, seqLen: t, flow: flow.description)
    }

    /// A readable layer × offset table of mean norms, with each layer's mean offset.
    public static func format(_ table: HorizonTable, columns: Int = 12) -> String {
        let shown = min(table.maxOffset + 1, columns)
        var lines: [String] = []
        let header = "layer   " + (0..<shown).map { String(repeating: " ", count: max(0, 9 - "k=\($0)".count)) + "k=\($0)" }.joined()
            + (shown < table.maxOffset + 1 ? "      …" : "") + "   mean k"
        lines.append(header)
        for (l, row) in table.meanNorm.enumerated() {
            let name = l == table.layers ? "final" : "\(l)"
            lines.append(name.padding(toLength: 8, withPad: " ", startingAt: 0)
                + row.prefix(shown).map { String(format: "%9.4f", $0) }.joined()
                + (shown < row.count ? "      …" : "") + String(format: "   %6.2f", table.meanOffset[l]))
        }
        return lines.joined(separator: "\n")
    }
}
