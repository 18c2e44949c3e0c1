import Foundation
import Myopia

/// One self-contained HTML report (inline SVG and CSS, no scripts, no network) built from run
/// folders: gap studies (gap.json and their runs' metrics), games experiments (games.json;
/// GamesReport.swift), bonus studies (bonus.json), training runs
/// (metrics.jsonl, with the gradient split when it was logged), horizon tables (horizon*.json) and
/// what the analysis commands leave with `--out` (eval.json, probe.json, sine_probe.json, lens.json,
/// generation.json; AnalysisReport.swift), with each run's settings. Several runs of the same kind
/// are also drawn together (ReportComparisons.swift). A folder with nothing of its own to show
/// stands for the run folders inside it (a demo's, say).
public enum Report {
    public static let defaultFile = "report.html"

    /// The report for `runs` (folders); a folder that holds nothing reportable is a typed error.
    /// With `file` (where the report will be written), paths under its folder are written relative
    /// to it. A demo folder's summary.json heads the report as the table `myopia demo` prints.
    public static func build(runs: [URL], title: String = "Myopia report", file: URL? = nil) throws -> String {
        var sections: [String] = [], shown: [URL] = []
        for run in runs {
            var found = try section(for: run), folders = [run]
            if found.isEmpty {
                folders = childRuns(of: run)
                for child in folders { found += try section(for: child) }
            }
            guard !found.isEmpty else {
                throw InputError.invalidValue(file: run.path, field: "(folder)", expected: "a run folder (\(reportableFiles)) or a folder of them", found: "none of these")
            }
            sections += found
            shown += folders
        }
        // The demo table: of a folder named, or of the folder the report is written into.
        var summaryFolders: [URL] = []
        for folder in runs + [file?.deletingLastPathComponent()].compactMap({ $0 })
            where !summaryFolders.contains(where: { $0.standardizedFileURL.path == folder.standardizedFileURL.path }) {
            summaryFolders.append(folder)
        }
        sections = summarySections(summaryFolders) + (try comparisonSections(shown)) + sections
        let (numbered, contents) = tableOfContents(sections)
        let generated = ISO8601DateFormatter().string(from: Date())
        let base = file?.deletingLastPathComponent().standardizedFileURL.path
        func relative(_ url: URL) -> String {
            guard let base else { return url.path }
            let path = url.standardizedFileURL.path
            return path == base ? "." : path.hasPrefix(base + "/") ? String(path.dropFirst(base.count + 1)) : path
        }
        let html = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(SVG.escape(title))</title>
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <style>\(css)</style></head>
        <body><header><h1>\(SVG.escape(title))</h1>
        <p class="meta">Generated \(generated) from \(runs.map { "<code>\(SVG.escape(relative($0)))</code>" }.joined(separator: ", "))\(base == nil ? "" : " (paths relative to this report)").
        Losses are in nats per token. Wherever flows are compared, vanilla is blue, myopic red and bigram green (a second run of a flow dashed); other models take other colours, and a model's layers a sequential scale with a colour bar.</p></header>
        \(contents)
        \(numbered.joined(separator: "\n"))
        </body></html>
        """
        // Every other path under the report's folder, relative to it too.
        guard let base else { return html }
        return html.replacingOccurrences(of: base + "/", with: "")
    }

    /// The sections numbered (`id="s1"`, …) and a table of contents linking to their titles.
    static func tableOfContents(_ sections: [String]) -> (sections: [String], contents: String) {
        var numbered: [String] = [], items: [String] = []
        for (i, section) in sections.enumerated() {
            guard let open = section.range(of: "<h2>"), let close = section.range(of: "</h2>", range: open.upperBound..<section.endIndex) else {
                numbered.append(section)
                continue
            }
            let id = "s\(i + 1)"
            let title = section[open.upperBound..<close.lowerBound].replacingOccurrences(of: "<[^>]+>", with: "", options: .regularExpression)
            numbered.append(section.replacingCharacters(in: open, with: "<h2 id=\"\(id)\">"))
            items.append("<li><a href=\"#\(id)\">\(title)</a></li>")
        }
        return (numbered, "<nav class=\"toc\"><h2>Contents</h2><ol>\(items.joined())</ol></nav>")
    }

    /// The table `myopia demo` printed, for each folder holding a demo's summary.json.
    static func summarySections(_ runs: [URL]) -> [String] {
        runs.compactMap { run in
            guard let summary = try? RunFolder.load(Demo.Summary.self, Demo.summaryFile, in: run) else { return nil }
            return "<section class=\"summary\"><h2>Summary — \(SVG.escape(run.lastPathComponent))</h2><pre>\(SVG.escape(Demo.format(summary)))</pre></section>"
        }
    }

    static let reportableFiles = "gap.json, games.json, bonus.json, run_config.json + metrics.jsonl, horizon*.json, dynamics.json, eval.json, probe.json, sine_probe.json, lens.json or generation.json"

    /// The folders directly inside `folder` that hold something to show, by name (checkpoints skipped).
    static func childRuns(of folder: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.sorted().filter { !$0.hasPrefix("checkpoint-") && !$0.hasPrefix(".") }.map { folder.appendingPathComponent($0) }
            .filter { (try? section(for: $0).isEmpty) == false }
    }

    static let css = """
    body{font:15px/1.45 -apple-system,system-ui,"Segoe UI",sans-serif;max-width:1100px;margin:0 auto;padding:16px 24px;color:#222}
    h1{font-size:24px;margin:8px 0} h2{font-size:19px;margin:28px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
    h3{font-size:16px;margin:18px 0 4px} .meta,.caption{color:#555;font-size:13px} .caption{margin:2px 0 14px;max-width:900px}
    table{border-collapse:collapse;font-size:14px;margin:8px 0} td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
    th:first-child,td:first-child{text-align:left} code,pre{font:12px/1.4 ui-monospace,Menlo,monospace} pre{background:#f6f6f6;padding:8px;overflow:auto}
    .chart{max-width:100%;height:auto;display:block;margin:4px 0} .chart text{font-size:11px;fill:#333} .chart .title{font-size:13px;font-weight:600}
    .chart .label{font-size:12px} .chart .legend{font-size:11px} .axis line{stroke:#444} .axis line.grid{stroke:#e6e6e6}
    .series{stroke-width:2} .band{opacity:.18} .cellvalue{font-size:10px} .charts{display:flex;flex-wrap:wrap;gap:8px}
    .scroll{max-width:100%;overflow-x:auto;margin:4px 0} .scroll>svg.chart{max-width:none} .charts>.scroll{flex:0 1 auto;min-width:0}
    nav.toc ol{columns:2;font-size:14px;margin:4px 0 12px} nav.toc h2{margin-top:12px}
    .sample{margin:8px 0 12px} .samplehead{font-size:13px;color:#555} .sample pre{white-space:pre-wrap;word-break:break-word;margin:2px 0}
    mark.loopa{background:#ffd166} mark.loopb{background:#f4a259} sub{font-size:75%}
    """

    /// What the report reads of a metrics.jsonl line: the token models' log and the sine task's
    /// (which has no tokens/s) both have these.
    struct LoggedStep: Decodable {
        var step: Int
        var trainLoss: Double
        var valLoss: Double?
        var gradientSplit: [String: GradientSplitStats]?

        enum CodingKeys: String, CodingKey {
            case step
            case trainLoss = "train_loss", valLoss = "val_loss", gradientSplit = "gradient_split"
        }
    }

    static func metrics(_ run: URL) -> [LoggedStep] {
        guard let text = try? String(contentsOf: run.appendingPathComponent(Trainer.metricsFile), encoding: .utf8) else { return [] }
        let decoder = RunFolder.decoder
        return text.split(separator: "\n").compactMap { try? decoder.decode(LoggedStep.self, from: Data($0.utf8)) }
    }

    /// The unit of a run's loss: nats per token, or the regression loss its run_config.json names.
    static func lossUnit(_ run: URL) -> String {
        let config = (try? Data(contentsOf: run.appendingPathComponent(Trainer.runConfigFile)))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        return (config?["loss"] as? String).map { "loss (\($0))" } ?? "loss (nats/token)"
    }

    static func section(for run: URL) throws -> [String] {
        var out: [String] = []
        if let data = try? Data(contentsOf: run.appendingPathComponent(Gap.summaryFile)) {
            let summary: Gap.Summary
            do { summary = try RunFolder.decoder.decode(Gap.Summary.self, from: data) } catch {
                throw InputError.invalidHeader(file: run.appendingPathComponent(Gap.summaryFile).path, field: "(json)", reason: "\(error)")
            }
            out.append(gapSection(summary, folder: run))
        } else if let data = try? Data(contentsOf: run.appendingPathComponent(GamesExperiment.summaryFile)) {
            let summary: GamesExperiment.Summary
            do { summary = try RunFolder.decoder.decode(GamesExperiment.Summary.self, from: data) } catch {
                throw InputError.invalidHeader(file: run.appendingPathComponent(GamesExperiment.summaryFile).path, field: "(json)", reason: "\(error)")
            }
            out.append(gamesSection(summary, folder: run))   // GamesReport.swift
        } else if let data = try? Data(contentsOf: run.appendingPathComponent(Bonus.summaryFile)) {
            let summary: Bonus.Summary
            do { summary = try RunFolder.decoder.decode(Bonus.Summary.self, from: data) } catch {
                throw InputError.invalidHeader(file: run.appendingPathComponent(Bonus.summaryFile).path, field: "(json)", reason: "\(error)")
            }
            out.append(bonusSection(summary, folder: run))   // BonusReport.swift
        } else if FileManager.default.fileExists(atPath: run.appendingPathComponent(Trainer.runConfigFile).path) {
            out.append(trainSection(run))
        }
        let records = try RunFolder.records(in: run)
        for (name, table) in try horizonTables(run) {
            out.append(horizonSection(table, file: run.appendingPathComponent(name))
                       + (records[name].map { settingsBlock(try? RunFolder.encoder.encode($0), title: "how \(name) was made: myopia \($0.command)") } ?? "")
                       + "</section>")
        }
        if let dynamics = try RunFolder.load(DynamicsTable.self, DynamicsTable.fileName, in: run) {
            out.append(dynamicsSection(dynamics, folder: run))   // ReproduceReport.swift
        }
        return out + (try analysisSections(run))
    }

    // MARK: - Gap

    /// Validation loss against step for each flow's runs in a gap or bonus folder, mean over seeds,
    /// with each flow's colour.
    static func meanValidationCurves(_ folder: URL, flows: [String], seeds: [UInt64]) -> (series: [SVG.Series], colors: [String]) {
        var curves: [SVG.Series] = [], colors: [String] = []
        for (i, name) in flows.enumerated() {
            guard let flow = try? GradientFlow(parsing: name) else { continue }
            var byStep: [Int: [Double]] = [:]
            for seed in seeds {
                for m in metrics(Gap.runFolder(folder, flow: flow, seed: seed)) { if let v = m.valLoss { byStep[m.step, default: []].append(v) } }
            }
            let pts = byStep.keys.sorted().map { (x: Double($0), y: byStep[$0]!.reduce(0, +) / Double(byStep[$0]!.count)) }
            curves.append(SVG.Series(name: name, points: pts))
            colors.append(SVG.color(forFlow: name, fallback: i))
        }
        return (curves, colors)
    }

    static func gapSection(_ s: Gap.Summary, folder: URL) -> String {
        let c = s.settings
        var html = "<section class=\"gap\"><h2>The myopia gap — \(SVG.escape(folder.lastPathComponent))</h2>"
        html += "<p class=\"caption\">\(s.flows.count) flows × \(s.seeds.count) seed(s) on \(SVG.escape(s.data)): \(c.family.rawValue), \(c.layers) layers, d_model \(c.dModel), \(c.heads) heads, T \(c.seqLen), batch \(c.batch), \(c.steps) steps. Validation: \(s.validationTokens) predictions in \(s.validationWindows) windows.</p>"
        html += "<table><tr><th>flow</th><th>val loss (mean)</th><th>± std</th><th>per seed</th></tr>"
        for f in s.flows {
            html += "<tr><td>\(SVG.escape(f.flow))</td><td>\(String(format: "%.4f", f.valLoss.mean))</td><td>\(f.valLoss.std.map { String(format: "%.4f", $0) } ?? "–")</td><td>\(f.valLoss.perSeed.map { String(format: "%.4f", $0) }.joined(separator: " "))</td></tr>"
        }
        for d in s.differences {
            html += "<tr><td><b>\(SVG.escape(d.flow)) − \(SVG.escape(d.baseline))</b></td><td><b>\(String(format: "%+.4f", d.valLoss.mean))</b></td><td>\(d.valLoss.std.map { String(format: "%.4f", $0) } ?? "–")</td><td>\(d.valLoss.perSeed.map { String(format: "%+.4f", $0) }.joined(separator: " "))</td></tr>"
        }
        html += "</table>"
        html += SelfReinforcement.sideBySideHTML(s.flows.map { ($0.flow, $0.loops) }, escape: SVG.escape)
        if let gap = s.gap {
            html += "<p class=\"caption\">The gap is what a model loses when no position is trained to help later ones: myopic − vanilla = <b>\(String(format: "%+.4f", gap.valLoss.mean))</b> nats/token\(gap.valLoss.std.map { String(format: " (± %.4f over seeds)", $0) } ?? "").</p>"
        }
        // Training curves: validation loss against step, mean over seeds.
        let (curves, colors) = meanValidationCurves(folder, flows: s.flows.map(\.flow), seeds: s.seeds)
        html += "<div class=\"charts\">"
        html += SVG.lineChart(title: "Validation loss during training", xLabel: "step", yLabel: "loss (nats/token)",
                              series: curves, colors: colors, width: 520)
        // Per-position loss, log-scaled positions.
        let perPosition = s.flows.map { f in SVG.Series(name: f.flow, points: f.positionLoss.enumerated().map { (x: Double($0.offset + 1), y: $0.element) }) }
        html += SVG.lineChart(title: "Loss by position in the window", xLabel: "position + 1 (log scale)", yLabel: "loss (nats/token)",
                              series: perPosition, colors: s.flows.enumerated().map { SVG.color(forFlow: $0.element.flow, fallback: $0.offset) },
                              width: 520, logX: true)
        html += "</div>"
        if let gap = s.gap, let v = s.flow(gap.baseline), let m = s.flow(gap.flow) {
            // The per-position gap with its spread over seeds (when there are several).
            let perSeed = zip(m.positionLossPerSeed, v.positionLossPerSeed).map { zip($0, $1).map { $0 - $1 } }
            let band: [Double]? = perSeed.count > 1 ? gap.positionLoss.indices.map { i in
                let xs = perSeed.map { $0[i] }, mean = xs.reduce(0, +) / Double(xs.count)
                return (xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(xs.count - 1)).squareRoot()
            } : nil
            html += SVG.lineChart(title: "The gap by position: myopic − vanilla (± std over seeds)", xLabel: "position + 1 (log scale)",
                                  yLabel: "Δ loss (nats/token)",
                                  series: [SVG.Series(name: "myopic − vanilla", points: gap.positionLoss.enumerated().map { (x: Double($0.offset + 1), y: $0.element) }, band: band)],
                                  colors: [SVG.colors[1]], logX: true)
            html += "<p class=\"caption\">Position 0 has no past, so every flow trains it the same way; a gap that grows with position is the cost of not pre-caching for later tokens.</p>"
        }
        html += settingsBlock(try? JSONEncoder.sorted.encode(s.settings), title: "settings")
        return html + "</section>"
    }

    // MARK: - Training run

    static func trainSection(_ run: URL) -> String {
        let m = metrics(run)
        var html = "<section class=\"train\"><h2>Training run — \(SVG.escape(run.lastPathComponent))</h2>"
        let train = SVG.Series(name: "train", points: m.map { (x: Double($0.step), y: $0.trainLoss) })
        let val = SVG.Series(name: "validation", points: m.compactMap { r in r.valLoss.map { (x: Double(r.step), y: $0) } })
        html += SVG.lineChart(title: "Loss during training", xLabel: "step", yLabel: lossUnit(run), series: [train, val])
        let splits = m.compactMap { r in r.gradientSplit.map { (step: r.step, split: $0) } }
        if !splits.isEmpty {
            let groups = Set(splits.flatMap { $0.split.keys }).sorted()
            let series = groups.map { g in
                SVG.Series(name: g, points: splits.compactMap { s in
                    s.split[g].map { (x: Double(s.step), y: $0.vanillaNorm > 0 ? $0.futureNorm / $0.vanillaNorm : 0) }
                })
            }
            html += SVG.lineChart(title: "Share of the gradient that serves later tokens: ‖g_future‖ / ‖g_vanilla‖",
                                  xLabel: "step", yLabel: "norm ratio", series: series)
            html += "<p class=\"caption\">g_future = g_vanilla − g_myopic: the part of each parameter group's gradient that exists only because later positions' losses reach earlier positions through attention.</p>"
        }
        html += settingsBlock(try? Data(contentsOf: run.appendingPathComponent(Trainer.runConfigFile)), title: "run_config.json")
        return html + "</section>"
    }

    // MARK: - Horizon

    static func horizonSection(_ t: HorizonTable, file: URL) -> String {
        let rows = (0...t.layers).map { $0 == t.layers ? "final" : "layer \($0)" }
        let columns = (0...t.maxOffset).map { "k=\($0)" }
        var html = "<section class=\"horizon\"><h2>Gradient horizon — \(SVG.escape(file.deletingLastPathComponent().lastPathComponent))/\(SVG.escape(file.lastPathComponent))</h2>"
        html += "<p class=\"caption\">Mean ‖∂ℓ_t/∂h_{l,i}‖ by layer l and offset k = t − i (\(t.sequences) sequences of \(t.seqLen), \(SVG.escape(t.flow)) flow). Offset 0 is the signal for the next token; k &gt; 0 is the signal a position receives to serve tokens further ahead.</p>"
        html += SVG.heatmap(title: "Mean gradient norm (log colour scale)", rowLabel: "residual stream", columnLabel: "offset k = t − i",
                            rows: rows, columns: columns, values: t.meanNorm, unit: "‖∂ℓ/∂h‖", logScale: true)
        let share = t.share.enumerated().map { l, r in SVG.Series(name: rows[l], points: r.enumerated().map { (x: Double($0.offset), y: $0.element) }) }
        html += SVG.lineChart(title: "Share of each layer's signal by offset", xLabel: "offset k", yLabel: "share of Σ_k norm", series: share,
                              sequential: "residual stream")
        html += caption("Mean offset by layer: " + t.meanOffset.enumerated().map { "\(rows[$0.offset]) \(String(format: "%.2f", $0.element))" }.joined(separator: ", ")
                        + ". Under the vanilla flow every layer but the last gets part of its signal from later tokens (k &gt; 0); the last stream's signal is all k = 0.")
        return html
    }

    static func settingsBlock(_ data: Data?, title: String) -> String {
        guard let data, let text = String(data: data, encoding: .utf8) else { return "" }
        return "<details><summary>\(SVG.escape(title))</summary><pre>\(SVG.escape(text))</pre></details>"
    }
}

extension JSONEncoder {
    /// Pretty, sorted keys: for settings shown to a reader.
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }
}
