import Foundation
import Myopia

// Dimensions: N positions (rows), T window length, C d_model, K offsets, M classes (top N + other).

/// What a probe reads, with no model attached: per position, its hidden state at each probed layer,
/// the token at the position, and the tokens that follow. A model fills it with `TokenProbes.extract`;
/// tests build it by hand (planted structure, noise).
public struct ProbeData: Sendable {
    /// One matrix per probed layer, all with the same rows.
    public var features: [FeatureMatrix]
    /// The token at position i of each row (the input the hidden state sits on).
    public var current: [Int32]
    /// future[j][row]: the token at i+1+offsets[j], or −1 where the text has ended.
    public var future: [[Int32]]
    /// The window each row came from: the held-out split keeps a window's rows together.
    public var group: [Int]

    public init(features: [FeatureMatrix], current: [Int32], future: [[Int32]], group: [Int]) {
        precondition(features.allSatisfy { $0.rows == current.count } && future.allSatisfy { $0.count == current.count }
                     && group.count == current.count)
        self.features = features
        self.current = current
        self.future = future
        self.group = group
    }
}

/// The probe table (docs/DESIGN.md §5): for each probed layer and offset k, a linear softmax probe from
/// h_{l,i} to the token at i+1+k, scored on held-out windows beside two baselines on the same rows.
/// Classes are the `top` most frequent target tokens of the training rows plus "other" for the rest;
/// every predictor (probe and baselines) is scored over these classes, so the numbers compare.
public struct ProbeTable: Codable, Sendable {
    /// The file `myopia probe` writes into a run folder (`--out`), where `myopia report` finds it.
    public static let fileName = "probe.json"
    /// Residual streams probed: l < L enters block l; l = L is the final one, before the final norm.
    public var layers: [Int]
    public var offsets: [Int]
    /// Held-out cross-entropy (nats) and top-1 accuracy of the probe, [layer][offset].
    public var loss: [[Double]]
    public var accuracy: [[Double]]
    /// The probe's cross-entropy on training rows, [layer][offset].
    public var trainLoss: [[Double]]
    /// The epoch whose weights each probe kept by early stopping (0: the class frequencies), [layer][offset].
    public var epochs: [[Int]]
    /// The class frequencies of the training rows (add-one smoothing), per offset.
    public var unigramLoss: [Double]
    public var unigramAccuracy: [Double]
    /// The best predictor from the current token alone: p(y | x_i) counted on the training rows,
    /// smoothed toward the unigram with a strength chosen by 2-fold cross-validation on them.
    public var currentTokenLoss: [Double]
    public var currentTokenAccuracy: [Double]
    public var currentTokenSmoothing: [Double]
    /// Classes: `top` tokens plus "other".
    public var classes: Int
    public var top: Int
    /// Share of held-out targets (offset offsets[0]) that are one of the top tokens, not "other".
    public var coverage: Double
    /// Training positions (of which every tenth window validates the probes' early stopping) and
    /// held-out positions.
    public var trainPositions: Int
    public var heldOutPositions: Int
    /// Held-out rows scored at each offset.
    public var counts: [Int]
    public var settings: ProbeSettings
    public var seconds: Double

    enum CodingKeys: String, CodingKey {
        case layers, offsets, loss, accuracy, epochs, classes, top, coverage, counts, settings, seconds
        case trainLoss = "train_loss", unigramLoss = "unigram_loss", unigramAccuracy = "unigram_accuracy"
        case currentTokenLoss = "current_token_loss", currentTokenAccuracy = "current_token_accuracy"
        case currentTokenSmoothing = "current_token_smoothing"
        case trainPositions = "train_positions", heldOutPositions = "held_out_positions"
    }
}

