import Foundation
import Myopia

// Dimensions: S sequences, T positions, C d_model, D = C + 1 (a constant 1 for the intercept),
// I lags.

/// Regression probes for the sine task (docs/DESIGN.md §5): least squares from the residual stream h_{l,n}
/// onto sin(f·x_{n−i}), the quantity position n − i must compute for later positions. R² on held-out
/// sequences, per layer and lag. Lag 0 at a middle layer is the pre-caching signature: sin(f·x_n) is
/// useless at n itself (z_n = 1 there asks for the earlier positions' sines), so a model that holds
/// it at n holds it for later positions. Layer 0 (input projection plus position) is the linear
/// baseline from the inputs themselves.
public struct SineProbeTable: Codable, Sendable {
    /// The file `myopia probe` on a sine-task checkpoint writes into a run folder (`--out`), where `myopia report` finds it.
    public static let fileName = "sine_probe.json"
    public var layers: [Int]
    public var lags: [Int]
    /// Held-out R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)², [layer][lag], over positions n ≥ lag.
    public var r2: [[Double]]
    public var p: Double
    public var frequency: Double
    public var window: Int
    public var seqLen: Int
    public var trainSequences: Int
    public var heldOutSequences: Int
    public var ridge: Double
    public var seed: UInt64

    enum CodingKeys: String, CodingKey {
        case layers, lags, r2, p, frequency, window, ridge, seed
        case seqLen = "seq_len", trainSequences = "train_sequences", heldOutSequences = "held_out_sequences"
    }
}

public enum SineProbes {
    /// Probes `model` (continuous heads) on the sequences of `data`; the last `heldOut` share of the
    /// sequences is held out. `ridge` × (training rows) is added to the diagonal of the standardised
    /// normal equations (not the intercept's).
    public static func compute(_ model: Transformer, data: SineBatch, layers requested: [Int]? = nil, lags: [Int],
                               heldOut: Double = 0.2, ridge: Double = 1e-4, batch: Int = 64, seed: UInt64 = 0) -> SineProbeTable {
        let config = model.config
        precondition(config.isContinuous && data.seqLen <= config.maxPositions)
        let layers = requested ?? Array(0...config.nLayers)
        let t = data.seqLen, s = data.batch, c = config.dModel, fi = SineTask.features
        let b = max(1, min(batch, s))
        let cache = model.makeCache(batch: b, seqLen: t)
        var hidden = layers.map { _ in [Float]() }
        for j in hidden.indices { hidden[j].reserveCapacity(s * t * c) }
        var done = 0
        while done < s {
            let nb = min(b, s - done)
            data.features.withUnsafeBufferPointer {
                model.forwardResiduals(features: $0.baseAddress! + done * t * fi, batch: nb, seqLen: t,
                                       blocks: layers.max()!, cache: cache)
            }
            for (j, l) in layers.enumerated() { cache.withResidual(layer: l) { hidden[j].append(contentsOf: $0) } }
            done += nb
        }
        let testSequences = max(1, Int((Double(s) * heldOut).rounded()))
        precondition(testSequences < s, "need at least one training sequence")
        let trainSequences = s - testSequences
        let targets = lags.map { data.cachedFeature(lag: $0) }
        let r2 = hidden.map { h in
            fit(features: h, width: c, seqLen: t, trainSequences: trainSequences, targets: targets, lags: lags, ridge: ridge)
        }
        return SineProbeTable(layers: layers, lags: lags, r2: r2, p: data.task.p, frequency: data.task.frequency,
                              window: data.task.window, seqLen: t, trainSequences: trainSequences,
                              heldOutSequences: testSequences, ridge: ridge, seed: seed)
    }

