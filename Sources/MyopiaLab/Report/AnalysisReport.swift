import Foundation
import Myopia

// The report's sections for what the analysis commands leave in a run folder (`--out RUN`):
// probe.json, sine_probe.json, lens.json, generation.json and eval.json, each with the command
// that made it (commands.json).

extension Report {
    /// The analysis sections of `run`, in a fixed order.
    static func analysisSections(_ run: URL) throws -> [String] {
        let records = try RunFolder.records(in: run)
        func made(_ file: String) -> String {
            guard let record = records[file] else { return "" }
            return settingsBlock(try? RunFolder.encoder.encode(record), title: "how \(file) was made: myopia \(record.command)")
        }
        var out: [String] = []
        if let t = try RunFolder.load(EvaluationResult.self, EvaluationResult.fileName, in: run) {
            out.append(evalSection(t, folder: run, record: records[EvaluationResult.fileName]) + made(EvaluationResult.fileName))
        }
        if let t = try RunFolder.load(ProbeTable.self, ProbeTable.fileName, in: run) {
            out.append(probeSection(t, folder: run) + made(ProbeTable.fileName))
        }
        if let t = try RunFolder.load(SineProbeTable.self, SineProbeTable.fileName, in: run) {
            out.append(sineProbeSection(t, folder: run) + made(SineProbeTable.fileName))
        }
        if let t = try RunFolder.load(LensTable.self, LensTable.fileName, in: run) {
            out.append(lensSection(t, folder: run) + made(LensTable.fileName))
        }
        if let t = try RunFolder.load(GenerationStudy.Report.self, GenerationStudy.fileName, in: run) {
            out.append(generationSection(t, folder: run) + made(GenerationStudy.fileName))
        }
        return out.map { $0 + "</section>" }
    }

    static func heading(_ cls: String, _ title: String, _ folder: URL) -> String {
        "<section class=\"\(cls)\"><h2>\(title) — \(SVG.escape(folder.lastPathComponent))</h2>"
    }

    static func caption(_ text: String) -> String { "<p class=\"caption\">\(text)</p>" }

    static func f(_ v: Double?, _ format: String = "%.4f") -> String { v.map { String(format: format, $0) } ?? "–" }

    /// Row names of a residual stream: h_l enters block l; the model's last one is "after the last block".
    static func streamNames(_ layers: [Int], modelLayers: Int?) -> [String] {
        layers.map { $0 == modelLayers ? "\($0) (final)" : "layer \($0)" }
    }

    // MARK: - eval

    static func evalSection(_ r: EvaluationResult, folder: URL, record: AnalysisRecord?) -> String {
        var html = heading("eval", "Evaluation", folder)
        let on = record.map { " of <code>\(SVG.escape($0.model ?? "?"))</code> on <code>\(SVG.escape($0.data ?? "?"))</code>" } ?? ""
        html += caption("Mean next-token loss\(on): <b>\(f(r.loss))</b> nats/token (\(f(r.loss / log(2), "%.3f")) bits) over \(r.tokens) predictions in \(r.windows) windows of \(r.positionLoss.count).")
        html += SVG.lineChart(title: "Loss by position in the window", xLabel: "position + 1 (log scale)", yLabel: "loss (nats/token)",
                              series: [positionSeries("loss", r.positionLoss)], logX: true)
        html += caption("Early positions see little context, so their loss is highest; the curve flattens once the context stops helping.")
        return html
    }

    static func positionSeries(_ name: String, _ values: [Double]) -> SVG.Series {
        SVG.Series(name: name, points: values.enumerated().map { (x: Double($0.offset + 1), y: $0.element) })
    }

    // MARK: - probes

