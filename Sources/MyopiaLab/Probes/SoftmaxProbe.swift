import Foundation
import Myopia
import MyopiaKernels

// Dimensions: N rows, D features, D' = D + 1 (a constant 1 for the bias), H heads (one per offset),
// M classes per head, R rows per minibatch.

/// How a softmax probe is trained: minibatch Adam on standardised features, a cosine-decayed step
/// size, a small L2 penalty on the weights (not the bias), and early stopping: after every epoch each
/// head is scored on validation rows (held out of the training rows) and keeps its best weights,
/// the initial ones — the class frequencies — included. So a probe of features that carry nothing
/// stays at the unigram baseline instead of fitting noise. The work is two GEMMs per minibatch.
public struct ProbeSettings: Codable, Equatable, Sendable {
    /// Passes over the training rows; small data gets more, so that there are at least `minimumSteps` steps.
    public var epochs = 8
    public var batch = 1024
    /// The peak Adam step is lr/√D for D features: each step then moves a logit by about the same
    /// amount at any width (0.05: 0.0031 for d_model 256, 0.0021 for 576).
    public var lr = 0.05
    public var weightDecay = 1e-3
    public static let minimumSteps = 400
    public var seed: UInt64 = 1

    public init() {}

    enum CodingKeys: String, CodingKey {
        case epochs, batch, lr, seed
        case weightDecay = "weight_decay"
    }

    public func validate(file: String = "flags") throws {
        let check = SettingsCheck(file: file).check
        try check(epochs > 0, "epochs", "a positive integer", epochs)
        try check(batch > 0, "probe_batch", "a positive integer", batch)
        try check(lr > 0 && lr.isFinite, "lr", "a positive number", lr)
        try check(weightDecay >= 0 && weightDecay.isFinite, "weight_decay", "zero or more", weightDecay)
    }
}

/// One head's result on held-out rows.
public struct ProbeScore: Codable, Equatable, Sendable {
    /// Mean cross-entropy (nats) of the true class.
    public var loss: Double
    /// Share of rows whose arg-max class is the true one.
    public var accuracy: Double
    /// Mean cross-entropy on (up to 20 000 of) the training rows with the kept weights: with `loss`,
    /// the probe's overfitting.
    public var trainLoss: Double
    /// The epoch whose weights were kept (0: the initial, class-frequency weights).
    public var epoch: Int
    /// Held-out rows scored.
    public var count: Int

    enum CodingKeys: String, CodingKey {
        case loss, accuracy, count, epoch
        case trainLoss = "train_loss"
    }
}

