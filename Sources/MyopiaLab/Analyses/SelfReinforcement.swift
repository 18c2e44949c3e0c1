import Foundation
import Myopia

/// The self-reinforcement of loops (Xu et al. 2022, "Learning to Break the Loop"): a sentence of
/// the data repeated n times in a row, then once more, and how the model scores that next
/// repetition — the mean probability of its tokens (TP) and the share of its tokens whose
/// probability rose from the sentence's first occurrence (IP). A model whose TP and IP climb with
/// n feeds its own loops: the more it has repeated, the more it expects to repeat.
public enum SelfReinforcement {
    /// The file `myopia loops` writes into a run folder (`--out`).
    public static let fileName = "loops.json"

    /// One repetition count n, over the sentences.
    public struct Point: Codable, Sendable, Equatable {
        /// Repetitions before the one scored.
        public var n: Int
        /// Mean over sentences of the mean probability of the next repetition's tokens.
        public var tp: Double
        /// 95% interval of that mean over sentences (normal approximation: mean ± 1.96·sd/√S).
        public var tpInterval: [Double]
        /// Mean over sentences of the share of the next repetition's tokens whose probability is
        /// higher than in the sentence's first occurrence.
        public var ip: Double
        public var ipInterval: [Double]

        enum CodingKeys: String, CodingKey {
            case n, tp, ip
            case tpInterval = "tp_interval", ipInterval = "ip_interval"
        }
    }

    public struct Report: Codable, Equatable, Sendable {
        public var sentences: Int
        /// Mean tokens per sentence (the first, unscored, included).
        public var meanTokens: Double
        public var maxRepeats: Int
        public var points: [Point]

        enum CodingKeys: String, CodingKey {
            case sentences, points
            case meanTokens = "mean_tokens", maxRepeats = "max_repeats"
        }
    }

    /// The text's sentences: cut after ".", "!" or "?" followed by white space (or the end) and at
    /// blank lines, line breaks inside a sentence read as spaces, runs of white space as one.
    public static func sentences(_ text: String) -> [String] {
        var result: [String] = [], current = ""
        func flush() {
            let words = current.split(whereSeparator: { $0.isWhitespace })
            if !words.isEmpty { result.append(words.joined(separator: " ")) }
            current = ""
        }
        let chars = Array(text)
        for (i, ch) in chars.enumerated() {
            let next: Character? = i + 1 < chars.count ? chars[i + 1] : nil
            if ch.isNewline, let next, next.isNewline { flush(); continue }
            current.append(ch.isNewline ? " " : ch)
            if ".!?".contains(ch), next == nil || next!.isWhitespace { flush() }
        }
        flush()
        return result
    }

    /// Each sentence's tokens (" " + sentence, as it reads inside a text) that fit `maxRepeats` + 1
    /// times into the model's context and have at least 3 tokens; at most `count` of them, spread
    /// evenly over the text.
    public static func units(_ text: String, tokenizer: any Tokenizer, maxRepeats: Int, maxPositions: Int, count: Int) -> [[Int32]] {
        let fitting = sentences(text).map { tokenizer.encode(" " + $0) }
            .filter { $0.count >= 3 && $0.count * (maxRepeats + 1) <= maxPositions }
        guard fitting.count > count else { return fitting }
        return (0..<count).map { fitting[$0 * fitting.count / count] }
    }

    /// TP and IP for n = 1…maxRepeats over `units` (non-empty): one forward pass per sentence over
    /// maxRepeats + 1 copies, in which copy n (0-based) is the repetition that follows n copies.
    /// The first token of each copy is left out of both measures: in the first copy it has no context.
    public static func compute(_ model: Transformer, units: [[Int32]], maxRepeats: Int,
                               progress: (Int, Int) -> Void = { _, _ in }) -> Report {
        precondition(!units.isEmpty && maxRepeats >= 1)
        var tp = [[Double]](repeating: [], count: maxRepeats), ip = tp
        for (s, unit) in units.enumerated() {
            let u = unit.count, length = u * (maxRepeats + 1)
            let tokens = (0...maxRepeats).flatMap { _ in unit }
            let targets = Array(tokens.dropFirst()) + [-1]
            let cache = model.makeCache(batch: 1, seqLen: length)
            model.forward(tokens: tokens, targets: targets, batch: 1, seqLen: length, cache: cache)
            let losses = cache.positionLosses()
            // p[i]: the probability of token i given tokens 0..<i (i ≥ 1).
            func p(_ i: Int) -> Double { Foundation.exp(-Double(losses[i - 1])) }
            for n in 1...maxRepeats {
                var sum = 0.0, rose = 0
                for j in 1..<u {
                    let now = p(n * u + j)
                    sum += now
                    if now > p(j) { rose += 1 }
                }
                tp[n - 1].append(sum / Double(u - 1))
                ip[n - 1].append(Double(rose) / Double(u - 1))
            }
            progress(s + 1, units.count)
        }
        let points = (1...maxRepeats).map { n in
            let (tpMean, tpHalf) = meanAndHalfWidth(tp[n - 1]), (ipMean, ipHalf) = meanAndHalfWidth(ip[n - 1])
            return Point(n: n, tp: tpMean, tpInterval: [tpMean - tpHalf, tpMean + tpHalf],
                         ip: ipMean, ipInterval: [ipMean - ipHalf, ipMean + ipHalf])
        }
        let meanTokens = Double(units.reduce(0) { $0 + $1.count }) / Double(units.count)
        return Report(sentences: units.count, meanTokens: meanTokens, maxRepeats: maxRepeats, points: points)
    }

