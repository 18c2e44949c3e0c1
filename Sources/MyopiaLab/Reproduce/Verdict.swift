import Foundation

// The rules that put a measured figure beside a published one (PaperFigures holds the paper's).
// Each rule reads the measured value with its interval over seeds and says whether the
// measurement agrees with the paper, disagrees, or cannot tell; a row's verdict is the worst of its
// rules' (disagrees > inconclusive > agrees).

/// What a rule, or a row of rules, concludes.
public enum Verdict: String, Codable, Sendable, Comparable {
    case agrees
    case inconclusive
    case disagrees
    /// The machine could not measure the row (its reason is recorded beside it).
    case notMeasured = "not_measured"

    private var rank: Int {
        switch self {
        case .agrees: return 0
        case .inconclusive: return 1
        case .disagrees: return 2
        case .notMeasured: return 3
        }
    }

    public static func < (a: Verdict, b: Verdict) -> Bool { a.rank < b.rank }

    /// The row's verdict from its rules': the worst one (no rules: not measured).
    public static func combined(_ verdicts: [Verdict]) -> Verdict { verdicts.max() ?? .notMeasured }
}

/// A measured value over seeds: the mean and, with two seeds or more, its 95% interval.
public struct MeasuredValue: Codable, Equatable, Sendable {
    public var mean: Double
    public var low: Double?
    public var high: Double?

    public init(mean: Double, low: Double? = nil, high: Double? = nil) {
        self.mean = mean
        self.low = low
        self.high = high
    }

    public init(_ interval: GamesExperiment.Interval) {
        self.init(mean: interval.mean, low: interval.low, high: interval.high)
    }

    /// +1 when the whole interval lies above 0, −1 below, 0 when it reaches 0 or there is none.
    public var signBeyondInterval: Int {
        guard let low, let high else { return 0 }
        return low > 0 ? 1 : high < 0 ? -1 : 0
    }
}

/// One rule's outcome, as reproduce.json records it.
public struct RuleOutcome: Codable, Equatable, Sendable {
    public var rule: String
    public var verdict: Verdict
    /// Why, in words (the numbers the rule read).
    public var detail: String
}

public enum VerdictRules {
    /// Same sign: the paper's value and the measured mean have the same sign and the interval
    /// excludes 0 (agrees); the interval excludes 0 on the other side (disagrees); the interval
    /// reaches 0, or there is one seed and so no interval (inconclusive).
    public static func sameSign(paper: Double, measured: MeasuredValue) -> RuleOutcome {
        let side = measured.signBeyondInterval
        let paperSign = paper > 0 ? 1 : paper < 0 ? -1 : 0
        let interval = measured.low.map { String(format: "[%.4g, %.4g]", $0, measured.high ?? $0) } ?? "none (one seed)"
        let detail = String(format: "paper %.4g, measured %.4g, interval ", paper, measured.mean) + interval
        let verdict: Verdict = side == 0 || paperSign == 0 ? .inconclusive : side == paperSign ? .agrees : .disagrees
        return RuleOutcome(rule: "same_sign", verdict: verdict, detail: detail)
    }

    /// Within a factor: the measured mean and the paper's value have the same sign and neither is
    /// more than `factor` times the other.
    public static func withinFactor(_ factor: Double, paper: Double, measured: MeasuredValue) -> RuleOutcome {
        precondition(factor >= 1, "a factor of at least 1")
        let m = measured.mean
        let ratio = paper == 0 || m == 0 ? Double.infinity : m / paper
        let ok = ratio > 0 && ratio <= factor && 1 / ratio <= factor
        return RuleOutcome(rule: "within_factor", verdict: ok ? .agrees : .disagrees,
                           detail: String(format: "measured / paper = %.3g (allowed 1/%g…%g)", ratio, factor, factor))
    }

    /// The per-position crossover of a myopic − vanilla loss curve: the myopic model ahead at the
    /// first positions and behind later, each side beyond its interval. Present: the first
    /// position whose interval excludes 0 has the myopic model ahead (difference < 0), and a later
    /// one has it behind (> 0). Absent where the intervals say otherwise (disagrees); with no
    /// position beyond its interval, or no intervals (one seed), inconclusive.
    public static func crossover(_ curve: [MeasuredValue]) -> RuleOutcome {
        let sides = curve.map(\.signBeyondInterval)
        guard let first = sides.firstIndex(where: { $0 != 0 }) else {
            return RuleOutcome(rule: "crossover", verdict: .inconclusive,
                               detail: "no position's interval excludes 0 (\(curve.count) positions)")
        }
        if sides[first] < 0, let behind = sides[(first + 1)...].firstIndex(of: 1) {
            return RuleOutcome(rule: "crossover", verdict: .agrees,
                               detail: "myopic ahead from position \(first), behind from position \(behind)")
        }
        let what = sides[first] > 0 ? "myopic behind from position \(first) on, never ahead first"
            : "myopic ahead from position \(first), never behind later"
        return RuleOutcome(rule: "crossover", verdict: .disagrees, detail: what)
    }
}
