import Foundation
import Myopia

/// One cell of the upstream table (docs/games.md, "The upstream table"): a free variable at
/// position i, and the loss terms whose *target* is token i+1+k.
public struct UpstreamCell: Codable, Equatable, Sendable {
    /// "activations" (a residual stream h_{l,i}, or with `layer` nil their mean over l = 0…L),
    /// "outputs" (the token the model samples at position i, x̂_{i+1}) or "weights" (a summary row:
    /// the weights sit at no position, so it has offset 0 only).
    public var variable: String
    /// The residual stream l = 0…L (L: after the last block); nil for the mean, outputs and weights.
    public var layer: Int?
    /// k ≥ 0: the loss terms whose target is token i+1+k.
    public var offset: Int
    /// How much those losses depend on the variable at all (activations: the norm of the true
    /// gradient; outputs: E|ℓ(x̂) − ℓ(x)| when the output is resampled).
    public var upstream: Double
    /// The norm of the part of the training gradient (under the game and the flow) that runs
    /// through that path.
    public var optimised: Double
    /// 95% intervals over windows, where the number is estimated ([x, x] where it is exact).
    public var upstreamCI: [Double]
    public var optimisedCI: [Double]

    enum CodingKeys: String, CodingKey {
        case variable, layer, offset, upstream, optimised
        case upstreamCI = "upstream_ci", optimisedCI = "optimised_ci"
    }

    public init(variable: String, layer: Int?, offset: Int, upstream: Double, optimised: Double,
                upstreamCI: [Double], optimisedCI: [Double]) {
        self.variable = variable
        self.layer = layer
        self.offset = offset
        self.upstream = upstream
        self.optimised = optimised
        self.upstreamCI = upstreamCI
        self.optimisedCI = optimisedCI
    }

    /// Encodes `layer` as null when absent (the JSON always has every key).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(variable, forKey: .variable)
        try c.encode(layer, forKey: .layer)
        try c.encode(offset, forKey: .offset)
        try c.encode(upstream, forKey: .upstream)
        try c.encode(optimised, forKey: .optimised)
        try c.encode(upstreamCI, forKey: .upstreamCI)
        try c.encode(optimisedCI, forKey: .optimisedCI)
    }
}

/// What `myopia upstream` measures: for a model, a game and a flow, which free variables are
/// upstream of which loss terms, and which of those paths the training gradient optimises.
public struct UpstreamTable: Codable, Equatable, Sendable {
    /// The file `myopia upstream --out` writes.
    public static let fileName = "upstream.json"
    /// The game's name and its knobs, as `--game` and `run_config.json` spell them.
    public var game: String
    public var gameSettings: TrainingGame
    public var flow: String
    public var cells: [UpstreamCell]
    /// Windows measured, their length, the model's layers, the largest offset.
    public var windows: Int
    public var seqLen: Int
    public var layers: Int
    public var maxOffset: Int
    /// Resamples of each output per window (the outputs' row is an estimate over them).
    public var draws: Int

    enum CodingKeys: String, CodingKey {
        case game, flow, cells, windows, layers, draws
        case gameSettings = "game_settings", seqLen = "seq_len", maxOffset = "max_offset"
    }

    /// The cell of `variable` (and `layer`) at offset k, if measured.
    public func cell(_ variable: String, layer: Int? = nil, offset k: Int) -> UpstreamCell? {
        cells.first { $0.variable == variable && $0.layer == layer && $0.offset == k }
    }
}

/// Measures the upstream table (docs/games.md).
public enum Upstream {
    public struct Options: Sendable {
        /// Windows of T+1 tokens measured (consecutive, from the start of the tokens).
        public var windows = 16
        /// The largest offset k in the table (nil: T − 1).
        public var maxOffset: Int? = nil
        /// Resamples of each position's output per window.
        public var draws = 4
        /// Keys the resamples and the game's own draws.
        public var seed: UInt64 = 1
        /// Windows per forward pass.
        public var batch = 8

        public init(windows: Int = 16, maxOffset: Int? = nil, draws: Int = 4, seed: UInt64 = 1, batch: Int = 8) {
            self.windows = windows
            self.maxOffset = maxOffset
            self.draws = draws
            self.seed = seed
            self.batch = batch
        }
    }
}