    /// Model-free core: rows are (sequence, position) in order, S·T of them, `width` features each;
    /// sequences 0..<trainSequences train, the rest are held out. For each lag i only positions
    /// n ≥ i count (before that sin(f·x_{n−i}) does not exist). Returns held-out R² per lag.
    public static func fit(features: [Float], width c: Int, seqLen t: Int, trainSequences: Int, targets: [[Float]],
                           lags: [Int], ridge: Double) -> [Double] {
        let rows = features.count / c, s = rows / t, d = c + 1
        precondition(rows == s * t && targets.allSatisfy { $0.count == rows } && trainSequences < s)
        // Standardise with the training rows' moments.
        var mean = [Double](repeating: 0, count: c), sq = mean
        let trainRows = trainSequences * t
        for r in 0..<trainRows { for j in 0..<c { let x = Double(features[r * c + j]); mean[j] += x; sq[j] += x * x } }
        for j in 0..<c { mean[j] /= Double(trainRows) }
        let scale = (0..<c).map { j -> Double in
            let v = sq[j] / Double(trainRows) - mean[j] * mean[j]
            return v > 1e-20 ? 1 / v.squareRoot() : 0
        }
        // x̂ (rows, D): standardised features and the intercept's 1.
        var standardised = [Double](repeating: 1, count: rows * d)
        for r in 0..<rows { for j in 0..<c { standardised[r * d + j] = (Double(features[r * c + j]) - mean[j]) * scale[j] } }
        // Gram matrices per position n (summed over training sequences), so that the Gram of
        // positions n ≥ i is a suffix sum: one pass for every lag.
        var gramByPosition = [[Double]](repeating: [Double](repeating: 0, count: d * d), count: t)
        standardised.withUnsafeBufferPointer { xs in
            for seq in 0..<trainSequences {
                for n in 0..<t {
                    let x = xs.baseAddress! + (seq * t + n) * d
                    gramByPosition[n].withUnsafeMutableBufferPointer { g in
                        for a in 0..<d where x[a] != 0 {
                            let xa = x[a]
                            for bIndex in a..<d { g[a * d + bIndex] += xa * x[bIndex] }
                        }
                    }
                }
            }
        }
        var suffix = [[Double]](repeating: [Double](repeating: 0, count: d * d), count: t + 1)
        for n in stride(from: t - 1, through: 0, by: -1) {
            for i in 0..<(d * d) { suffix[n][i] = suffix[n + 1][i] + gramByPosition[n][i] }
        }
        return lags.enumerated().map { (li, lag) -> Double in
            guard lag < t else { return .nan }
            var gram = suffix[lag]
            for a in 0..<d { for bIndex in 0..<a { gram[a * d + bIndex] = gram[bIndex * d + a] } }
            let count = Double(trainSequences * (t - lag))
            for a in 0..<c { gram[a * d + a] += ridge * count }
            var rhs = [Double](repeating: 0, count: d)
            for seq in 0..<trainSequences {
                for n in lag..<t {
                    let r = seq * t + n, y = Double(targets[li][r])
                    for a in 0..<d { rhs[a] += standardised[r * d + a] * y }
                }
            }
            guard let w = solveSymmetric(gram, rhs, d) else { return .nan }
            var sse = 0.0, sum = 0.0, sumSq = 0.0, n = 0.0
            for seq in trainSequences..<s {
                for pos in lag..<t {
                    let r = seq * t + pos, y = Double(targets[li][r])
                    var prediction = 0.0
                    for a in 0..<d { prediction += w[a] * standardised[r * d + a] }
                    sse += (y - prediction) * (y - prediction)
                    sum += y
                    sumSq += y * y
                    n += 1
                }
            }
            let sst = sumSq - sum * sum / n
            return sst > 0 ? 1 - sse / sst : .nan
        }
    }

    /// Solves A x = b for a symmetric positive definite A (d × d) by Cholesky; nil if A is not.
    static func solveSymmetric(_ a: [Double], _ b: [Double], _ d: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            for j in 0...i {
                var sum = a[i * d + j]
                for k in 0..<j { sum -= l[i * d + k] * l[j * d + k] }
                if i == j {
                    guard sum > 0 else { return nil }
                    l[i * d + i] = sum.squareRoot()
                } else {
                    l[i * d + j] = sum / l[j * d + j]
                }
            }
        }
        var y = [Double](repeating: 0, count: d)
        for i in 0..<d {
            var sum = b[i]
            for k in 0..<i { sum -= l[i * d + k] * y[k] }
            y[i] = sum / l[i * d + i]
        }
        var x = [Double](repeating: 0, count: d)
        for i in stride(from: d - 1, through: 0, by: -1) {
            var sum = y[i]
            for k in (i + 1)..<d { sum -= l[k * d + i] * x[k] }
            x[i] = sum / l[i * d + i]
        }
        return x
    }

    /// A readable layer × lag table of held-out R².
    public static func format(_ table: SineProbeTable, modelLayers: Int? = nil) -> String {
        func pad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
        var lines = ["layer       " + table.lags.map { pad("i=\($0)", 8) }.joined()]
        for (j, l) in table.layers.enumerated() {
            let name = l == modelLayers ? "\(l) (final)" : "\(l)"
            lines.append(name.padding(toLength: 12, withPad: " ", startingAt: 0)
                + table.r2[j].map { pad(String(format: "%.3f", $0), 8) }.joined())
        }
        return lines.joined(separator: "\n")
    }
}