/// Linear softmax probes: for each head h, p(class | x) = softmax(W_hᵀ x̂ + b_h) with x̂ the
/// standardised features. All heads read the same features, so they train together: one GEMM gives
/// every head's logits and one gives every head's weight gradient.
public enum SoftmaxProbe {
    /// Fits one probe per head on `train` rows (labels[h][row] ∈ 0..<classes, or −1: the row has no
    /// label for that head and is skipped), keeps for each head the weights of the epoch that scores
    /// best on `validation` (empty: the last), and scores them on `test`. Deterministic for a seed
    /// and independent of the thread count.
    public static func fit(features: FeatureMatrix, labels: [[Int32]], classes m: Int, train: [Int], validation: [Int] = [],
                           test: [Int], settings: ProbeSettings, progress: (Int, Int) -> Void = { _, _ in }) -> [ProbeScore] {
        let heads = labels.count, d = features.width, ld = d + 1, hm = heads * m
        precondition(heads > 0 && m > 1 && !train.isEmpty && labels.allSatisfy { $0.count == features.rows })
        let (mean, std) = features.moments(train)
        let meanF = mean.map(Float.init)
        let scale = std.map { $0 > 1e-12 ? Float(1 / $0) : 0 }   // a constant column carries nothing
        let weights = UnsafeMutablePointer<Float>.allocate(capacity: 5 * ld * hm)
        defer { weights.deallocate() }
        weights.initialize(repeating: 0, count: 5 * ld * hm)
        let grad = weights + ld * hm, moment1 = grad + ld * hm, moment2 = moment1 + ld * hm, best = moment2 + ld * hm
        // The bias starts at the log of each class's (smoothed) training frequency: step 0 is the
        // unigram predictor, and training only has to find what the features add.
        for h in 0..<heads {
            var counts = [Double](repeating: 0.5, count: m)
            for r in train where labels[h][r] >= 0 { counts[Int(labels[h][r])] += 1 }
            let total = counts.reduce(0, +)
            for y in 0..<m { weights[d * hm + h * m + y] = Float(Foundation.log(counts[y] / total)) }
        }
        let labelRows = labels.map { ContiguousArray($0) }
        best.update(from: weights, count: ld * hm)
        var bestLoss = validation.isEmpty ? [Double](repeating: .infinity, count: heads)
            : score(features: features, labels: labelRows, classes: m, rows: validation, weights: weights, mean: meanF, scale: scale).map(\.loss)
        var bestEpoch = [Int](repeating: 0, count: heads)

        let bs = min(settings.batch, train.count)
        let stepsPerEpoch = (train.count + bs - 1) / bs
        let epochs = max(settings.epochs, (ProbeSettings.minimumSteps + stepsPerEpoch - 1) / stepsPerEpoch)
        let totalSteps = epochs * stepsPerEpoch
        let peak = settings.lr / Double(d).squareRoot()
        let x = UnsafeMutablePointer<Float>.allocate(capacity: bs * ld)
        let z = UnsafeMutablePointer<Float>.allocate(capacity: bs * hm)
        defer { x.deallocate(); z.deallocate() }
        var order = train
        var rng = SeededGenerator(seed: settings.seed)
        var step = 0
        for epoch in 1...epochs {
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
            for s in 0..<stepsPerEpoch {
                let batch = order[(s * bs)..<min(order.count, (s + 1) * bs)]
                let nb = batch.count
                features.gather(batch, mean: meanF, scale: scale, into: x, ld: ld)
                // logits (R, H·M) = x (R, D') · W (D', H·M)
                GEMM.multiply(m: nb, n: hm, k: ld, a: x, lda: ld, transA: false, b: weights, ldb: hm, transB: false,
                              c: z, ldc: hm, accumulate: false)
                var counted = [Int](repeating: 0, count: heads)
                for h in 0..<heads { for r in batch where labelRows[h][r] >= 0 { counted[h] += 1 } }
                // dlogits = (softmax − onehot) / (labelled rows of the head), in place
                let zP = SendableFloatPointer(z), rowsB = Array(batch)
                Parallel.forEach((nb + 31) / 32) { chunk in
                    for r in (chunk * 32)..<min(nb, chunk * 32 + 32) {
                        for h in 0..<heads {
                            let segment = zP.pointer + r * hm + h * m, y = labelRows[h][rowsB[r]]
                            guard y >= 0 else { segment.update(repeating: 0, count: m); continue }
                            RowOps.softmax(segment, count: m)
                            let inverse = 1 / Float(counted[h])
                            for j in 0..<m { segment[j] *= inverse }
                            segment[Int(y)] -= inverse
                        }
                    }
                }
                // dW (D', H·M) = xᵀ · dlogits
                GEMM.multiply(m: ld, n: hm, k: nb, a: x, lda: ld, transA: true, b: z, ldb: hm, transB: false,
                              c: grad, ldc: hm, accumulate: false)
                step += 1
                let decay = 0.5 * (1 + cos(Double.pi * Double(step - 1) / Double(max(1, totalSteps))))
                adam(weights: weights, grad: grad, moment1: moment1, moment2: moment2, count: ld * hm,
                     decayedCount: d * hm, weightDecay: Float(settings.weightDecay),
                     lr: Float(peak * (0.05 + 0.95 * decay)), step: step)
            }
            // Early stopping, head by head: keep the columns of every head that improved.
            let losses = validation.isEmpty ? [Double](repeating: -Double(epoch), count: heads)
                : score(features: features, labels: labelRows, classes: m, rows: validation, weights: weights, mean: meanF, scale: scale).map(\.loss)
            for h in 0..<heads where losses[h] < bestLoss[h] {
                bestLoss[h] = losses[h]
                bestEpoch[h] = epoch
                for row in 0..<ld { (best + row * hm + h * m).update(from: weights + row * hm + h * m, count: m) }
            }
            progress(epoch, epochs)
        }
        let sample = Array(train.prefix(20_000))
        let trainScores = score(features: features, labels: labelRows, classes: m, rows: sample, weights: best,
                                mean: meanF, scale: scale)
        let testScores = score(features: features, labels: labelRows, classes: m, rows: test, weights: best,
                               mean: meanF, scale: scale)
        return (0..<heads).map {
            ProbeScore(loss: testScores[$0].loss, accuracy: testScores[$0].accuracy, trainLoss: trainScores[$0].loss,
                       epoch: bestEpoch[$0], count: testScores[$0].count)
        }
    }

