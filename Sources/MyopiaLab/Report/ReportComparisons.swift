import Foundation
import Myopia

// When a report is built from several runs, results of the same kind are drawn together first:
// training curves, per-position eval loss, horizons, probes, lens and sine-probe tables overlaid
// (one line per run), generation metrics side by side in one table.

extension Report {
    /// One run's curve in a comparison: its label, the flow it used (for the colour) and the points.
    struct Compared {
        var label: String
        var flow: String?
        var points: [(x: Double, y: Double)]
    }

    /// A line chart with one series per run. A run's flow gives its colour (vanilla blue, myopic
    /// red, bigram green), a second run of the same flow a dashed line; a run with no flow (a
    /// pretrained model) one of the other colours. No two series look the same.
    static func overlay(_ items: [Compared], title: String, xLabel: String, yLabel: String, logX: Bool = false,
                        logY: Bool = false) -> String {
        let styles = overlayStyles(items.map(\.flow))
        return SVG.lineChart(title: title, xLabel: xLabel, yLabel: yLabel,
                             series: items.map { SVG.Series(name: $0.label, points: $0.points) }, colors: styles.map(\.color),
                             dashes: styles.map(\.dash), width: 520, logX: logX, logY: logY)
    }

    /// The colour and dash of each run by its flow (see `overlay`).
    static func overlayStyles(_ flows: [String?]) -> [(color: String, dash: String?)] {
        var seen: [String: Int] = [:], others = 0
        return flows.map { flow in
            let key = flow.flatMap { ["vanilla", "myopic", "bigram"].contains($0) ? $0 : nil }
            guard let key else {
                defer { others += 1 }
                return (SVG.otherColors[others % SVG.otherColors.count], SVG.dashes[(others / SVG.otherColors.count) % SVG.dashes.count])
            }
            let n = seen[key, default: 0]
            seen[key] = n + 1
            return (SVG.color(forFlow: key, fallback: 0), SVG.dashes[n % SVG.dashes.count])
        }
    }

    /// The x of residual stream `l` of a model with `depth` blocks: l itself when every model
    /// compared has the same depth, else the relative depth l/L (0: the embedding, 1: after the
    /// last block), so that a 3-block and a 30-block model share an axis.
    static func depthAxis(_ depths: [Int]) -> (x: (Int, Int) -> Double, label: String) {
        if Set(depths).count <= 1 { return ({ l, _ in Double(l) }, "residual stream l (L: after the last block)") }
        return ({ l, depth in Double(l) / Double(max(depth, 1)) }, "relative depth l/L (0: embedding, 1: after the last block)")
    }

    /// Short unique names for folders: the last path component, or the last two where those repeat.
    static func labels(_ folders: [URL]) -> [String] {
        let last = folders.map(\.lastPathComponent)
        return folders.indices.map { i in
            last.filter { $0 == last[i] }.count > 1 ? folders[i].deletingLastPathComponent().lastPathComponent + "/" + last[i] : last[i]
        }
    }

    /// The flow a folder's run trained with (run_config.json), or a flow named in the folder name.
    static func flow(of folder: URL) -> String? {
        if let config = try? RunFolder.load(TrainConfig.self, Trainer.runConfigFile, in: folder) { return config.flow.description }
        return ["vanilla", "myopic", "bigram"].first { folder.lastPathComponent.contains($0) }
    }