    static func probeSection(_ t: ProbeTable, folder: URL) -> String {
        var html = heading("probe", "Future-token probes", folder)
        html += caption("A linear softmax probe from each residual stream h<sub>l,i</sub> to the token at i+1+k, trained on \(t.trainPositions) positions and scored on \(t.heldOutPositions) held-out ones, over the \(t.top) most frequent tokens plus “other” (\(t.classes) classes; \(f(100 * t.coverage, "%.1f"))% of held-out targets are in the top \(t.top)). The last two rows are baselines on the same positions: the unigram distribution, and the best predictor from the current token alone.")
        let rows = streamNames(t.layers, modelLayers: nil) + ["unigram", "current token"]
        let columns = t.offsets.map { "k=\($0)" }
        html += "<div class=\"charts\">"
        html += SVG.heatmap(title: "Held-out probe loss (lower is better)", rowLabel: "residual stream", columnLabel: "offset k: the token at i+1+k",
                            rows: rows, columns: columns, values: t.loss + [t.unigramLoss, t.currentTokenLoss], unit: "nats/token", decimals: 3)
        html += SVG.heatmap(title: "Held-out top-1 accuracy (higher is better)", rowLabel: "residual stream", columnLabel: "offset k: the token at i+1+k",
                            rows: rows, columns: columns, values: (t.accuracy + [t.unigramAccuracy, t.currentTokenAccuracy]).map { $0.map { 100 * $0 } },
                            unit: "% correct", decimals: 1)
        html += "</div>"
        let gain = t.layers.indices.map { j in
            SVG.Series(name: rows[j], points: t.offsets.indices.map { (x: Double(t.offsets[$0]), y: t.currentTokenLoss[$0] - t.loss[j][$0]) })
        }
        html += SVG.lineChart(title: "What the hidden state knows beyond the current token", xLabel: "offset k",
                              yLabel: "current-token loss − probe loss (nats)", series: gain, sequential: "residual stream")
        html += caption("Above zero at k ≥ 1, a layer's hidden state carries information about a later token that the current token alone does not: pre-cached or inferred from the context. Compare the layers: a gain that grows with depth is computed by the model, not read from the embedding.")
        return html
    }

    static func sineProbeSection(_ t: SineProbeTable, folder: URL) -> String {
        var html = heading("sine-probe", "Sine-task regression probes", folder)
        html += caption("Held-out R² of least-squares probes from h<sub>l,n</sub> onto sin(\(f(t.frequency, "%g"))·x<sub>n−i</sub> (p \(f(t.p, "%g")), W \(t.window), \(t.trainSequences) training / \(t.heldOutSequences) held-out sequences of \(t.seqLen)).")
        html += SVG.heatmap(title: "Held-out R² of sin(f·x_{n−i}) from h_{l,n}", rowLabel: "residual stream", columnLabel: "lag i",
                            rows: streamNames(t.layers, modelLayers: nil), columns: t.lags.map { "i=\($0)" }, values: t.r2, unit: "R²", decimals: 3)
        html += caption("Lag 0 is the pre-caching signature: sin(f·x<sub>n</sub>) is useless at n itself (z<sub>n</sub> = 1 asks for the earlier positions' sines), so a model that holds it there computed it for later positions. A myopic model's row stays near 0; layer 0 is the linear baseline from the inputs.")
        return html
    }

    // MARK: - logit lens

    static func lensSection(_ t: LensTable, folder: URL) -> String {
        var html = heading("lens", "Logit lens", folder)
        html += caption("The model's own final norm and unembedding applied to each residual stream h<sub>l,i</sub>, scored on the token at i+1+k over \(t.windows) windows of \(t.seqLen). The last row is the unigram distribution of the file on the same targets: a lens row above it says nothing about that token.")
        let rows = streamNames(t.layers, modelLayers: t.modelLayers)
        let columns = t.offsets.map { "k=\($0)" }
        html += "<div class=\"charts\">"
        html += SVG.heatmap(title: "Lens loss (log colour scale; lower is better)", rowLabel: "residual stream", columnLabel: "offset k: the token at i+1+k",
                            rows: rows + ["unigram"], columns: columns, values: t.loss + [t.unigramLoss], unit: "nats/token", logScale: true, decimals: 2)
        html += SVG.heatmap(title: "Lens top-1 accuracy (higher is better)", rowLabel: "residual stream", columnLabel: "offset k: the token at i+1+k",
                            rows: rows, columns: columns, values: t.accuracy.map { $0.map { 100 * $0 } }, unit: "% correct", decimals: 1)
        html += "</div>"
        html += caption("The final row at k = 0 is the model's own loss (what <code>myopia eval</code> reports). How early a layer's k = 0 cell approaches it shows when the next token becomes readable; k ≥ 1 cells show whether the head reads later tokens off the stream at all.")
        return html
    }

