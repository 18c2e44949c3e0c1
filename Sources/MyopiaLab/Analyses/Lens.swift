import Foundation
import Myopia
import MyopiaKernels

// Dimensions: B windows per forward pass, T positions, C d_model, V vocab, R rows unembedded at once.

/// The logit lens (docs/DESIGN.md §5): the model's own final norm and unembedding applied to the residual
/// stream h_{l,i} of every layer l, scored against the token at i+1+k for each offset k. Layer L (the
/// residual after the last block) at offset 0 is the model's own prediction: its loss is the loss
/// `myopia eval` reports on the same windows.
public struct LensTable: Codable, Sendable {
    /// The file `myopia lens` writes into a run folder (`--out`), where `myopia report` finds it.
    public static let fileName = "lens.json"
    /// Residual streams: l < L enters block l; l = L is the final one, before the final norm.
    public var layers: [Int]
    public var offsets: [Int]
    /// Mean cross-entropy (nats) of the token at i+1+k under softmax(unembed(h_{l,i})), [layer][offset].
    public var loss: [[Double]]
    /// Share of positions whose arg-max token is the token at i+1+k, [layer][offset].
    public var accuracy: [[Double]]
    /// Predictions scored at each offset (positions whose i+1+k is still inside the file).
    public var counts: [Int]
    /// The unigram distribution of the whole file (add-one smoothing) scored on the same targets:
    /// what a lens row must beat to say anything about the token.
    public var unigramLoss: [Double]
    public var modelLayers: Int
    public var windows: Int
    public var seqLen: Int

    enum CodingKeys: String, CodingKey {
        case layers, offsets, loss, accuracy, counts, windows
        case unigramLoss = "unigram_loss", modelLayers = "model_layers", seqLen = "seq_len"
    }
}

