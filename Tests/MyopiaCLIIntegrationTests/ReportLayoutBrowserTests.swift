import Foundation
import XCTest
import MyopiaTestSupport

/// The report laid out by Chromium where charts are hardest to fit: horizons of 64 offsets, a
/// 30-block model (31 residual streams) beside 2-block ones, two runs of one flow. Heatmap cells
/// and their labels keep a legible size (the heatmap scrolls), every text and legend lies inside its
/// chart, charts of up to eight series show no colour twice, flows keep vanilla blue / myopic red,
/// models of different depths share the relative-depth axis, the lens comparison is on a log
/// scale, and the page has a table of contents, relative paths and folded samples.
final class ReportLayoutBrowserTests: CLITestCase {
    func myopia(_ arguments: [String]) throws {
        let r = try run(arguments)
        XCTAssertEqual(r.status, 0, "myopia \(arguments.joined(separator: " ")): \(r.stderr)")
    }

    func testChartsFitTheirDataAtSixtyFourOffsetsAndThirtyOneStreams() throws {
        guard let chromium = try ReportBrowserTests.chromium() else {
            throw XCTSkip("MYOPIA_SKIP_BROWSER is set: the report is not opened in a browser")
        }
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "the quick brown fox jumps over the lazy dog; the dog sleeps. ", count: 120).utf8).write(to: corpus)
        func train(_ name: String, _ flow: String, layers: Int, seed: Int = 1) throws -> String {
            let out = dir.appendingPathComponent(name).path
            try myopia(["train", "--data", corpus.path, "--out", out, "--flow", flow, "--layers", "\(layers)", "--heads", "2",
                        "--d-model", "16", "--seq-len", "64", "--batch", "2", "--steps", "6", "--warmup", "1", "--lr", "0.01",
                        "--log-every", "2", "--eval-every", "2", "--eval-windows", "2", "--seed", "\(seed)", "--quiet"])
            try myopia(["horizon", "--model", out, "--data", corpus.path, "--sequences", "1", "--out", out, "--quiet"])
            try myopia(["lens", "--model", out, "--data", corpus.path, "--offsets", "0..1", "--max-windows", "2", "--out", out, "--quiet"])
            try myopia(["generate", "--model", out, "--prompt", "the ", "--samples", "2", "--max-tokens", "20", "--greedy",
                        "--out", out, "--quiet"])
            return out
        }
        let runs = [try train("vanilla", "vanilla", layers: 2), try train("vanilla-seed2", "vanilla", layers: 2, seed: 2),
                    try train("myopic", "myopic", layers: 2), try train("deep", "vanilla", layers: 30)]
        let report = dir.appendingPathComponent("report.html")
        try myopia(["report"] + runs + ["--out", report.path, "--title", "layout test"])
        let html = try String(contentsOf: report, encoding: .utf8)
        XCTAssertTrue(html.contains("<nav class=\"toc\">"), "no table of contents")
        XCTAssertFalse(html.contains(dir.path + "/"), "an absolute path under the report's folder")
        XCTAssertTrue(html.contains("<details class=\"samples\">"), "samples not folded")
        XCTAssertTrue(html.contains("relative depth l/L"), "models of 2 and 30 blocks on one layer axis")
        XCTAssertTrue(html.contains("Lens loss of the next token by layer (log scale)"))

        let probe = dir.appendingPathComponent("report-measured.html")
        let script = """
        <script>
        const inside = (b, r) => b.left >= r.left - 1 && b.right <= r.right + 1 && b.top >= r.top - 1 && b.bottom <= r.bottom + 1;
        const charts = [...document.querySelectorAll('svg.chart')].map(s => {
          const r = s.getBoundingClientRect(), vb = s.viewBox.baseVal;
          const texts = [...s.querySelectorAll('text')];
          const cells = [...s.querySelectorAll('rect.cell')].map(c => c.getBoundingClientRect());
          const legends = [...s.querySelectorAll('rect.legend-box')].map(l => l.getBoundingClientRect());
          const series = [...s.querySelectorAll('polyline.series')].map(p => ({title: p.querySelector('title')?.textContent || '',
            stroke: p.getAttribute('stroke'), dash: p.getAttribute('stroke-dasharray') || 'solid'}));
          return {label: s.getAttribute('aria-label'), heatmap: s.classList.contains('heatmap'), scale: r.width / vb.width,
            minCellWidth: cells.length ? Math.min(...cells.map(c => c.width)) : null,
            minCellHeight: cells.length ? Math.min(...cells.map(c => c.height)) : null,
            minFont: Math.min(...texts.map(t => parseFloat(getComputedStyle(t).fontSize))),
            textsOutside: texts.filter(t => !inside(t.getBoundingClientRect(), r)).map(t => t.textContent),
            legendsOutside: legends.filter(l => !inside(l, r)).length, legends: legends.length, series};
        });
        const out = document.createElement('pre'); out.id = 'measured'; out.textContent = btoa(unescape(encodeURIComponent(JSON.stringify(charts))));
        document.body.appendChild(out);
        </script>
        """
        try Data(html.replacingOccurrences(of: "</body>", with: script + "</body>").utf8).write(to: probe)
        let dom = try ReportBrowserTests.run(chromium, ["--headless", "--no-sandbox", "--disable-gpu",
                                                        "--user-data-dir=\(dir.appendingPathComponent("profile").path)",
                                                        "--window-size=1280,2000", "--dump-dom", probe.absoluteString])
        let start = try XCTUnwrap(dom.range(of: "<pre id=\"measured\">"), "no measurements in Chromium's DOM:\n\(dom.prefix(500))")
        let end = try XCTUnwrap(dom.range(of: "</pre>", range: start.upperBound..<dom.endIndex))
        let charts = try XCTUnwrap(JSONSerialization.jsonObject(with: XCTUnwrap(Data(base64Encoded: String(dom[start.upperBound..<end.lowerBound]))))
                                   as? [[String: Any]])
        XCTAssertGreaterThan(charts.count, 20)
        var heatmaps = 0, deepHeatmap = false
        for chart in charts {
            let label = chart["label"] as? String ?? "?"
            XCTAssertEqual(chart["textsOutside"] as? [String] ?? ["?"], [], "\(label): text outside the chart")
            XCTAssertEqual(chart["legendsOutside"] as? Int, 0, "\(label): legend outside the chart")
            XCTAssertGreaterThanOrEqual(chart["minFont"] as? Double ?? 0, 10, "\(label): text under 10 px")
            if chart["heatmap"] as? Bool == true {
                heatmaps += 1
                XCTAssertEqual(chart["scale"] as? Double ?? 0, 1, accuracy: 0.01, "\(label): the heatmap was shrunk")
                XCTAssertGreaterThanOrEqual(chart["minCellWidth"] as? Double ?? 0, 40, label)
                XCTAssertGreaterThanOrEqual(chart["minCellHeight"] as? Double ?? 0, 20, label)
            }
            let series = chart["series"] as? [[String: String]] ?? []
            if (chart["legends"] as? Int ?? 0) > 0 {
                let looks = series.map { "\($0["stroke"]!) \($0["dash"]!)" }
                XCTAssertEqual(Set(looks).count, looks.count, "\(label): two series look the same: \(looks)")
                XCTAssertLessThanOrEqual(series.count, 8, "\(label): a legend of \(series.count) entries")
            }
            for s in series {
                let title = s["title"] ?? ""
                if title.hasPrefix("vanilla") { XCTAssertEqual(s["stroke"], "#1f77b4", "\(label): \(title)") }
                if title.hasPrefix("myopic") { XCTAssertEqual(s["stroke"], "#d62728", "\(label): \(title)") }
            }
            if label.hasPrefix("Mean gradient norm"), (chart["minCellWidth"] as? Double) != nil { deepHeatmap = true }
        }
        XCTAssertGreaterThanOrEqual(heatmaps, 8)
        XCTAssertTrue(deepHeatmap)

        let screenshot = myopiaBinary.deletingLastPathComponent().appendingPathComponent("report-layout-screenshot.png")
        try? FileManager.default.removeItem(at: screenshot)
        _ = try ReportBrowserTests.run(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(dir.appendingPathComponent("profile").path)",
                                                  "--hide-scrollbars", "--window-size=1280,4000", "--screenshot=\(screenshot.path)", report.absoluteString])
        XCTAssertEqual(Array(try Data(contentsOf: screenshot).prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        print("report layout screenshot: \(screenshot.path)")
    }
}
