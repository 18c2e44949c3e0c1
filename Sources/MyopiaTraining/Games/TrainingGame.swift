import MyopiaSupport
import MyopiaModel

/// What is upstream of the loss during training (docs/games.md). Teacher forcing puts only the
/// ground truth and the model's activations upstream of each loss; the other games also put the
/// model's own output there:
/// - `scheduledSampling`: some inputs are the model's own samples (upstream, not optimised for it);
/// - `consequence`: a policy-gradient term rewards a sampled token for how well the model then
///   predicts the ground-truth continuation (upstream and optimised);
/// - `multiToken`: extra heads predict t+2 … t+N from the same residual stream (more future
///   losses directly downstream of each position's activations).
public enum TrainingGame: Equatable, Sendable, CustomStringConvertible {
    case teacherForced
    /// Each input after the first is replaced, with probability `rate`, by the model's own sample.
    case scheduledSampling(rate: Double)
    case consequence(ConsequenceSettings)
    /// `heads` predictions per position: t+1 (the ordinary head) … t+heads.
    case multiToken(heads: Int)

    /// The game's name as `--game` takes it.
    public var name: String {
        switch self {
        case .teacherForced: return "teacher-forced"
        case .scheduledSampling: return "scheduled-sampling"
        case .consequence: return "consequence"
        case .multiToken: return "multi-token"
        }
    }

    public static let names = ["teacher-forced", "scheduled-sampling", "consequence", "multi-token"]

    public var description: String {
        switch self {
        case .teacherForced: return name
        case .scheduledSampling(let rate): return "\(name) (ρ = \(rate))"
        case .consequence(let s):
            return "\(name) (λ = \(s.weight), K = \(s.horizon), M = \(s.positions), \(s.estimator.rawValue))"
        case .multiToken(let heads): return "\(name) (N = \(heads))"
        }
    }

    /// Whether the game can run under `flow`, or why not. Every game runs under the vanilla, myopic,
    /// β and bigram flows. The local-myopic flow attends to a frozen reference model's keys and
    /// values, which has neither continuation passes over sampled tokens nor extra heads.
    public func refusal(under flow: GradientFlow) -> String? {
        switch (self, flow) {
        case (.consequence, .localMyopic):
            return "--game consequence under --flow local-myopic: the continuation passes would need the reference model's keys and values for sampled tokens; use vanilla, myopic, beta=β or bigram"
        case (.multiToken, .localMyopic):
            return "--game multi-token under --flow local-myopic: the reference model has no extra heads to pre-cache for; use vanilla, myopic, beta=β or bigram"
        default:
            return nil
        }
    }
}

extension TrainingGame: Codable {
    /// As a JSON object with `run_config.json`'s keys: {"game": "consequence", "consequence_weight": …}.
    enum CodingKeys: String, CodingKey {
        case game
        case sampleRate = "sample_rate", predictionHeads = "prediction_heads"
        case consequenceWeight = "consequence_weight", consequenceHorizon = "consequence_horizon"
        case consequencePositions = "consequence_positions", consequenceEstimator = "consequence_estimator"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let name = try c.decode(String.self, forKey: .game)
        switch name {
        case "teacher-forced": self = .teacherForced
        case "scheduled-sampling": self = .scheduledSampling(rate: try c.decode(Double.self, forKey: .sampleRate))
        case "consequence":
            self = .consequence(ConsequenceSettings(
                weight: try c.decode(Double.self, forKey: .consequenceWeight), horizon: try c.decode(Int.self, forKey: .consequenceHorizon),
                positions: try c.decode(Int.self, forKey: .consequencePositions),
                estimator: try c.decode(ConsequenceEstimator.self, forKey: .consequenceEstimator)))
        case "multi-token": self = .multiToken(heads: try c.decode(Int.self, forKey: .predictionHeads))
        default:
            throw DecodingError.dataCorruptedError(forKey: .game, in: c, debugDescription: "expected one of \(Self.names.joined(separator: ", ")), found \(name)")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .game)
        switch self {
        case .teacherForced: break
        case .scheduledSampling(let rate): try c.encode(rate, forKey: .sampleRate)
        case .consequence(let s):
            try c.encode(s.weight, forKey: .consequenceWeight)
            try c.encode(s.horizon, forKey: .consequenceHorizon)
            try c.encode(s.positions, forKey: .consequencePositions)
            try c.encode(s.estimator, forKey: .consequenceEstimator)
        case .multiToken(let heads): try c.encode(heads, forKey: .predictionHeads)
        }
    }
}

/// The consequence game's knobs (`--consequence-weight λ --consequence-horizon K
/// --consequence-positions M --consequence-estimator sampled|exact`).
public struct ConsequenceSettings: Equatable, Sendable {
    /// λ: the policy-gradient term's weight (0: teacher forcing through the game's own code path).
    public var weight: Double
    /// K: continuation tokens scored after the sampled one.
    public var horizon: Int
    /// M: positions per window that draw a token.
    public var positions: Int
    public var estimator: ConsequenceEstimator

    public init(weight: Double = 1, horizon: Int = 4, positions: Int = 4, estimator: ConsequenceEstimator = .sampled) {
        self.weight = weight
        self.horizon = horizon
        self.positions = positions
        self.estimator = estimator
    }

    /// The exact estimator scores every token of the vocabulary at each position: refused above this.
    public static let exactVocabularyLimit = 1024
}

public enum ConsequenceEstimator: String, Codable, Sendable, CaseIterable {
    /// One draw x̂ ~ p(·|x_≤t) per position: (R(x̂) − b)·∇log p(x̂).
    case sampled
    /// The expectation over the vocabulary: Σ_v p(v)·(R(v) − b)·∇log p(v).
    case exact
}
