import Foundation
import Myopia

/// report.html of `myopia reproduce`: the table of the paper's figures beside ours with the
/// verdicts, the curves behind them (sine losses over the floor and probes by layer, the text gap
/// and the bonus by position with their intervals), the dynamics drawn as time series, then each
/// section's own folders as `myopia report` draws them.
enum ReproduceReport {
    static func f(_ v: Double?, _ format: String = "%.4g") -> String { v.map { String(format: format, $0) } ?? "–" }

    static func scale(_ s: PaperFigures.Scale?) -> String {
        guard let s else { return "–" }
        func big(_ n: Int) -> String {
            let v = Double(n)
            return v >= 1e9 ? String(format: "%.3gB", v / 1e9) : v >= 1e6 ? String(format: "%.3gM", v / 1e6)
                : v >= 1e3 ? String(format: "%.3gk", v / 1e3) : "\(n)"
        }
        return "\(big(s.parameters)) params, \(s.tokens.map(big) ?? "?") tokens"
    }

    static func build(table: Reproduce.Table, plan: Reproduce.Plan, out: URL, file: URL) throws -> String {
        var sections: [String] = []
        var html = "<section class=\"reproduce\"><h2>\(SVG.escape(table.paper.title)) — the figures beside ours</h2>"
        html += "<p class=\"caption\">\(SVG.escape(table.paper.authors)), \(SVG.escape(table.paper.venue)), arXiv \(SVG.escape(table.paper.arxiv)). Plan \(table.tier.rawValue) (seed \(table.seed)): \(String(format: "%.0f", table.seconds)) s on \(table.cores) cores, load average \(table.loadAverageStart.map { String(format: "%.1f", $0) }.joined(separator: " ")) at the start. The paper's figures come from wu2024.json\(table.checkedAgainstPaperText ? "" : " (<b>not yet checked against the paper's own text</b>: gathered from the paper, secondary summaries and the public code)"). Verdicts: same sign with the 95% interval over seeds excluding 0; per-position crossover (myopic ahead first, behind later, each beyond its interval); within a factor of the paper's size (docs/reproduce.md).</p>"
        html += "<table><tr><th>figure</th><th>paper</th><th>paper's scale</th><th>measured (95% interval)</th><th>our scale</th><th>verdict</th><th>rules</th></tr>"
        for r in table.rows {
            let measured = r.verdict == .notMeasured ? "not measured: \(SVG.escape(r.reason ?? ""))"
                : f(r.measured) + (r.interval.map { " [\(f($0[0])), \(f($0[1]))]" } ?? "")
            let colour = r.verdict == .agrees ? "#2ca02c" : r.verdict == .disagrees ? "#d62728" : "#777"
            html += "<tr><td title=\"\(SVG.escape(r.what))\">\(SVG.escape(r.id))</td><td title=\"\(SVG.escape(r.paper.source))\">\(f(r.paper.value))</td>"
            html += "<td>\(SVG.escape(scale(r.scale.paper)))</td><td>\(measured)</td><td>\(SVG.escape(scale(r.scale.ours)))</td>"
            html += "<td style=\"color:\(colour)\"><b>\(r.verdict.rawValue)</b></td><td>\(SVG.escape(r.rules.map { "\($0.rule): \($0.detail)" }.joined(separator: "; ")))</td></tr>"
        }
        html += "</table>"
        let models = table.sections.filter { $0.model != nil || $0.skipped != nil }.map { s in
            "<li><b>\(SVG.escape(s.section))</b>: " + (s.skipped.map { "not measured — \(SVG.escape($0))" }
                ?? "\(SVG.escape(s.model ?? "")); \(SVG.escape(s.data ?? "")) (\(String(format: "%.0f", s.seconds)) s)") + "</li>"
        }
        html += "<h3>Our models and data</h3><ul>\(models.joined())</ul></section>"
        sections.append(html)

        sections.append(contentsOf: try sineSections(plan: plan, out: out))
        if let g = try RunFolder.load(Gap.Summary.self, Gap.summaryFile, in: out.appendingPathComponent(Reproduce.Section.textGap.name)),
           let v = g.flow("vanilla"), let m = g.flow("myopic") {
            sections.append(curveSection("text-curve", "The text gap by position, over seeds",
                                         Reproduce.Rows.positionCurve(m.positionLossPerSeed, minus: v.positionLossPerSeed),
                                         name: "myopic − vanilla", color: SVG.colors[1],
                                         caption: "Per position, myopic − vanilla loss with its 95% interval over \(g.seeds.count) seeds. The paper: the myopic model is ahead at the first positions and falls behind as the context grows."))
        }
        if let b = try RunFolder.load(Bonus.Summary.self, Bonus.summaryFile, in: out.appendingPathComponent(Reproduce.Section.bonus.name)) {
            sections.append(curveSection("bonus-curve", "The local myopia bonus by position, over seeds",
                                         Reproduce.Rows.positionCurve(b.flows[0].positionLossPerSeed, minus: b.flows[1].positionLossPerSeed),
                                         name: "vanilla − local-myopic", color: SVG.color(forFlow: "local-myopic", fallback: 1),
                                         caption: "Per position, the control's loss minus the local-myopic model's, with its 95% interval over \(b.seeds.count) seeds: above 0, the vanilla model gives up next-token loss there to serve later tokens."))
        }
        let run = Reproduce.firstTextRun(plan, out: out)
        if let d = try RunFolder.load(DynamicsTable.self, DynamicsTable.fileName, in: run) {
            sections.append(Report.dynamicsSection(d, folder: run))
        }
        // Each section's folders as `myopia report` draws them (the first seed's sine runs).
        var folders = plan.sine.flatMap { s in [GradientFlow.vanilla, .myopic].map { out.appendingPathComponent(s.name).appendingPathComponent("\($0)-seed\(plan.sineSeeds[0])") } }
        folders += [Reproduce.Section.textGap, .bonus, .pretrainedGap, .pretrainedBonus].map { out.appendingPathComponent($0.name) }
        for folder in folders where FileManager.default.fileExists(atPath: folder.path) {
            // A sine run's headings name its task too: every task has a vanilla-seedS.
            let name = folder.lastPathComponent, parent = folder.deletingLastPathComponent().lastPathComponent
            sections.append(contentsOf: try Report.section(for: folder).filter { !$0.contains("class=\"dynamics\"") }.map {
                parent.hasPrefix("sine-") ? $0.replacingOccurrences(of: "— \(name)</h2>", with: "— \(parent)/\(name)</h2>") : $0
            })
        }
        let (numbered, contents) = Report.tableOfContents(sections)
        let base = file.deletingLastPathComponent().standardizedFileURL.path
        let page = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>Myopia reproduces \(SVG.escape(plan.paper))</title>
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <style>\(Report.css)</style></head>
        <body><header><h1>Myopia reproduces Wu, Morris &amp; Levine 2024</h1>
        <p class="meta">Generated \(ISO8601DateFormatter().string(from: Date())) by <code>myopia reproduce wu2024</code> (plan \(plan.tier.rawValue)). Losses in nats per token (text) or Huber loss (sine task). The pretrained model is \(SVG.escape(plan.pretrained.label)).</p></header>
        \(contents)
        \(numbered.joined(separator: "\n"))
        </body></html>
        """
        return page.replacingOccurrences(of: base + "/", with: "")
    }

    /// A per-position difference with its interval band.
    static func curveSection(_ cls: String, _ title: String, _ curve: [MeasuredValue], name: String, color: String, caption: String) -> String {
        let points = curve.enumerated().map { (x: Double($0.offset + 1), y: $0.element.mean) }
        let band = curve.map { ($0.high ?? $0.mean) - $0.mean }
        return "<section class=\"\(cls)\"><h2>\(SVG.escape(title))</h2>"
            + SVG.lineChart(title: "\(name) by position (95% interval band)", xLabel: "position + 1 (log scale)", yLabel: "Δ loss (nats/token)",
                            series: [SVG.Series(name: name, points: points, band: band)], colors: [color], logX: true)
            + "<p class=\"caption\">\(caption)</p></section>"
    }

    static func sineSections(plan: Reproduce.Plan, out: URL) throws -> [String] {
        var loaded: [Reproduce.SineFigures] = []
        for s in plan.sine {
            if let figures = try RunFolder.load(Reproduce.SineFigures.self, Reproduce.sineFile, in: out.appendingPathComponent(s.name)) {
                loaded.append(figures)
            }
        }
        guard !loaded.isEmpty else { return [] }
        func interval(_ xs: [Double]) -> (mean: Double, low: Double?, high: Double?) {
            let i = GamesExperiment.Interval(xs)
            return (i.mean, i.low, i.high)
        }
        var html = "<section class=\"sine-reproduce\"><h2>The synthetic task: losses over the floor, probes by layer</h2>"
        html += SVG.intervalChart(title: "Validation loss ÷ the no-pre-caching floor (95% interval over seeds)", yLabel: "loss / floor",
                                  categories: loaded.map(\.name),
                                  series: [SVG.IntervalSeries(name: "vanilla", values: loaded.map { f in interval(f.vanilla.map { $0 / f.floorLoss }) }),
                                           SVG.IntervalSeries(name: "myopic", values: loaded.map { f in interval(f.myopic.map { $0 / f.floorLoss }) })],
                                  colors: [SVG.colors[0], SVG.colors[1]])
        html += "<p class=\"caption\">1 is the floor: the best a model can do without computing anything for later positions (floors: \(loaded.map { "\($0.name) \(String(format: "%.4f", $0.floorLoss))" }.joined(separator: ", "))). The paper: vanilla ≈ 0, myopic at the floor.</p>"
        var series: [SVG.Series] = [], colors: [String] = [], dashes: [String?] = []
        for (i, s) in loaded.enumerated() {
            guard let lag = s.lags.firstIndex(of: 0) else { continue }
            for (flow, r2) in [("vanilla", s.vanillaR2), ("myopic", s.myopicR2)] where !r2.isEmpty {
                let points = s.layers.indices.map { l in (x: Double(s.layers[l]), y: r2.map { $0[l][lag] }.reduce(0, +) / Double(r2.count)) }
                series.append(SVG.Series(name: "\(s.name) \(flow)", points: points))
                colors.append(SVG.color(forFlow: flow, fallback: i))
                dashes.append(SVG.dashes[i % SVG.dashes.count])
            }
        }
        html += SVG.lineChart(title: "R² of sin(f·x_n) from each residual stream (mean over seeds)", xLabel: "residual stream (0 = embeddings)",
                              yLabel: "held-out R²", series: series, colors: colors, dashes: dashes)
        html += "<p class=\"caption\">Lag 0: sin(f·x<sub>n</sub>) is of no use at n itself; a model that holds it computed it for later positions. The paper: R² up to ≈ 0.9 on layer 1 of the vanilla model.</p></section>"
        return [html]
    }
}

extension Report {
    /// dynamics.json drawn as time series over the kept checkpoints (log-scaled steps).
    static func dynamicsSection(_ t: DynamicsTable, folder: URL) -> String {
        var html = "<section class=\"dynamics\"><h2>Pre-caching over training — \(SVG.escape(folder.lastPathComponent))</h2>"
        html += "<p class=\"caption\">Every kept checkpoint of the run, measured on its validation split\(t.twin.map { " (myopic twin: <code>\(SVG.escape($0))</code>)" } ?? ""): does pre-caching appear at once, late, or in a phase change?</p><div class=\"charts\">"
        let x = t.points.map { Double(max($0.step, 1)) }
        func over(_ values: [Double]) -> [(x: Double, y: Double)] { zip(x, values).map { (x: $0, y: $1) } }
        var loss = [SVG.Series(name: "validation loss", points: over(t.points.map(\.valLoss)))]
        let gaps = t.points.compactMap { p in p.gap.map { (x: Double(max(p.step, 1)), y: $0) } }
        if !gaps.isEmpty { loss.append(SVG.Series(name: "gap: myopic twin − this run", points: gaps)) }
        html += SVG.lineChart(title: "Loss and the myopia gap", xLabel: "step (log scale)", yLabel: "nats/token", series: loss, width: 520, logX: true)
        let streams = t.points.first?.horizonMeanOffset.count ?? 0
        let names = (0..<streams).map { $0 == streams - 1 ? "final" : "stream \($0)" }
        html += SVG.lineChart(title: "Horizon: mean offset k by residual stream", xLabel: "step (log scale)", yLabel: "mean offset",
                              series: (0..<streams).map { l in SVG.Series(name: names[l], points: over(t.points.map { $0.horizonMeanOffset[l] })) },
                              width: 520, logX: true, sequential: "residual stream")
        let probeStreams = t.points.first?.probeGain.count ?? 0
        html += SVG.lineChart(title: "Probe k = 1: current-token loss − probe loss", xLabel: "step (log scale)", yLabel: "gain (nats)",
                              series: (0..<probeStreams).map { l in SVG.Series(name: "stream \(l)", points: over(t.points.map { $0.probeGain[l] })) },
                              width: 520, logX: true, sequential: "residual stream")
        if !t.gradientSplit.isEmpty {
            html += SVG.lineChart(title: "‖g_future‖ / ‖g_vanilla‖ (logged while training)", xLabel: "step (log scale)", yLabel: "norm ratio",
                                  series: [SVG.Series(name: "all parameters", points: t.gradientSplit.map { (x: Double(max($0.step, 1)), y: $0.futureShare) })],
                                  width: 520, logX: true)
        }
        html += "</div><p class=\"caption\">Steps: \(t.points.map { String($0.step) }.joined(separator: ", ")).</p>"
        return html + "</section>"
    }
}