    // MARK: - generation

    static func generationSection(_ g: GenerationStudy.Report, folder: URL) -> String {
        let m = g.metrics, o = g.options
        var html = heading("generation", "Generation samples", folder)
        let sampling = o.greedy ? "greedy" : "temperature \(f(o.temperature, "%g"))" + (o.top_k.value.map { ", top-k \($0)" } ?? "") + (o.top_p.value.map { ", top-p \(f($0, "%g"))" } ?? "")
        html += caption("\(m.samples) sample(s) of up to \(o.max_tokens) tokens from <code>\(SVG.escape(g.model))</code> (\(sampling), seeds \(o.seed)…), prompt <code>\(SVG.escape(g.prompt))</code>.")
        html += "<table><tr><th>metric</th><th>value</th></tr>"
        for d in m.distinct {
            html += "<tr><td>distinct-\(d.n) (pooled; mean per sample)</td><td>\(f(d.pooled, "%.3f")); \(f(d.perSampleMean, "%.3f"))</td></tr>"
        }
        html += "<tr><td>samples ending in a loop</td><td>\(m.loop_count) of \(m.samples)\(m.loop_share.value.map { String(format: " (%.0f%%)", 100 * $0) } ?? "")</td></tr>"
        html += "<tr><td>free-running loss (its own samples)</td><td>\(f(m.free_running.loss)) nats/token over \(m.free_running.tokens) tokens</td></tr>"
        if let tf = m.teacher_forced.value {
            html += "<tr><td>teacher-forced loss (<code>\(SVG.escape(m.reference.value ?? "reference"))</code>)</td><td>\(f(tf.loss)) nats/token over \(tf.tokens) tokens</td></tr>"
        }
        html += "</table>"
        html += caption("Highlighted: the loop each sample ends in (a cycle of period ≤ \(RepetitionMetrics.maxLoopPeriod) repeated ≥ \(RepetitionMetrics.minLoopRepeats) times), alternate repeats shaded differently so the period shows. Low distinct-n and many loops mean the model repeats itself; teacher forcing never shows this, since it never feeds a model its own tokens.")
        // The samples folded: a long report stays readable; the table above says what they show.
        html += "<details class=\"samples\"><summary>The \(g.samples.count) sample(s)</summary>"
        for s in g.samples {
            let loop = s.loop.value
            let head = "sample \(s.index + 1), seed \(s.seed): \(s.tokens.count) tokens, stopped: \(s.stop_reason.rawValue), loss \(f(s.loss.loss, "%.3f"))"
                + (loop.map { " — loop of period \($0.period) × \($0.repeats) over the last \($0.length) tokens" } ?? "")
            html += "<div class=\"sample\"><div class=\"samplehead\">\(SVG.escape(head))</div><pre><b>\(SVG.escape(g.prompt))</b>\(sampleText(s))</pre></div>"
        }
        return html + "</details>"
    }

    /// A sample's text with its loop marked: the last `loop.length` tokens, each repeat of the cycle
    /// (counted back from the end) in its own `<mark>`, alternating two shades.
    static func sampleText(_ s: GenerationStudy.Sample) -> String {
        guard let texts = s.token_texts, texts.count == s.tokens.count else { return SVG.escape(s.text) }
        let shown = s.stop_reason == .endOfText ? texts.count - 1 : texts.count   // the end-of-text token is not text
        let loopStart = s.loop.value.map { texts.count - $0.length } ?? texts.count
        var html = SVG.escape(texts[0..<min(loopStart, shown)].joined())
        guard let loop = s.loop.value, loopStart < shown else { return html }
        var i = loopStart
        while i < shown {
            let cycle = (texts.count - 1 - i) / loop.period                    // 0 for the last repeat
            let end = min(shown, texts.count - cycle * loop.period)
            html += "<mark class=\"loop\(cycle % 2 == 0 ? "a" : "b")\">\(SVG.escape(texts[i..<end].joined()))</mark>"
            i = end
        }
        return html
    }
}
