import Foundation
import Myopia

// The report's section for a `myopia bonus` folder (bonus.json and its runs), beside the gap's.

extension Report {
    static func bonusSection(_ s: Bonus.Summary, folder: URL) -> String {
        let c = s.settings
        var html = "<section class=\"bonus\"><h2>The local myopia bonus — \(SVG.escape(folder.lastPathComponent))</h2>"
        html += "<p class=\"caption\">Fine-tuned from <code>\(SVG.escape(s.reference.source))</code>, \(s.seeds.count) seed(s), on \(SVG.escape(s.data)): \(c.family.rawValue), \(c.layers) layers, d_model \(c.dModel), \(c.heads) heads, T \(c.seqLen), batch \(c.batch), \(c.steps) steps at peak lr \(c.lr). Validation: \(s.validationTokens) predictions in \(s.validationWindows) windows.</p>"
        html += "<table><tr><th>model</th><th>val loss (mean)</th><th>± std</th><th>per seed</th></tr>"
        html += "<tr><td>reference (no fine-tuning)</td><td>\(String(format: "%.4f", s.reference.valLoss))</td><td>–</td><td>local-myopic at zero steps: \(String(format: "%.4f", s.reference.localMyopicValLoss))</td></tr>"
        for f in s.flows {
            html += "<tr><td>\(f.flow == "vanilla" ? "vanilla (control)" : SVG.escape(f.flow))</td><td>\(String(format: "%.4f", f.valLoss.mean))</td><td>\(f.valLoss.std.map { String(format: "%.4f", $0) } ?? "–")</td><td>\(f.valLoss.perSeed.map { String(format: "%.4f", $0) }.joined(separator: " "))</td></tr>"
        }
        let b = s.bonus
        html += "<tr><td><b>bonus: vanilla − local-myopic</b></td><td><b>\(String(format: "%+.4f", b.valLoss.mean))</b></td><td>\(b.valLoss.std.map { String(format: "%.4f", $0) } ?? "–")</td><td>\(b.valLoss.perSeed.map { String(format: "%+.4f", $0) }.joined(separator: " "))</td></tr></table>"
        html += "<p class=\"caption\">The local-myopic model attends, for earlier positions, to the frozen reference's keys and values, so each position is trained only for its own next token. A positive bonus means the vanilla model gives up next-token loss to serve later tokens (Wu, Morris &amp; Levine 2024: +0.02 nats for GPT-2 124M).</p>"
        let (curves, colors) = meanValidationCurves(folder, flows: s.flows.map(\.flow), seeds: s.seeds)
        html += "<div class=\"charts\">"
        html += SVG.lineChart(title: "Validation loss during fine-tuning", xLabel: "step", yLabel: "loss (nats/token)",
                              series: curves, colors: colors, width: 520)
        let perSeedBonus = zip(s.flows[0].positionLossPerSeed, s.flows[1].positionLossPerSeed).map { zip($0, $1).map { $0 - $1 } }
        let band: [Double]? = perSeedBonus.count > 1 ? b.positionLoss.indices.map { i in
            let xs = perSeedBonus.map { $0[i] }, mean = xs.reduce(0, +) / Double(xs.count)
            return (xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(xs.count - 1)).squareRoot()
        } : nil
        html += SVG.lineChart(title: "The bonus by position: vanilla − local-myopic (± std over seeds)", xLabel: "position + 1 (log scale)",
                              yLabel: "Δ loss (nats/token)",
                              series: [SVG.Series(name: "vanilla − local-myopic", points: b.positionLoss.enumerated().map { (x: Double($0.offset + 1), y: $0.element) }, band: band)],
                              colors: [SVG.color(forFlow: "local-myopic", fallback: 1)], width: 520, logX: true)
        html += "</div>"
        html += settingsBlock(try? JSONEncoder.sorted.encode(s.settings), title: "settings")
        return html + "</section>"
    }
}
