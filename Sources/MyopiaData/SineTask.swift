import Foundation
import MyopiaSupport
import MyopiaModel

// Dimensions: B sequences, T positions, W window. Features (B, T, 2) = (x_n, z_n); targets (B, T).

/// The synthetic pre-caching task of Wu, Morris & Levine (2024) (docs/DESIGN.md §5).
///
/// Per position n: x_n ~ N(0, 1), z_n ~ Bernoulli(p), and the target
///   y_n = z_n · Σ_{i=1..W} sin(f·x_{n−i}) + (1 − z_n) · x_n,
/// with terms before the start of the sequence (n − i < 0) counted as 0. The model sees (x_n, z_n)
/// and predicts y_n. sin(f·x_s) is worth computing at position s only for the later positions
/// s+1..s+W that sum it: that is pre-caching, which a myopic model is not trained to do. Without it
/// the best prediction is x_n where z_n = 0 and 0 where z_n = 1 (the sum of odd functions of
/// symmetric inputs): the **no-pre-caching floor**.
public struct SineTask: Codable, Equatable, Sendable {
    /// The probability that a position asks for the window sum (z_n = 1).
    public var p: Double
    /// f in sin(f·x): the higher, the less a smooth function of a few features approximates it.
    public var frequency: Double
    /// W: how many earlier positions each sum covers.
    public var window: Int

    /// Features per position: x_n and z_n.
    public static let features = 2
    /// Numbers predicted per position: y_n.
    public static let outputs = 1
    /// Wu et al.'s settings.
    public static let publishedFrequency = 10.0
    public static let publishedWindow = 10

    public init(p: Double, frequency: Double = SineTask.publishedFrequency, window: Int = SineTask.publishedWindow) {
        self.p = p
        self.frequency = frequency
        self.window = window
    }

    /// Rejects impossible settings; `file` names where they came from.
    public func validate(file: String = "flags") throws {
        guard (0...1).contains(p) else {
            throw InputError.invalidValue(file: file, field: "p", expected: "a probability in [0, 1]", found: "\(p)")
        }
        guard frequency.isFinite else {
            throw InputError.invalidValue(file: file, field: "frequency", expected: "a finite number", found: "\(frequency)")
        }
        guard window > 0 else {
            throw InputError.invalidValue(file: file, field: "window", expected: "a positive integer", found: "\(window)")
        }
    }

    /// B fresh sequences of T positions, drawn from `rng` (per sequence, per position: x_n then z_n).
    /// `count` sequences of `seqLen` positions from a generator seeded with `seed`, after checking
    /// the task's settings: what an analysis of a sine-task model (horizon, probes) reads.
    public func sequences(_ count: Int, seqLen: Int, seed: UInt64) throws -> SineBatch {
        try validate()
        var rng = SeededGenerator(seed: seed)
        return makeBatch(batch: count, seqLen: seqLen, rng: &rng)
    }

    public func makeBatch(batch b: Int, seqLen t: Int, rng: inout SeededGenerator) -> SineBatch {
        var x = [Float](repeating: 0, count: b * t), z = x
        for r in 0..<(b * t) {
            x[r] = Float(rng.nextNormal())
            z[r] = rng.nextUnit() < p ? 1 : 0
        }
        return SineBatch(task: self, batch: b, seqLen: t, x: x, z: z)
    }
}

/// B sequences of the sine task: inputs, targets, the two baselines' predictions, and the features a
/// model would have to cache.
public struct SineBatch: Equatable, Sendable {
    public let task: SineTask
    public let batch: Int
    public let seqLen: Int
    /// x_n (B, T) and z_n ∈ {0, 1} (B, T).
    public let x: [Float]
    public let z: [Float]
    /// The model's input (B, T, 2): (x_n, z_n) per position.
    public let features: [Float]
    /// y_n (B, T).
    public let targets: [Float]

    public init(task: SineTask, batch: Int, seqLen: Int, x: [Float], z: [Float]) {
        precondition(x.count == batch * seqLen && z.count == x.count)
        self.task = task
        self.batch = batch
        self.seqLen = seqLen
        self.x = x
        self.z = z
        var features = [Float](repeating: 0, count: 2 * x.count)
        for r in 0..<x.count {
            features[2 * r] = x[r]
            features[2 * r + 1] = z[r]
        }
        self.features = features
        // y_n from a running window sum of sin(f·x), in double, restarted for each sequence.
        let f = task.frequency, w = task.window
        var targets = [Float](repeating: 0, count: x.count)
        for s in 0..<batch {
            let row = s * seqLen
            var sines = [Double](repeating: 0, count: seqLen)
            for n in 0..<seqLen { sines[n] = Foundation.sin(f * Double(x[row + n])) }
            var sum = 0.0 // Σ_{i=1..W} sin(f·x_{n−i}) for the current n
            for n in 0..<seqLen {
                targets[row + n] = z[row + n] == 1 ? Float(sum) : x[row + n]
                sum += sines[n]
                if n - w >= 0 { sum -= sines[n - w] }
            }
        }
        self.targets = targets
    }

    /// sin(f·x_{n−lag}) at every position (B, T), 0 where n − lag < 0: the quantity position n − lag
    /// must compute for later positions (lag ≥ 0; lag 0 is the position's own x). For probes.
    public func cachedFeature(lag: Int) -> [Float] {
        precondition(lag >= 0)
        var out = [Float](repeating: 0, count: x.count)
        for s in 0..<batch {
            for n in lag..<max(lag, seqLen) {
                out[s * seqLen + n] = Float(Foundation.sin(task.frequency * Double(x[s * seqLen + n - lag])))
            }
        }
        return out
    }

    /// The no-pre-caching floor's predictions: x_n where z_n = 0, 0 where z_n = 1.
    public var floorPredictions: [Float] { zip(x, z).map { $1 == 1 ? 0 : $0 } }

    /// Mean loss of predicting 0 everywhere.
    public func predictZeroLoss(_ loss: RegressionLoss = .huber) -> Double {
        loss.mean(predictions: [Float](repeating: 0, count: targets.count), targets: targets)
    }

    /// Mean loss of the no-pre-caching floor (with p = 1 it is predict-zero's).
    public func floorLoss(_ loss: RegressionLoss = .huber) -> Double {
        loss.mean(predictions: floorPredictions, targets: targets)
    }
}