public enum LogitLens {
    /// Scores `windows` consecutive windows of T+1 tokens (all if nil) — the windows `Evaluation.run`
    /// uses — at residual streams `layers` (default 0…L) and `offsets`. The target of position i of
    /// window w at offset k is tokens[w·(T+1) + i + 1 + k]: the text goes on past the window's end.
    /// Over a group of several ranks each scores a contiguous run of the batches (WindowSpans); the
    /// rows' losses and hits are gathered and added in one process's order: the same table.
    public static func compute(_ model: Transformer, tokens: [Int32], seqLen t: Int, layers requested: [Int]? = nil,
                               offsets: [Int], windows maxWindows: Int? = nil, batch: Int = 8,
                               group: any ProcessGroup = SingleProcess(),
                               progress: (Int, Int) -> Void = { _, _ in }) -> LensTable {
        let config = model.config
        precondition(!config.isContinuous, "the logit lens needs a language model")
        let layers = requested ?? Array(0...config.nLayers)
        precondition(!layers.isEmpty && layers.allSatisfy { (0...config.nLayers).contains($0) })
        precondition(!offsets.isEmpty && offsets.allSatisfy { $0 >= 0 })
        var windows = TokenDataset.windows(tokens, seqLen: t)
        if let maxWindows { windows = min(windows, maxWindows) }
        let b = max(1, min(batch, windows)), c = config.dModel, v = config.vocabSize
        let cache = model.makeCache(batch: b, seqLen: t)
        let deepest = layers.max()!
        // Rows per unembedding: bounds the (R, V) logits buffer (SmolLM2: 256 × 49152 floats = 50 MB).
        let rowsPerChunk = max(16, min(b * t, (1 << 24) / max(1, v)))
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: rowsPerChunk * v)
        defer { logits.deallocate() }
        let k = offsets.count
        // Per row, per offset: the loss and whether the arg-max was right (NaN loss: no target).
        var rowLoss = [Float](repeating: 0, count: rowsPerChunk * k)
        var rowHit = [UInt8](repeating: 0, count: rowsPerChunk * k)
        var lossSum = [[Double]](repeating: [Double](repeating: 0, count: k), count: layers.count)
        var hits = [[Int]](repeating: [Int](repeating: 0, count: k), count: layers.count)
        var counts = [Int](repeating: 0, count: k)
        var inputs = [Int32](repeating: 0, count: b * t), unused = inputs
        var targets = [Int32](repeating: -1, count: b * t * k)   // (rows, K): token at i+1+k or −1
        // Several ranks: every row's loss and hit, (windows·T, layers, K), kept to be gathered.
        let spans = WindowSpans(batches: (windows + b - 1) / b, batch: b, windows: windows, ranks: group.size)
        let keeping = group.size > 1, width = t * layers.count * k
        var keptLoss = [Float](repeating: 0, count: keeping ? windows * width : 0)
        var keptHit = [UInt8](repeating: 0, count: keptLoss.count)
        let target = { (row: Int, j: Int) -> Int32 in
            let index = (row / t) * (t + 1) + row % t + 1 + offsets[j]
            return index < tokens.count ? tokens[index] : -1
        }
        for row in 0..<(windows * t) { for j in 0..<k where target(row, j) >= 0 { counts[j] += 1 } }
        let mine = spans.windows(of: group.rank)
        var done = mine.lowerBound
        while done < mine.upperBound {
            let nb = min(b, mine.upperBound - done), n = nb * t
            TokenDataset.fillWindows(tokens, seqLen: t, first: done, count: nb, inputs: &inputs, targets: &unused)
            for r in 0..<n {
                for j in 0..<k { targets[r * k + j] = target(done * t + r, j) }
            }
            inputs.withUnsafeBufferPointer {
                model.forwardResiduals(tokens: $0.baseAddress!, batch: nb, seqLen: t, blocks: deepest, cache: cache)
            }
            for (li, l) in layers.enumerated() {
                cache.withResidual(layer: l) { h in
                    var r0 = 0
                    while r0 < n {
                        let rows = min(rowsPerChunk, n - r0)
                        model.unembed(h.baseAddress! + r0 * c, rows: rows, logits: logits)
                        targets.withUnsafeBufferPointer { tg in
                            rowLoss.withUnsafeMutableBufferPointer { lossB in
                                rowHit.withUnsafeMutableBufferPointer { hitB in
                                    score(logits: logits, rows: rows, v: v, targets: tg.baseAddress! + r0 * k, offsets: k,
                                          loss: lossB.baseAddress!, hit: hitB.baseAddress!)
                                }
                            }
                        }
                        // Summed serially in row order: the table does not depend on the thread count.
                        for r in 0..<rows {
                            for j in 0..<k where targets[(r0 + r) * k + j] >= 0 {
                                if keeping {
                                    let at = ((done * t + r0 + r) * layers.count + li) * k + j
                                    keptLoss[at] = rowLoss[r * k + j]
                                    keptHit[at] = rowHit[r * k + j]
                                } else {
                                    lossSum[li][j] += Double(rowLoss[r * k + j])
                                    hits[li][j] += Int(rowHit[r * k + j])
                                }
                            }
                        }
                        r0 += rows
                    }
                }
            }
            done += nb
            progress(done - mine.lowerBound, mine.count)
        }
        if keeping {
            spans.gather(&keptLoss, rowWidth: width, group: group)
            spans.gather(&keptHit, rowWidth: width, group: group)
            for li in layers.indices {
                for row in 0..<(windows * t) {
                    for j in 0..<k where target(row, j) >= 0 {
                        lossSum[li][j] += Double(keptLoss[(row * layers.count + li) * k + j])
                        hits[li][j] += Int(keptHit[(row * layers.count + li) * k + j])
                    }
                }
            }
        }
        var unigram: [Double] = []
        for j in 0..<k {
            var scored: [Int32] = []
            for w in 0..<windows {
                for i in 0..<t {
                    let index = w * (t + 1) + i + 1 + offsets[j]
                    if index < tokens.count { scored.append(tokens[index]) }
                }
            }
            unigram.append(TokenStatistics.unigramCrossEntropy(train: tokens, eval: scored, vocabSize: v))
        }
        return LensTable(layers: layers, offsets: offsets,
                         loss: lossSum.map { row in row.enumerated().map { $1 / Double(max(1, counts[$0])) } },
                         accuracy: hits.map { row in row.enumerated().map { Double($1) / Double(max(1, counts[$0])) } },
                         counts: counts, unigramLoss: unigram, modelLayers: config.nLayers, windows: windows, seqLen: t)
    }

    /// For each row of logits (rows, V): ℓ = logZ − logit[target] for each of the K targets, and
    /// whether the arg-max (lowest id on ties) is the target. The logits are destroyed.
    /// The loss is formed as `CrossEntropy` forms it (fp32 log-partition from the shared softmax), so
    /// the final layer at offset 0 reproduces the model's own losses.
    static func score(logits: UnsafeMutablePointer<Float>, rows: Int, v: Int, targets: UnsafePointer<Int32>, offsets k: Int,
                      loss: UnsafeMutablePointer<Float>, hit: UnsafeMutablePointer<UInt8>) {
        Parallel.forEach((rows + 15) / 16) { chunk in
            for r in (chunk * 16)..<min(rows, chunk * 16 + 16) {
                let x = logits + r * v
                var best = 0
                var bestValue = x[0]
                for j in 1..<v where x[j] > bestValue { best = j; bestValue = x[j] }
                // The target logits go into `loss` before the softmax overwrites the row.
                for j in 0..<k {
                    let target = targets[r * k + j]
                    loss[r * k + j] = target >= 0 ? x[Int(target)] : 0
                    hit[r * k + j] = target >= 0 && Int(target) == best ? 1 : 0
                }
                let logZ = RowOps.softmax(x, count: v)
                for j in 0..<k where targets[r * k + j] >= 0 { loss[r * k + j] = logZ - loss[r * k + j] }
            }
        }
    }

    /// A readable layer × offset table of losses (and accuracies), with the unigram row.
    public static func format(_ table: LensTable) -> String {
        var lines: [String] = []
        let head = "layer       " + table.offsets.map { pad("k=\($0) loss", 12) + pad("acc", 8) }.joined()
        lines.append(head)
        for (li, l) in table.layers.enumerated() {
            let name = l == table.modelLayers ? "\(l) (final)" : "\(l)"
            lines.append(name.padding(toLength: 12, withPad: " ", startingAt: 0) + table.offsets.indices.map {
                pad(String(format: "%.3f", table.loss[li][$0]), 12) + pad(String(format: "%.1f%%", 100 * table.accuracy[li][$0]), 8)
            }.joined())
        }
        lines.append("unigram     " + table.offsets.indices.map { pad(String(format: "%.3f", table.unigramLoss[$0]), 12) + pad("", 8) }.joined())
        return lines.joined(separator: "\n")
    }

    static func pad(_ s: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - s.count)) + s
    }
}