    /// Repetitions `gap` and `games` measure on each trained model (`measure`).
    public static let runRepeats = 4
    /// Sentences `gap` and `games` measure on each trained model, at most.
    public static let runSentences = 50

    /// The curve on a split of tokens (a trained model's validation split): its text decoded, cut
    /// into sentences, at most `sentences` of them spread over it, `maxRepeats` repetitions; nil
    /// when no sentence fits the context `maxRepeats` + 1 times.
    public static func measure(_ model: Transformer, tokens: [Int32], tokenizer: any Tokenizer,
                               maxRepeats: Int = runRepeats, sentences: Int = runSentences) -> Report? {
        let text = tokenizer.decode(Array(tokens.prefix(1 << 20)))
        let found = units(text, tokenizer: tokenizer, maxRepeats: maxRepeats, maxPositions: model.config.maxPositions,
                          count: sentences)
        return found.isEmpty ? nil : compute(model, units: found, maxRepeats: maxRepeats)
    }

    /// One flow's or game's curves over seeds: for each n the mean over seeds of TP and IP, and each
    /// seed's report (seeds whose model had no sentence that fits are left out).
    public struct SeedSummary: Codable, Equatable, Sendable {
        public var n: [Int]
        public var tp: [Double]
        public var ip: [Double]
        public var perSeed: [Report]

        /// nil without reports, or when they do not share their repetition counts.
        public init?(_ reports: [Report]) {
            guard let first = reports.first, reports.allSatisfy({ $0.points.map(\.n) == first.points.map(\.n) }) else { return nil }
            n = first.points.map(\.n)
            tp = n.indices.map { i in reports.reduce(0) { $0 + $1.points[i].tp } / Double(reports.count) }
            ip = n.indices.map { i in reports.reduce(0) { $0 + $1.points[i].ip } / Double(reports.count) }
            perSeed = reports
        }

        enum CodingKeys: String, CodingKey {
            case n, tp, ip
            case perSeed = "per_seed"
        }
    }

    /// Rows "n  A TP / IP  B TP / IP …" of several flows' or games' curves side by side.
    public static func sideBySide(_ named: [(name: String, loops: SeedSummary?)]) -> [String] {
        let present = named.compactMap { item in item.loops.map { (item.name, $0) } }
        guard let ns = present.first?.1.n else { return [] }
        let width = max(16, (present.map { $0.0.count }.max() ?? 0) + 2)
        var lines = ["self-reinforcement (TP / IP of the repetition after n; mean over seeds)",
                     "n".padding(toLength: 4, withPad: " ", startingAt: 0)
                        + present.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) }.joined()]
        for (i, n) in ns.enumerated() {
            var row = "\(n)".padding(toLength: 4, withPad: " ", startingAt: 0)
            for (_, l) in present {
                let cell = i < l.n.count ? String(format: "%.3f / %.2f", l.tp[i], l.ip[i]) : "–"
                row += cell.padding(toLength: width, withPad: " ", startingAt: 0)
            }
            lines.append(row.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression))
        }
        return lines
    }

    /// The same side by side as an HTML table (empty when no flow or game has curves); names are escaped by `escape`.
    public static func sideBySideHTML(_ named: [(name: String, loops: SeedSummary?)], escape: (String) -> String) -> String {
        let present = named.compactMap { item in item.loops.map { (item.name, $0) } }
        guard let ns = present.first?.1.n else { return "" }
        var html = "<table><tr><th>n</th>" + present.map { "<th>\(escape($0.0)) TP / IP</th>" }.joined() + "</tr>"
        for (i, n) in ns.enumerated() {
            html += "<tr><td>\(n)</td>" + present.map { _, l in
                "<td>" + (i < l.n.count ? String(format: "%.3f / %.2f", l.tp[i], l.ip[i]) : "–") + "</td>"
            }.joined() + "</tr>"
        }
        return html + "</table><p class=\"caption\">The self-reinforcement of loops (Xu et al. 2022): sentences of the validation split repeated n times, then once more; TP is the mean probability of that next repetition's tokens, IP the share of them more likely than at the sentence's first occurrence (means over seeds; each seed's intervals over sentences in its run folder's loops.json). A curve that climbs with n is a model that feeds its own loops.</p>"
    }

    /// The mean and 1.96 standard errors (0 for one value).
    static func meanAndHalfWidth(_ x: [Double]) -> (Double, Double) {
        let mean = x.reduce(0, +) / Double(x.count)
        guard x.count > 1 else { return (mean, 0) }
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(x.count - 1)
        return (mean, 1.96 * (variance / Double(x.count)).squareRoot())
    }

    /// A table: n, TP and its interval, IP and its interval.
    public static func format(_ report: Report) -> String {
        var lines = ["   n   TP (95% interval)          IP (95% interval)"]
        for p in report.points {
            lines.append(String(format: "%4d   %.4f [%.4f, %.4f]   %.3f [%.3f, %.3f]", p.n, p.tp, p.tpInterval[0], p.tpInterval[1],
                                p.ip, p.ipInterval[0], p.ipInterval[1]))
        }
        return lines.joined(separator: "\n")
    }
}
