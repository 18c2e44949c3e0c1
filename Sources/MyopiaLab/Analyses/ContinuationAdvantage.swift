import Foundation
import Myopia

/// How much easier a model's own sampled token makes the true continuation, as the consequence
/// objective defines it (docs/games.md): at position t of a validation window, draw
/// x̂ ~ p(·|x_≤t) (temperature 1) from the model and score the K ground-truth tokens after it,
///
///     R(v) = −(1/K) Σ_{i=1..K} ℓ(x_{t+1+i} | x_≤t, v, x_{t+2} … x_{t+i})   (under the same model)
///
/// The advantage is R(x̂) − R(x_{t+1}): positive where the model's own token leaves the real text
/// easier to predict than the real token does. Averaged over windows and positions. Draws are
/// keyed by (seed, window, position) (`KeyedRandom`, step 0, which training never uses), so two
/// models are measured at the same positions with the same uniform numbers.
public enum ContinuationAdvantage {
    public struct Result: Codable, Equatable, Sendable {
        /// Mean of R(x̂) − R(x_{t+1}) over the pairs (window, position).
        public var mean: Double
        /// Its standard error over the pairs (sample SD / √n).
        public var standardError: Double
        /// Share of the pairs where x̂ is the true token (advantage 0 there, up to rounding).
        public var drewTrueShare: Double
        public var pairs: Int
        public var horizon: Int
        public var windows: Int

        enum CodingKeys: String, CodingKey {
            case mean, pairs, horizon, windows
            case standardError = "standard_error", drewTrueShare = "drew_true_share"
        }
    }

    /// Measures `model` on up to `windows` consecutive windows of T+1 `tokens`, at up to
    /// `positions` positions per window spread evenly over 0 … T−1−K.
    public static func measure(_ model: Transformer, tokens: [Int32], seqLen t: Int, horizon k: Int, windows: Int,
                               positions: Int, seed: UInt64, batch: Int = 8) -> Result {
        precondition(k >= 1 && k < t && positions >= 1)
        let count = min(windows, TokenDataset.windows(tokens, seqLen: t))
        let v = model.config.vocabSize, last = t - 1 - k
        let chosen = positions > last ? Array(0...last)
            : (0..<positions).map { i in positions == 1 ? last / 2 : (i * last) / (positions - 1) }
        let b = max(1, min(batch, count))
        let cache = model.makeCache(batch: b, seqLen: t)
        let scratch = ContinuationScratch(config: model.config, horizon: k, candidates: 1, seqLen: t)
        let random = KeyedRandom(seed: seed)
        var inputs = [Int32](repeating: 0, count: b * t), targets = inputs
        var sum = 0.0, sumSquares = 0.0, n = 0, drewTrue = 0
        var candidate: Int32 = 0, loss: Float = 0
        var w = 0
        while w < count {
            let nb = min(b, count - w)
            TokenDataset.fillWindows(tokens, seqLen: t, first: w, count: nb, inputs: &inputs, targets: &targets)
            model.forward(tokens: Array(inputs[..<(nb * t)]), targets: Array(targets[..<(nb * t)]), batch: nb, seqLen: t, cache: cache)
            for row in 0..<nb {
                for p in chosen {
                    let u = random.uniform(.sample, step: 0, sequence: w + row, position: p)
                    candidate = KeyedRandom.sample(logits: cache.logitRow(row * t + p), count: v, u: u)
                    model.continuationLosses(cache: cache, row: row, position: p, candidates: &candidate, count: 1,
                                             scratch: scratch, losses: &loss)
                    let advantage = -Double(loss) + cache.meanLoss(row: row, positions: (p + 1)..<(p + 1 + k))
                    sum += advantage
                    sumSquares += advantage * advantage
                    n += 1
                    if candidate == targets[row * t + p] { drewTrue += 1 }
                }
            }
            w += nb
        }
        let mean = n > 0 ? sum / Double(n) : .nan
        let variance = n > 1 ? max(0, (sumSquares - Double(n) * mean * mean) / Double(n - 1)) : 0
        return Result(mean: mean, standardError: n > 1 ? (variance / Double(n)).squareRoot() : 0,
                      drewTrueShare: n > 0 ? Double(drewTrue) / Double(n) : 0, pairs: n, horizon: k, windows: count)
    }
}
