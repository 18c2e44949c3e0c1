import Foundation
import Myopia

// The report's section for a `myopia games` folder (games.json): the upstream table of each game
// as heatmaps, and each measurement across games as a chart.

extension Report {
    static func gamesSection(_ s: GamesExperiment.Summary, folder: URL) -> String {
        typealias Interval = GamesExperiment.Interval
        let c = s.settings, labels = s.games.map(\.label)
        let colors = labels.indices.map { SVG.colors[$0 % SVG.colors.count] }
        func f(_ v: Double, _ d: Int = 4) -> String { v.isFinite ? String(format: "%.\(d)f", v) : "–" }
        func interval(_ x: Interval, signed: Bool = false) -> String {
            x.low.map { "\(f($0)) … \(f(x.high ?? $0))" } ?? "–"
        }
        func point(_ x: Interval) -> (mean: Double, low: Double?, high: Double?)? { x.perSeed.isEmpty ? nil : (x.mean, x.low, x.high) }

        var html = "<section class=\"games\"><h2>The games experiment — \(SVG.escape(folder.lastPathComponent))</h2>"
        html += "<p class=\"caption\">\(s.games.count) games × \(s.seeds.count) seed(s) on \(SVG.escape(s.data)), the same initial weights and batches for every game: \(c.family.rawValue), \(c.layers) layers, d_model \(c.dModel), \(c.heads) heads, T \(c.seqLen), batch \(c.batch), \(c.steps) steps, \(SVG.escape(c.flow.description)) flow. Validation: \(s.validationTokens) predictions in \(s.validationWindows) windows. Intervals are 95% t-intervals over seeds (mean ± t<sub>0.975, n−1</sub>·s/√n); one seed gives none.</p>"
        html += "<table><tr><th>game</th><th>val loss (mean)</th><th>95% interval</th><th>per seed</th><th>continuation advantage</th><th>loops</th><th>free-running / teacher-forced loss</th></tr>"
        for g in s.games {
            let gen = g.generation
            html += "<tr><td>\(SVG.escape(g.game.description))</td><td>\(f(g.valLoss.mean))</td><td>\(interval(g.valLoss))</td><td>\(g.valLoss.perSeed.map { f($0) }.joined(separator: " "))</td><td>\(String(format: "%+.4f", g.continuationAdvantage.mean))</td><td>\(f(gen.loopShare.mean, 2))</td><td>\(f(gen.freeRunningLoss.mean, 3)) / \(f(gen.teacherForcedLoss.mean, 3))</td></tr>"
        }
        html += "</table>"
        html += SelfReinforcement.sideBySideHTML(s.games.map { ($0.label, $0.loops) }, escape: SVG.escape)
        if !s.consequence.isEmpty {
            html += "<table><tr><th>consequence game against teacher forcing (paired by seed)</th><th>mean</th><th>95% interval</th><th>per seed</th></tr>"
            for d in s.consequence {
                for (what, x) in [("next-token loss given up: \(d.label) − \(d.baseline)", d.valLossGivenUp),
                                  ("continuation advantage gained: \(d.label) − \(d.baseline)", d.advantageGain)] {
                    html += "<tr><td>\(SVG.escape(what))</td><td><b>\(String(format: "%+.4f", x.mean))</b></td><td>\(interval(x))</td><td>\(x.perSeed.map { String(format: "%+.4f", $0) }.joined(separator: " "))</td></tr>"
                }
            }
            html += "</table>"
            html += "<p class=\"caption\">The continuation advantage is R(x̂) − R(x<sub>t+1</sub>) with R = −(mean loss of the K = \(s.measure.advantageHorizon ?? 0) true tokens that follow), x̂ drawn from the model at temperature 1, each model scored on its own samples. The consequence game is trained to raise it; what it pays for that shows as next-token loss given up.</p>"
        }

        html += "<div class=\"charts\">"
        html += SVG.intervalChart(title: "Validation loss by game (95% interval over seeds)", yLabel: "loss (nats/token)",
                                  categories: ["validation"],
                                  series: s.games.map { SVG.IntervalSeries(name: $0.label, values: [point($0.valLoss)]) }, colors: colors)
        let perPosition = s.games.map { g in SVG.Series(name: g.label, points: g.positionLoss.enumerated().map { (x: Double($0.offset + 1), y: $0.element) }) }
        html += SVG.lineChart(title: "Loss by position in the window", xLabel: "position + 1 (log scale)", yLabel: "loss (nats/token)",
                              series: perPosition, colors: colors, width: 520, logX: true)
        let offsets = s.games.map { g in SVG.Series(name: g.label, points: g.horizonMeanOffset.enumerated().map { (x: Double($0.offset), y: $0.element) }) }
        html += SVG.lineChart(title: "Horizon: mean offset by residual stream", xLabel: "residual stream l (L: after the last block)",
                              yLabel: "mean offset k", series: offsets, colors: colors, width: 520)
        html += SVG.intervalChart(title: "Generation: loop share and distinct-2", yLabel: "share",
                                  categories: ["samples in a loop", "distinct-2 (pooled)"],
                                  series: s.games.map { g in SVG.IntervalSeries(name: g.label, values: [point(g.generation.loopShare),
                                                                                                         g.generation.distinct[2].flatMap(point)]) },
                                  colors: colors)
        html += SVG.intervalChart(title: "Generation: free-running against teacher-forced loss", yLabel: "loss (nats/token)",
                                  categories: ["free-running (own samples)", "teacher-forced (held-out text)"],
                                  series: s.games.map { g in SVG.IntervalSeries(name: g.label, values: [point(g.generation.freeRunningLoss),
                                                                                                         point(g.generation.teacherForcedLoss)]) },
                                  colors: colors)
        html += SVG.intervalChart(title: "Continuation advantage R(x̂) − R(x) of each model's own samples", yLabel: "Δ reward (nats/token)",
                                  categories: ["continuation advantage"],
                                  series: s.games.map { SVG.IntervalSeries(name: $0.label, values: [point($0.continuationAdvantage)]) },
                                  colors: colors)
        if !s.consequence.isEmpty {
            html += SVG.intervalChart(title: "The consequence game − teacher forcing, paired by seed", yLabel: "difference",
                                      categories: ["next-token loss given up", "continuation advantage gained"],
                                      series: s.consequence.map { SVG.IntervalSeries(name: $0.label, values: [point($0.valLossGivenUp), point($0.advantageGain)]) },
                                      colors: s.consequence.indices.map { i in colors[labels.firstIndex(of: s.consequence[i].label) ?? i] })
        }
        html += "</div>"

        html += "<h3>The upstream table of each game</h3>"
        html += "<p class=\"caption\">Rows are the free variables at position i: the residual stream h<sub>l,i</sub> entering block l (l = L: after the last block), their mean over layers, and the sampled output x̂<sub>i+1</sub>; columns the offset k of the loss terms (target token i+1+k). <b>Upstream</b>: how much those losses depend on the variable at all; <b>optimised</b>: the norm of the part of the training gradient, under the game and the flow, that runs through that path. Cells marked <i>exact 0</i> are zero exactly — no such path, or no gradient through it (under teacher forcing the outputs are upstream of nothing). Means over seeds; log colour scale.</p>"
        for g in s.games {
            let (rows, optimised, upstream) = upstreamGrid(g.upstream)
            guard !rows.isEmpty else { continue }
            let columns = (0...g.upstream.maxOffset).map { "k=\($0)" }
            html += "<div class=\"charts\">"
            html += SVG.heatmap(title: "\(g.label): optimised", rowLabel: "variable", columnLabel: "offset k", rows: rows, columns: columns,
                                values: optimised, unit: "optimised", logScale: true, markZeros: true)
            html += SVG.heatmap(title: "\(g.label): upstream", rowLabel: "variable", columnLabel: "offset k", rows: rows, columns: columns,
                                values: upstream, unit: "upstream", logScale: true, markZeros: true)
            html += "</div>"
            if let w = g.upstream.cell("weights", offset: 0) {
                html += caption("\(SVG.escape(g.label)): the weights (at no position) — upstream \(SVG.label(w.upstream)), optimised \(SVG.label(w.optimised)); \(g.upstream.windows) windows, \(SVG.escape(g.upstream.flow)) flow.")
            }
        }
        html += settingsBlock(try? JSONEncoder.sorted.encode(s.settings), title: "settings")
        html += settingsBlock(try? JSONEncoder.sorted.encode(s.measure), title: "measurement settings")
        return html + "</section>"
    }

