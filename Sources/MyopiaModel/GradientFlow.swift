import Foundation
import MyopiaSupport

/// What backward sends through attention's keys and values (docs/DESIGN.md §4).
///
/// Attention is the only place positions mix: o_t = Σ_{s≤t} a_ts v_s. The gradient reaching key and
/// value s splits into the diagonal term (t = s) and the off-diagonal terms from later queries t > s.
/// The weights and biases that make keys and values always get both; what differs is how much of
/// the off-diagonal part reaches the input activations at s:
/// - `vanilla`: all of it (ordinary backprop);
/// - `myopic`: none (myopic descent, Wu, Morris & Levine 2024): past keys and values behave as if
///   computed from a detached copy of the input with live weights;
/// - `interpolated(β)`: β of it (β = 0 is myopic, β = 1 vanilla);
/// - `bigram`: a forward variant, not a gradient one: each position attends only to itself;
/// - `localMyopic`: a forward variant too (the local myopia bonus of Wu, Morris & Levine 2024): at
///   position t, every layer attends for s < t to the keys and values a frozen *reference* model
///   computed from its own hidden states (`Transformer.reference`), and to its own k_t, v_t on the
///   diagonal. Each position is trained purely for its own next token, given the reference's
///   pre-cached past: no gradient reaches earlier positions, nor the reference (LocalMyopic.swift).
public enum GradientFlow: Equatable, Sendable, CustomStringConvertible, Codable {
    case vanilla
    case myopic
    case interpolated(Double)
    case bigram
    case localMyopic

    /// Parses `vanilla`, `myopic`, `beta=0.3`, `bigram` or `local-myopic`. `local-myopic` needs a
    /// reference model: a command that has none passes `allowsLocalMyopic: false` and the flag is
    /// rejected here, before any work starts.
    public init(parsing text: String, allowsLocalMyopic: Bool = true) throws {
        switch text {
        case "vanilla": self = .vanilla
        case "myopic": self = .myopic
        case "bigram": self = .bigram
        case "local-myopic":
            guard allowsLocalMyopic else {
                throw InputError.unsupported(file: "flags", field: "flow",
                                              value: "local-myopic here: it attends to a frozen reference model's keys and values (use `myopia train`, `eval` or `bonus` with --reference DIR)")
            }
            self = .localMyopic
        default:
            guard text.hasPrefix("beta="), let beta = Double(text.dropFirst(5)), (0...1).contains(beta) else {
                throw InputError.invalidValue(file: "flags", field: "flow",
                                               expected: "vanilla, myopic, bigram, local-myopic or beta=β with β in [0, 1]", found: text)
            }
            self = .interpolated(beta)
        }
    }

    public var description: String {
        switch self {
        case .vanilla: return "vanilla"
        case .myopic: return "myopic"
        case .bigram: return "bigram"
        case .localMyopic: return "local-myopic"
        case .interpolated(let beta): return "beta=\(beta)"
        }
    }

    /// The share of the off-diagonal key/value gradient that reaches the input activations.
    /// (Local-myopic has no off-diagonal key/value gradient at all: earlier positions' keys and
    /// values are the reference's constants, so there is nothing to split.)
    public var offDiagonalInputShare: Float {
        switch self {
        case .vanilla, .bigram, .localMyopic: return 1
        case .myopic: return 0
        case .interpolated(let beta): return Float(beta)
        }
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: text)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// Which positions attention may read; stored in `config.json` as `myopia_attention` so that a
/// model trained as a transformer bigram is evaluated as one.
public enum AttentionPattern: String, Codable, Sendable {
    /// Every earlier position and itself.
    case causal
    /// Only itself: the "transformer bigram" baseline.
    case selfOnly = "self"
}