    /// Adam (β 0.9, 0.999) with an L2 term on the first `decayedCount` entries (the weights; the bias
    /// row comes last).
    static func adam(weights: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>,
                     moment1: UnsafeMutablePointer<Float>, moment2: UnsafeMutablePointer<Float>, count: Int,
                     decayedCount: Int, weightDecay: Float, lr: Float, step: Int) {
        let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
        let c1 = 1 - powf(b1, Float(step)), c2 = 1 - powf(b2, Float(step))
        let w = SendableFloatPointer(weights), g = SendableFloatPointer(grad)
        let m1 = SendableFloatPointer(moment1), m2 = SendableFloatPointer(moment2)
        let chunk = 1 << 14
        Parallel.forEach((count + chunk - 1) / chunk) { c in
            for i in (c * chunk)..<min(count, (c + 1) * chunk) {
                var gi = g.pointer[i]
                if i < decayedCount { gi += weightDecay * w.pointer[i] }
                let a = b1 * m1.pointer[i] + (1 - b1) * gi
                let b = b2 * m2.pointer[i] + (1 - b2) * gi * gi
                m1.pointer[i] = a
                m2.pointer[i] = b
                w.pointer[i] -= lr * (a / c1) / ((b / c2).squareRoot() + eps)
            }
        }
    }

    /// Mean cross-entropy and top-1 accuracy of every head over `rows` (labelled rows only).
    static func score(features: FeatureMatrix, labels: [ContiguousArray<Int32>], classes m: Int, rows: [Int],
                      weights: UnsafePointer<Float>, mean: [Float], scale: [Float]) -> [(loss: Double, accuracy: Double, count: Int)] {
        let heads = labels.count, ld = features.width + 1, hm = heads * m
        let chunkRows = 2048
        let x = UnsafeMutablePointer<Float>.allocate(capacity: chunkRows * ld)
        let z = UnsafeMutablePointer<Float>.allocate(capacity: chunkRows * hm)
        defer { x.deallocate(); z.deallocate() }
        var rowLoss = [Float](repeating: 0, count: chunkRows * heads)
        var rowHit = [UInt8](repeating: 0, count: chunkRows * heads)
        var loss = [Double](repeating: 0, count: heads), hits = [Int](repeating: 0, count: heads)
        var counts = [Int](repeating: 0, count: heads)
        var start = 0
        while start < rows.count {
            let chunk = rows[start..<min(rows.count, start + chunkRows)], nb = chunk.count, chunkArray = Array(chunk)
            features.gather(chunk, mean: mean, scale: scale, into: x, ld: ld)
            GEMM.multiply(m: nb, n: hm, k: ld, a: x, lda: ld, transA: false, b: weights, ldb: hm, transB: false,
                          c: z, ldc: hm, accumulate: false)
            rowLoss.withUnsafeMutableBufferPointer { lossB in
                rowHit.withUnsafeMutableBufferPointer { hitB in
                    let lp = SendableFloatPointer(lossB.baseAddress!), hp = SendableUInt8(hitB.baseAddress!)
                    let zP = SendableFloatPointer(z)
                    Parallel.forEach((nb + 31) / 32) { c in
                        for r in (c * 32)..<min(nb, c * 32 + 32) {
                            for h in 0..<heads {
                                let y = labels[h][chunkArray[r]]
                                guard y >= 0 else { continue }
                                let segment = zP.pointer + r * hm + h * m
                                var best = 0
                                for j in 1..<m where segment[j] > segment[best] { best = j }
                                let target = segment[Int(y)]
                                let logZ = RowOps.softmax(segment, count: m)
                                lp.pointer[r * heads + h] = logZ - target
                                hp.pointer[r * heads + h] = best == Int(y) ? 1 : 0
                            }
                        }
                    }
                }
            }
            for r in 0..<nb {
                for h in 0..<heads where labels[h][chunkArray[r]] >= 0 {
                    loss[h] += Double(rowLoss[r * heads + h])
                    hits[h] += Int(rowHit[r * heads + h])
                    counts[h] += 1
                }
            }
            start += nb
        }
        return (0..<heads).map {
            (counts[$0] > 0 ? loss[$0] / Double(counts[$0]) : .nan, counts[$0] > 0 ? Double(hits[$0]) / Double(counts[$0]) : .nan,
             counts[$0])
        }
    }
}

struct SendableUInt8: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<UInt8>
    init(_ pointer: UnsafeMutablePointer<UInt8>) { self.pointer = pointer }
}