public enum TokenProbes {
    /// The hidden states of consecutive windows of T+1 tokens (the windows `myopia eval` uses), at
    /// most `positions` of them rounded up to whole windows: one forward pass per batch of windows
    /// serves every layer. Layers are residual streams 0…L. The token at i+1+k is read from the text,
    /// past the window's end where need be. Over a group of several ranks each runs a contiguous run
    /// of the batches (WindowSpans); every window's hidden states reach every rank and are taken in
    /// batch order, as one process takes them: the same features (then the same probes).
    public static func extract(_ model: Transformer, tokens: [Int32], seqLen t: Int, layers: [Int], offsets: [Int],
                               positions: Int? = nil, batch: Int = 8, group: any ProcessGroup = SingleProcess(),
                               progress: (Int, Int) -> Void = { _, _ in }) -> ProbeData {
        let config = model.config
        precondition(!config.isContinuous && !layers.isEmpty && layers.allSatisfy { (0...config.nLayers).contains($0) })
        var windows = TokenDataset.windows(tokens, seqLen: t)
        if let positions { windows = min(windows, (positions + t - 1) / t) }
        let b = max(1, min(batch, windows))
        let cache = model.makeCache(batch: b, seqLen: t)
        var features = layers.map { _ in FeatureMatrix(width: config.dModel) }
        for j in features.indices { features[j].reserve(rows: windows * t) }
        var current: [Int32] = [], windowOfRow: [Int] = []
        var future = offsets.map { _ in [Int32]() }
        var inputs = [Int32](repeating: 0, count: b * t), unused = inputs
        // Several ranks: this rank's hidden states, (windows·T, C) per layer, then every rank's.
        let spans = WindowSpans(batches: (windows + b - 1) / b, batch: b, windows: windows, ranks: group.size)
        let c = config.dModel
        var gathered = layers.map { _ in [Float](repeating: 0, count: group.size > 1 ? windows * t * c : 0) }
        if group.size > 1 {
            let mine = spans.windows(of: group.rank)
            var done = mine.lowerBound
            while done < mine.upperBound {
                let nb = min(b, mine.upperBound - done)
                TokenDataset.fillWindows(tokens, seqLen: t, first: done, count: nb, inputs: &inputs, targets: &unused)
                inputs.withUnsafeBufferPointer {
                    model.forwardResiduals(tokens: $0.baseAddress!, batch: nb, seqLen: t, blocks: layers.max()!, cache: cache)
                }
                for (j, l) in layers.enumerated() {
                    cache.withResidual(layer: l) { h in
                        gathered[j].withUnsafeMutableBufferPointer { ($0.baseAddress! + done * t * c).update(from: h.baseAddress!, count: h.count) }
                    }
                }
                done += nb
                progress(done - mine.lowerBound, mine.count)
            }
            for j in layers.indices { spans.gather(&gathered[j], rowWidth: t * c, group: group) }
        }
        var done = 0
        while done < windows {
            let nb = min(b, windows - done)
            TokenDataset.fillWindows(tokens, seqLen: t, first: done, count: nb, inputs: &inputs, targets: &unused)
            if group.size > 1 {
                for j in layers.indices {
                    gathered[j].withUnsafeBufferPointer {
                        features[j].append(UnsafeBufferPointer(rebasing: $0[(done * t * c)..<((done + nb) * t * c)]))
                    }
                }
            } else {
                inputs.withUnsafeBufferPointer {
                    model.forwardResiduals(tokens: $0.baseAddress!, batch: nb, seqLen: t, blocks: layers.max()!, cache: cache)
                }
                for (j, l) in layers.enumerated() { cache.withResidual(layer: l) { features[j].append($0) } }
            }
            for r in 0..<(nb * t) {
                let w = done + r / t, i = r % t
                current.append(inputs[r])
                windowOfRow.append(w)
                for (j, k) in offsets.enumerated() {
                    let index = w * (t + 1) + i + 1 + k
                    future[j].append(index < tokens.count ? tokens[index] : -1)
                }
            }
            done += nb
            if group.size == 1 { progress(done, windows) }
        }
        return ProbeData(features: features, current: current, future: future, group: windowOfRow)
    }

