import Foundation
import Myopia

/// reproduce.json: each of the paper's figures (PaperFigures, wu2024.json) beside what the plan
/// measured, with an interval over seeds, both scales and a verdict computed by the rules of
/// Verdict.swift. Which rules a row uses is fixed here, per row, and stated in docs/reproduce.md.
extension Reproduce {
    /// The paper's side of a row.
    public struct PaperSide: Codable, Equatable, Sendable {
        public var figure: String
        public var value: Double
        public var alternatives: [Double]?
        public var unit: String
        public var model: String
        public var data: String
        public var source: String
    }

    public struct Scales: Codable, Equatable, Sendable {
        public var paper: PaperFigures.Scale
        /// nil where the row was not measured.
        public var ours: PaperFigures.Scale?
    }

    public struct Row: Codable, Equatable, Sendable {
        public var id: String
        public var what: String
        public var paper: PaperSide
        /// The mean over seeds (for a crossover row: 1 present, 0 absent, nil inconclusive).
        public var measured: Double?
        /// The 95% interval over seeds; nil with one seed or where not measured.
        public var interval: [Double]?
        public var perSeed: [Double]?
        public var scale: Scales
        /// Our model and data, in words.
        public var ours: String?
        public var rules: [RuleOutcome]
        public var verdict: Verdict
        /// Why the row was not measured.
        public var reason: String?
        /// The per-position curve a crossover row reads (mean and interval at each position).
        public var curve: [MeasuredValue]?

        enum CodingKeys: String, CodingKey {
            case id, what, paper, measured, interval, scale, ours, rules, verdict, reason, curve
            case perSeed = "per_seed"
        }