    /// The heatmap rows of an upstream table (activations per layer, their mean, outputs) and
    /// each row's optimised and upstream numbers by offset 0…maxOffset (NaN where not measured).
    static func upstreamGrid(_ t: UpstreamTable) -> (rows: [String], optimised: [[Double]], upstream: [[Double]]) {
        var keys: [(label: String, variable: String, layer: Int?)] = []
        let layers = Set(t.cells.filter { $0.variable == "activations" }.compactMap(\.layer)).sorted()
        for l in layers { keys.append((l == t.layers ? "h final (l=\(l))" : "h layer \(l)", "activations", l)) }
        if t.cells.contains(where: { $0.variable == "activations" && $0.layer == nil }) { keys.append(("h mean over l", "activations", nil)) }
        if t.cells.contains(where: { $0.variable == "outputs" }) { keys.append(("outputs x̂", "outputs", nil)) }
        let offsets = Array(0...max(0, t.maxOffset))
        let optimised = keys.map { k in offsets.map { t.cell(k.variable, layer: k.layer, offset: $0)?.optimised ?? .nan } }
        let upstream = keys.map { k in offsets.map { t.cell(k.variable, layer: k.layer, offset: $0)?.upstream ?? .nan } }
        return (keys.map(\.label), optimised, upstream)
    }
}