    /// Probes every layer of `data` at every offset. `layers` and `offsets` label the table's rows
    /// and columns (data.features[j] is layer layers[j]; data.future[j] offset offsets[j]). A share
    /// `heldOut` of the windows, spread evenly through the text, is held out.
    public static func run(_ data: ProbeData, layers: [Int], offsets: [Int], top: Int = 256, heldOut: Double = 0.2,
                           settings: ProbeSettings = ProbeSettings(),
                           progress: (String) -> Void = { _ in }) -> ProbeTable {
        precondition(layers.count == data.features.count && offsets.count == data.future.count && top > 0)
        precondition(heldOut > 0 && heldOut < 1)
        let started = Date()
        let rows = data.current.count
        // Window w is held out when ⌊(w+1)·f⌋ > ⌊w·f⌋: a share f of the windows, evenly spread.
        // Of the training windows, every tenth validates the probes' early stopping (the baselines
        // count on all training rows).
        var train: [Int] = [], test: [Int] = [], fitting: [Int] = [], validation: [Int] = []
        var trainWindows: [Int: Int] = [:]
        for r in 0..<rows {
            let w = Double(data.group[r])
            if ((w + 1) * heldOut).rounded(.down) > (w * heldOut).rounded(.down) {
                test.append(r)
            } else {
                train.append(r)
                let index = trainWindows[data.group[r]] ?? trainWindows.count
                trainWindows[data.group[r]] = index
                if index % 10 == 9 { validation.append(r) } else { fitting.append(r) }
            }
        }
        // Classes: the most frequent targets of the training rows (ties: lower id), then "other".
        var frequency: [Int32: Int] = [:]
        for r in train where data.future[0][r] >= 0 { frequency[data.future[0][r], default: 0] += 1 }
        let kept = frequency.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(top).map(\.key)
        let m = kept.count + 1, other = Int32(kept.count)
        var classOf: [Int32: Int32] = [:]
        for (c, token) in kept.enumerated() { classOf[token] = Int32(c) }
        let labels = data.future.map { column in column.map { $0 < 0 ? Int32(-1) : classOf[$0] ?? other } }
        let covered = test.filter { labels[0][$0] >= 0 }
        let coverage = Double(covered.filter { labels[0][$0] != other }.count) / Double(max(1, covered.count))

        var unigramLoss: [Double] = [], unigramAccuracy: [Double] = []
        var currentLoss: [Double] = [], currentAccuracy: [Double] = [], smoothing: [Double] = []
        for j in offsets.indices {
            let uni = Unigram(labels: labels[j], rows: train, classes: m)
            let scored = uni.score(labels: labels[j], rows: test)
            unigramLoss.append(scored.loss)
            unigramAccuracy.append(scored.accuracy)
            let alpha = CurrentTokenPredictor.chooseSmoothing(current: data.current, labels: labels[j], rows: train,
                                                               group: data.group, classes: m)
            let predictor = CurrentTokenPredictor(current: data.current, labels: labels[j], rows: train, classes: m, alpha: alpha)
            let s = predictor.score(current: data.current, labels: labels[j], rows: test)
            currentLoss.append(s.loss)
            currentAccuracy.append(s.accuracy)
            smoothing.append(alpha)
        }
        var loss: [[Double]] = [], accuracy: [[Double]] = [], trainLoss: [[Double]] = [], epochs: [[Int]] = []
        var counts: [Int] = []
        for (j, l) in layers.enumerated() {
            progress("layer \(l): \(train.count) training rows, \(m) classes, \(offsets.count) offsets")
            let scores = SoftmaxProbe.fit(features: data.features[j], labels: labels, classes: m, train: fitting,
                                          validation: validation, test: test, settings: settings)
            loss.append(scores.map(\.loss))
            accuracy.append(scores.map(\.accuracy))
            trainLoss.append(scores.map(\.trainLoss))
            epochs.append(scores.map(\.epoch))
            counts = scores.map(\.count)
        }
        return ProbeTable(layers: layers, offsets: offsets, loss: loss, accuracy: accuracy, trainLoss: trainLoss, epochs: epochs,
                          unigramLoss: unigramLoss, unigramAccuracy: unigramAccuracy, currentTokenLoss: currentLoss,
                          currentTokenAccuracy: currentAccuracy, currentTokenSmoothing: smoothing, classes: m, top: top,
                          coverage: coverage, trainPositions: train.count, heldOutPositions: test.count, counts: counts,
                          settings: settings, seconds: Date().timeIntervalSince(started))
    }

    /// A readable table: probe loss and accuracy per layer × offset, then the two baselines.
    public static func format(_ table: ProbeTable, modelLayers: Int? = nil) -> String {
        func pad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
        func cells(_ loss: [Double], _ acc: [Double]) -> String {
            table.offsets.indices.map { pad(String(format: "%.3f", loss[$0]), 12) + pad(String(format: "%.1f%%", 100 * acc[$0]), 8) }.joined()
        }
        var lines = ["layer          " + table.offsets.map { pad("k=\($0) loss", 12) + pad("acc", 8) }.joined()]
        for (j, l) in table.layers.enumerated() {
            let name = l == modelLayers ? "\(l) (final)" : "\(l)"
            lines.append(name.padding(toLength: 15, withPad: " ", startingAt: 0) + cells(table.loss[j], table.accuracy[j]))
        }
        lines.append("unigram        " + cells(table.unigramLoss, table.unigramAccuracy))
        lines.append("current token  " + cells(table.currentTokenLoss, table.currentTokenAccuracy))
        return lines.joined(separator: "\n")
    }
}

/// Class frequencies of the training rows with add-one smoothing.
struct Unigram {
    let logP: [Double]
    let best: Int

    init(labels: [Int32], rows: [Int], classes m: Int) {
        var counts = [Double](repeating: 1, count: m)
        for r in rows where labels[r] >= 0 { counts[Int(labels[r])] += 1 }
        let total = counts.reduce(0, +)
        logP = counts.map { Foundation.log($0 / total) }
        best = counts.indices.max { counts[$0] < counts[$1] || (counts[$0] == counts[$1] && $0 > $1) }!
    }