        /// Every row has `measured` and `interval`, null where there is none (a row not measured,
        /// one seed, a crossover's curve), so a reader never mistakes a missing key for a bug.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(what, forKey: .what)
            try c.encode(paper, forKey: .paper)
            try c.encode(measured, forKey: .measured)
            try c.encode(interval, forKey: .interval)
            try c.encodeIfPresent(perSeed, forKey: .perSeed)
            try c.encode(scale, forKey: .scale)
            try c.encodeIfPresent(ours, forKey: .ours)
            try c.encode(rules, forKey: .rules)
            try c.encode(verdict, forKey: .verdict)
            try c.encodeIfPresent(reason, forKey: .reason)
            try c.encodeIfPresent(curve, forKey: .curve)
        }
    }

    public struct Table: Codable, Sendable {
        public var paper: PaperFigures.Paper
        public var checkedAgainstPaperText: Bool
        public var tier: Tier
        public var budgetSeconds: Double
        public var seed: UInt64
        public var rows: [Row]
        public var sections: [SectionRecord]
        public var seconds: Double = 0
        public var cores: Int = 0
        public var loadAverageStart: [Double] = []
        public var loadAverageEnd: [Double] = []

        enum CodingKeys: String, CodingKey {
            case paper, tier, seed, rows, sections, seconds, cores
            case checkedAgainstPaperText = "checked_against_paper_text", budgetSeconds = "budget_seconds"
            case loadAverageStart = "load_average_start", loadAverageEnd = "load_average_end"
        }
    }

    enum Rows {
        /// How a row is judged.
        enum Rule {
            case sameSign
            case withinFactor(Double)
            case crossover
        }

        static func paperSide(_ f: PaperFigures.Figure, value: Double? = nil, source: String? = nil) -> PaperSide {
            PaperSide(figure: f.id, value: value ?? f.value, alternatives: value == nil ? f.alternatives : nil, unit: f.unit,
                      model: f.model, data: f.data, source: source ?? f.source)
        }

        /// A measured row: the values over seeds judged by `rules` against the paper's value.
        static func row(_ id: String, _ what: String, paper: PaperSide, scale: PaperFigures.Scale, values: [Double],
                        record: SectionRecord, rules: [Rule]) -> Row {
            let interval = GamesExperiment.Interval(values)
            let measured = MeasuredValue(interval)
            let outcomes = rules.map { rule -> RuleOutcome in
                switch rule {
                case .sameSign: return VerdictRules.sameSign(paper: paper.value, measured: measured)
                case .withinFactor(let k): return VerdictRules.withinFactor(k, paper: paper.value, measured: measured)
                case .crossover: preconditionFailure("a crossover row reads a curve")
                }
            }
            return Row(id: id, what: what, paper: paper, measured: interval.mean, interval: interval.low.map { [$0, interval.high ?? $0] },
                       perSeed: values, scale: Scales(paper: scale, ours: record.scale), ours: ours(record), rules: outcomes,
                       verdict: Verdict.combined(outcomes.map(\.verdict)), reason: nil, curve: nil)
        }

        static func ours(_ record: SectionRecord) -> String? {
            [record.model, record.data].compactMap { $0 }.joined(separator: "; ")
        }

        static func notMeasured(_ id: String, _ what: String, paper: PaperSide, scale: PaperFigures.Scale, reason: String) -> Row {
            Row(id: id, what: what, paper: paper, measured: nil, interval: nil, perSeed: nil, scale: Scales(paper: scale, ours: nil),
                ours: nil, rules: [], verdict: .notMeasured, reason: reason, curve: nil)
        }

        static func figure(_ figures: PaperFigures, _ id: String) throws -> PaperFigures.Figure {
            guard let f = figures.figure(id) else { throw InputError.missing(file: "wu2024.json", field: "figures[\(id)]") }
            return f
        }

        /// The table of a finished plan, from the files its sections wrote.
        static func table(plan: Plan, records: [SectionRecord], out: URL) throws -> Table {
            let figures = try PaperFigures.wu2024()
            func record(_ s: Section) -> SectionRecord? { records.first { $0.section == s.name } }
            var rows: [Row] = []

            // The synthetic task: the myopic model at the floor, the gap myopic − vanilla, the probes.
            let vanillaLoss = try figure(figures, "sine.vanilla_loss"), probeFigure = try figure(figures, "sine.probe_r2_layer1")
            for p in [0.3, 1.0] {
                let floorFigure = try figure(figures, p == 1 ? "sine.myopic_floor_p1" : "sine.myopic_floor_p0.3")
                let gapPaper = paperSide(floorFigure, value: floorFigure.value - vanillaLoss.value,
                                         source: "derived: \(floorFigure.id) − sine.vanilla_loss (\(floorFigure.source))")
                for f in [3.0, 10.0] {
                    let spec = plan.sine.first { $0.options.task.p == p && $0.options.task.frequency == f }
                    let name = spec?.name ?? "sine-p\(p == 1 ? "1" : "0.3")-f\(Int(f))"
                    let ids = ["\(name).myopic_loss", "\(name).gap", "\(name).probe_r2_layer1"]
                    let whats = ["myopic model's loss: the no-pre-caching floor (p \(p), f \(Int(f)))",
                                 "myopic − vanilla loss (p \(p), f \(Int(f))): what pre-caching buys",
                                 "R² of a linear probe of sin(f·x_n) on layer 1 of the vanilla model (p \(p), f \(Int(f)))"]
                    let papers = [paperSide(floorFigure), gapPaper, paperSide(probeFigure)]
                    guard let spec, let r = record(.sine(spec.name)), r.skipped == nil,
                          let s = try RunFolder.load(SineFigures.self, sineFile, in: out.appendingPathComponent(spec.name)) else {
                        let reason = spec == nil ? (plan.sineNotRun ?? "not in this plan") : record(.sine(name))?.skipped ?? "not run"
                        for k in 0..<3 { rows.append(notMeasured(ids[k], whats[k], paper: papers[k], scale: floorFigure.scale, reason: reason)) }
                        continue
                    }
                    rows.append(row(ids[0], whats[0], paper: papers[0], scale: floorFigure.scale, values: s.myopic, record: r,
                                    rules: [.withinFactor(1.5)]))
                    rows.append(row(ids[1], whats[1], paper: papers[1], scale: floorFigure.scale,
                                    values: zip(s.myopic, s.vanilla).map { $0 - $1 }, record: r, rules: [.sameSign, .withinFactor(2)]))
                    let layer = s.layers.firstIndex(of: 1), lag = s.lags.firstIndex(of: 0)
                    let r2 = layer.flatMap { l in lag.map { k in s.vanillaR2.map { $0[l][k] } } } ?? []
                    rows.append(row(ids[2], whats[2], paper: papers[2], scale: probeFigure.scale, values: r2, record: r,
                                    rules: [.withinFactor(2)]))
                }
            }

            // Text: the gap, its crossover by position, the bigram baseline, the vanilla loss.
            let textIDs = ["text.vanilla_loss", "text.myopia_gap", "text.position_crossover", "text.bigram_loss"]
            let textFigures = try textIDs.map { try figure(figures, $0) }
            let gapFolder = out.appendingPathComponent(Section.textGap.name)
            if let r = record(.textGap), r.skipped == nil, let g = try RunFolder.load(Gap.Summary.self, Gap.summaryFile, in: gapFolder),
               let v = g.flow("vanilla"), let m = g.flow("myopic") {
                rows.append(row(textIDs[0], textFigures[0].what, paper: paperSide(textFigures[0]), scale: textFigures[0].scale,
                                values: v.valLoss.perSeed, record: r, rules: [.withinFactor(2)]))
                rows.append(row(textIDs[1], textFigures[1].what, paper: paperSide(textFigures[1]), scale: textFigures[1].scale,
                                values: zip(m.valLoss.perSeed, v.valLoss.perSeed).map { $0 - $1 }, record: r,
                                rules: [.sameSign, .withinFactor(3)]))
                let curve = positionCurve(m.positionLossPerSeed, minus: v.positionLossPerSeed)
                let outcome = VerdictRules.crossover(curve)
                rows.append(Row(id: textIDs[2], what: textFigures[2].what, paper: paperSide(textFigures[2]),
                                measured: outcome.verdict == .agrees ? 1 : outcome.verdict == .disagrees ? 0 : nil, interval: nil, perSeed: nil,
                                scale: Scales(paper: textFigures[2].scale, ours: r.scale), ours: ours(r), rules: [outcome],
                                verdict: outcome.verdict, reason: nil, curve: curve))
                if let b = g.flow("bigram") {
                    rows.append(row(textIDs[3], textFigures[3].what, paper: paperSide(textFigures[3]), scale: textFigures[3].scale,
                                    values: b.valLoss.perSeed, record: r, rules: [.withinFactor(2)]))
                } else {
                    rows.append(notMeasured(textIDs[3], textFigures[3].what, paper: paperSide(textFigures[3]), scale: textFigures[3].scale,
                                            reason: "the plan trains no bigram model"))
                }
            } else {
                let reason = record(.textGap)?.skipped ?? "not run"
                for (id, f) in zip(textIDs, textFigures) { rows.append(notMeasured(id, f.what, paper: paperSide(f), scale: f.scale, reason: reason)) }
            }

            // The local myopia bonus, from scratch-trained and pretrained models.
            let bonusFigure = try figure(figures, "text.local_myopia_bonus")
            rows.append(try bonusRow("text.local_myopia_bonus", bonusFigure.what, paper: paperSide(bonusFigure), scale: bonusFigure.scale,
                                     record: record(.bonus), folder: out.appendingPathComponent(Section.bonus.name),
                                     rules: [.sameSign, .withinFactor(3)]))
            let pythia = try figure(figures, "pythia.myopia_gap_2.8b")
            let pretrainedGapFolder = out.appendingPathComponent(Section.pretrainedGap.name)
            if let r = record(.pretrainedGap), r.skipped == nil,
               let g = try RunFolder.load(Gap.Summary.self, Gap.summaryFile, in: pretrainedGapFolder), let gap = g.gap {
                rows.append(row("pretrained.myopia_gap", "myopia gap of a pretrained model: myopic − vanilla fine-tunes of \(plan.pretrained.label)",
                                paper: paperSide(pythia), scale: pythia.scale, values: gap.valLoss.perSeed, record: r,
                                rules: [.sameSign, .withinFactor(3)]))
            } else {
                rows.append(notMeasured("pretrained.myopia_gap", "myopia gap of a pretrained model (\(plan.pretrained.label))",
                                        paper: paperSide(pythia), scale: pythia.scale, reason: record(.pretrainedGap)?.skipped ?? "not run"))
            }
            rows.append(try bonusRow("pretrained.local_myopia_bonus", "local myopia bonus of \(plan.pretrained.label)",
                                     paper: paperSide(bonusFigure, value: bonusFigure.value,
                                                      source: "\(bonusFigure.source) (the paper's bonus is GPT-2 124M's; sign only)"),
                                     scale: bonusFigure.scale, record: record(.pretrainedBonus),
                                     folder: out.appendingPathComponent(Section.pretrainedBonus.name), rules: [.sameSign]))
            return Table(paper: figures.paper, checkedAgainstPaperText: figures.checkedAgainstPaperText, tier: plan.tier,
                         budgetSeconds: plan.budgetSeconds, seed: plan.seed, rows: rows, sections: records)
        }

        static func bonusRow(_ id: String, _ what: String, paper: PaperSide, scale: PaperFigures.Scale, record r: SectionRecord?,
                             folder: URL, rules: [Rule]) throws -> Row {
            guard let r, r.skipped == nil, let b = try RunFolder.load(Bonus.Summary.self, Bonus.summaryFile, in: folder) else {
                return notMeasured(id, what, paper: paper, scale: scale, reason: r?.skipped ?? "not run")
            }
            return row(id, what, paper: paper, scale: scale, values: b.bonus.valLoss.perSeed, record: r, rules: rules)
        }

        /// `a − b` at each position, with its interval over seeds (paired by seed).
        static func positionCurve(_ a: [[Double]], minus b: [[Double]]) -> [MeasuredValue] {
            let perSeed = zip(a, b).map { zip($0, $1).map { $0 - $1 } }
            guard let t = perSeed.first?.count else { return [] }
            return (0..<t).map { j in MeasuredValue(GamesExperiment.Interval(perSeed.map { $0[j] })) }
        }
    }
}