    static func comparisonSections(_ runs: [URL]) throws -> [String] {
        guard runs.count > 1 else { return [] }
        let names = labels(runs)
        var charts: [String] = [], notes: [String] = []

        // Training curves of the plain training runs (gap and bonus folders draw their own), those
        // with the same loss together.
        let trainedAll = runs.indices.filter {
            FileManager.default.fileExists(atPath: runs[$0].appendingPathComponent(Trainer.runConfigFile).path)
                && !FileManager.default.fileExists(atPath: runs[$0].appendingPathComponent(Gap.summaryFile).path)
                && !metrics(runs[$0]).isEmpty
        }
        for unit in Set(trainedAll.map { lossUnit(runs[$0]) }).sorted() {
            let trained = trainedAll.filter { lossUnit(runs[$0]) == unit }
            guard trained.count > 1 else { continue }
            charts.append(overlay(trained.map { i in
                Compared(label: names[i], flow: flow(of: runs[i]), points: metrics(runs[i]).compactMap { m in m.valLoss.map { (x: Double(m.step), y: $0) } })
            }, title: "Validation loss during training", xLabel: "step", yLabel: unit))
            charts.append(overlay(trained.map { i in
                Compared(label: names[i], flow: flow(of: runs[i]), points: metrics(runs[i]).map { (x: Double($0.step), y: $0.trainLoss) })
            }, title: "Training loss", xLabel: "step", yLabel: unit))
        }
        if charts.count > 0 {
            notes.append("Training runs: one line per run (one pair of charts per loss unit); vanilla blue, myopic red, bigram green when each run has its own flow.")
        }

        let evals = try loaded(EvaluationResult.self, EvaluationResult.fileName, in: runs)
        if evals.count > 1 {
            charts.append(overlay(evals.map { Compared(label: names[$0.0], flow: flow(of: runs[$0.0]), points: positionSeries("", $0.1.positionLoss).points) },
                                  title: "Eval loss by position", xLabel: "position + 1 (log scale)", yLabel: "loss (nats/token)", logX: true))
            notes.append("Eval loss by position: a myopic model is expected to match vanilla early in the window and fall behind later.")
        }

        // A horizon is coloured by the flow its model trained with (the table's own flow is the
        // derivative measured, normally the true one).
        var horizons: [(label: String, flow: String, table: HorizonTable)] = []
        for (i, run) in runs.enumerated() {
            for (file, table) in try horizonTables(run) {
                horizons.append((names[i] + (file == HorizonTable.fileName ? "" : "/" + file), flow(of: run) ?? table.flow, table))
            }
        }
        if horizons.count > 1 {
            let depth = depthAxis(horizons.map(\.table.layers))
            charts.append(overlay(horizons.map { h in
                Compared(label: h.label, flow: h.flow, points: h.table.meanOffset.enumerated().map { (x: depth.x($0.offset, h.table.layers), y: $0.element) })
            }, title: "Mean offset of each layer's signal", xLabel: depth.label, yLabel: "mean offset k (tokens)"))
            charts.append(overlay(horizons.map { h in
                Compared(label: h.label, flow: h.flow, points: h.table.share[0].enumerated().map { (x: Double($0.offset), y: $0.element) })
            }, title: "Share of the embedding stream's signal by offset", xLabel: "offset k", yLabel: "share of Σ_k norm"))
            notes.append("Horizons: how far ahead each layer's training signal reaches. A myopic flow keeps only offset 0 from the parameters' point of view; the mean offset says how much of the vanilla signal serves later tokens.")
        }

        let probes = try loaded(ProbeTable.self, ProbeTable.fileName, in: runs)
        if probes.count > 1 {
            charts.append(overlay(probes.map { i, t in
                Compared(label: names[i], flow: flow(of: runs[i]), points: t.offsets.indices.map { k in
                    (x: Double(t.offsets[k]), y: t.currentTokenLoss[k] - t.loss.map { $0[k] }.min()!)
                })
            }, title: "Best layer's probe gain over the current token", xLabel: "offset k", yLabel: "current-token loss − probe loss (nats)"))
            notes.append("Probes: at k ≥ 1 a higher gain means more information about later tokens in the hidden states.")
        }

        let lenses = try loaded(LensTable.self, LensTable.fileName, in: runs)
        if lenses.count > 1 {
            // A log scale: a pretrained model's first layers read 100 nats off the stream, and a
            // small model's whole curve lies under 6.
            let depth = depthAxis(lenses.map { $0.1.modelLayers })
            charts.append(overlay(lenses.map { i, t in
                Compared(label: names[i], flow: flow(of: runs[i]), points: t.layers.indices.map { (x: depth.x(t.layers[$0], t.modelLayers), y: t.loss[$0][0]) })
            }, title: "Lens loss of the next token by layer (log scale)", xLabel: depth.label, yLabel: "loss at k = 0 (nats/token)", logY: true))
            notes.append("Lens: the loss on a log scale, so that every model's curve shows.")
        }

        let sines = try loaded(SineProbeTable.self, SineProbeTable.fileName, in: runs)
        if sines.count > 1, sines.allSatisfy({ $0.1.lags.first == 0 }) {
            let depth = depthAxis(sines.map { $0.1.layers.max() ?? 0 })
            charts.append(overlay(sines.map { i, t in
                Compared(label: names[i], flow: flow(of: runs[i]), points: t.layers.indices.map { (x: depth.x(t.layers[$0], t.layers.max() ?? 0), y: t.r2[$0][0]) })
            }, title: "R² of sin(f·x_n) at lag 0 by layer", xLabel: depth.label, yLabel: "held-out R²"))
            notes.append("Sine probes: a vanilla model caches sin(f·x_n) at position n (R² near 1 at a middle layer); a myopic one has no reason to.")
        }

        var table = ""
        let generations = try loaded(GenerationStudy.Report.self, GenerationStudy.fileName, in: runs)
        if generations.count > 1 {
            table = "<table><tr><th>run</th><th>samples</th><th>distinct-1</th><th>distinct-4</th><th>ending in a loop</th><th>free-running loss</th><th>teacher-forced loss</th></tr>"
            for (i, g) in generations {
                let m = g.metrics
                table += "<tr><td>\(SVG.escape(names[i]))</td><td>\(m.samples)</td><td>\(f(m.distinct.first?.pooled, "%.3f"))</td><td>\(f(m.distinct.last?.pooled, "%.3f"))</td><td>\(m.loop_count)</td><td>\(f(m.free_running.loss))</td><td>\(f(m.teacher_forced.value?.loss))</td></tr>"
            }
            table += "</table>"
            notes.append("Generation: distinct-n (pooled over samples), loops and losses side by side; the samples are in each run's section.")
        }
        guard !charts.isEmpty || !table.isEmpty else { return [] }
        return ["<section class=\"compare\"><h2>Comparison of \(runs.count) runs</h2>"
                + caption(notes.map(SVG.escape).joined(separator: " "))
                + "<div class=\"charts\">\(charts.joined())</div>\(table)</section>"]
    }

    /// (index, result) of each run that holds `fileName`.
    static func loaded<T: Decodable>(_ type: T.Type, _ fileName: String, in runs: [URL]) throws -> [(Int, T)] {
        try runs.indices.compactMap { i in try RunFolder.load(type, fileName, in: runs[i]).map { (i, $0) } }
    }

    /// The horizon tables of a folder (horizon*.json), by file name.
    /// Every horizon*.json in `run`; a damaged one is an error naming the file, as for the other tables.
    static func horizonTables(_ run: URL) throws -> [(file: String, table: HorizonTable)] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: run.path)) ?? []
        return try files.sorted().filter { $0.hasPrefix("horizon") && $0.hasSuffix(".json") }.compactMap { name in
            try RunFolder.load(HorizonTable.self, name, in: run).map { (name, $0) }
        }
    }
}