    var probabilities: [Double] { logP.map { Foundation.exp($0) } }

    func score(labels: [Int32], rows: [Int]) -> (loss: Double, accuracy: Double) {
        var loss = 0.0, hits = 0, n = 0
        for r in rows where labels[r] >= 0 {
            loss -= logP[Int(labels[r])]
            if Int(labels[r]) == best { hits += 1 }
            n += 1
        }
        return (loss / Double(max(1, n)), Double(hits) / Double(max(1, n)))
    }
}

/// p(y | x) for the current token x from counts, smoothed toward the unigram:
/// p(y | x) = (n(x, y) + α·p(y)) / (n(x) + α); an unseen x gets the unigram.
struct CurrentTokenPredictor {
    let unigram: Unigram
    let prior: [Double]
    var alpha: Double
    let pairs: [Int64: Int]
    let totals: [Int32: Int]
    let classes: Int

    init(current: [Int32], labels: [Int32], rows: [Int], classes m: Int, alpha: Double) {
        unigram = Unigram(labels: labels, rows: rows, classes: m)
        prior = unigram.probabilities
        self.alpha = alpha
        classes = m
        var pairs: [Int64: Int] = [:], totals: [Int32: Int] = [:]
        for r in rows where labels[r] >= 0 {
            pairs[Int64(current[r]) * Int64(m) + Int64(labels[r]), default: 0] += 1
            totals[current[r], default: 0] += 1
        }
        self.pairs = pairs
        self.totals = totals
    }

    func logProbability(_ y: Int32, given x: Int32) -> Double {
        guard let n = totals[x] else { return unigram.logP[Int(y)] }
        let count = Double(pairs[Int64(x) * Int64(classes) + Int64(y)] ?? 0)
        return Foundation.log((count + alpha * prior[Int(y)]) / (Double(n) + alpha))
    }

    /// Total cross-entropy (nats) over the labelled `rows`.
    func totalLoss(current: [Int32], labels: [Int32], rows: [Int]) -> Double {
        var loss = 0.0
        for r in rows where labels[r] >= 0 { loss -= logProbability(labels[r], given: current[r]) }
        return loss
    }

    func score(current: [Int32], labels: [Int32], rows: [Int]) -> (loss: Double, accuracy: Double) {
        // The arg-max for each x: among the classes seen after x, and the unigram's best (every unseen
        // class scores at most α·p(best)).
        var best: [Int32: (Int, Double)] = [:]
        for (key, count) in pairs {
            let x = Int32(key / Int64(classes)), y = Int(key % Int64(classes))
            let value = Double(count) + alpha * prior[y]
            if let b = best[x], b.1 > value || (b.1 == value && b.0 < y) { continue }
            best[x] = (y, value)
        }
        var hits = 0, n = 0
        for r in rows where labels[r] >= 0 {
            let x = current[r], y = labels[r]
            var guess = unigram.best
            if let b = best[x] {
                let fallback = alpha * prior[unigram.best] + Double(pairs[Int64(x) * Int64(classes) + Int64(unigram.best)] ?? 0)
                guess = b.1 > fallback || (b.1 == fallback && b.0 < unigram.best) ? b.0 : unigram.best
            }
            if guess == Int(y) { hits += 1 }
            n += 1
        }
        let loss = totalLoss(current: current, labels: labels, rows: rows)
        return (loss / Double(max(1, n)), Double(hits) / Double(max(1, n)))
    }

    static let smoothingGrid: [Double] = [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300]

    /// The α of the grid with the lowest cross-entropy when counts from windows of one parity
    /// predict the other (both ways): chosen on the training rows only.
    static func chooseSmoothing(current: [Int32], labels: [Int32], rows: [Int], group: [Int], classes m: Int) -> Double {
        let even = rows.filter { group[$0] % 2 == 0 }, odd = rows.filter { group[$0] % 2 == 1 }
        guard !even.isEmpty, !odd.isEmpty else { return 1 }
        var a = CurrentTokenPredictor(current: current, labels: labels, rows: even, classes: m, alpha: 1)
        var b = CurrentTokenPredictor(current: current, labels: labels, rows: odd, classes: m, alpha: 1)
        var best = (alpha: 1.0, loss: Double.infinity)
        for alpha in smoothingGrid {
            a.alpha = alpha
            b.alpha = alpha
            let loss = a.totalLoss(current: current, labels: labels, rows: odd) + b.totalLoss(current: current, labels: labels, rows: even)
            if loss < best.loss { best = (alpha, loss) }
        }
        return best.alpha
    }
}
