import Foundation
import XCTest
import Myopia
@testable import MyopiaLab

/// What the report's charts promise a reader, checked on their markup: flows keep their colours
/// and no two series look alike, a model's many layers get a colour bar instead of a legend, a
/// legend fits inside its plot, a heatmap scrolls rather than shrinks and its colour bar has room
/// for its labels, and the page has a table of contents. (ReportBrowserTests checks the laid-out
/// page in Chromium.)
final class ReportLayoutTests: XCTestCase {
    func testGGUFModelsAreNamedWithInstructAndTheirQuantisation() {
        XCTAssertEqual(ModelSource.ggufLabel(fileName: "SmolLM2-135M-Instruct.Q4_1.gguf"), "SmolLM2-135M-Instruct Q4_1")
        XCTAssertEqual(ModelSource.ggufLabel(fileName: "Llama-3.2-1B-Instruct-Q4_K_M.gguf"), "Llama-3.2-1B-Instruct Q4_K_M")
        XCTAssertEqual(ModelSource.ggufLabel(fileName: "tiny-f16.gguf"), "tiny F16")
        XCTAssertEqual(ModelSource.ggufLabel(fileName: "qwen2.5-0.5b-instruct-iq2_xs.gguf"), "qwen2.5-0.5b-instruct IQ2_XS")
        XCTAssertEqual(ModelSource.ggufLabel(fileName: "model.gguf"), "model")
        XCTAssertEqual(ModelSource.label(.gguf(URL(fileURLWithPath: "/m/SmolLM2-135M-Instruct.Q4_1.gguf"), tokenizer: "x")),
                       "SmolLM2-135M-Instruct Q4_1")
    }

    /// (stroke, dash) of every drawn series of an SVG, in order.
    func styles(_ svg: String) -> [String] {
        let pattern = try! NSRegularExpression(pattern: #"<polyline class="series" fill="none" stroke="(#[0-9a-f]{6})"( stroke-dasharray="([^"]+)")?"#)
        return pattern.matches(in: svg, range: NSRange(svg.startIndex..., in: svg)).map { m in
            let r = Range(m.range(at: 1), in: svg)!
            let d = Range(m.range(at: 3), in: svg).map { String(svg[$0]) } ?? "solid"
            return "\(svg[r]) \(d)"
        }
    }

    func line(_ name: String, _ k: Double) -> SVG.Series {
        SVG.Series(name: name, points: (0..<6).map { (x: Double($0), y: k + Double($0) * 0.1 * k) })
    }

    func testFlowsKeepTheirColoursAndNoTwoSeriesLookAlike() {
        let looks = Report.overlayStyles(["vanilla", "myopic", "vanilla", nil, "bigram", "myopic", nil])
        XCTAssertEqual(looks.map(\.color), [SVG.colors[0], SVG.colors[1], SVG.colors[0], SVG.otherColors[0], SVG.colors[2],
                                             SVG.colors[1], SVG.otherColors[1]])
        XCTAssertEqual(Set(looks.map { "\($0.color) \($0.dash ?? "solid")" }).count, looks.count)
        XCTAssertFalse(looks.filter { $0.dash == nil }.isEmpty)
        // Nothing that is not a flow wears a flow's colour.
        for s in [looks[3], looks[6]] { XCTAssertFalse(SVG.colors.prefix(3).contains(s.color)) }

        for n in 1...8 {
            let svg = SVG.lineChart(title: "t", xLabel: "x", yLabel: "y", series: (0..<n).map { line("series \($0)", Double($0 + 1)) })
            let drawn = styles(svg)
            XCTAssertEqual(drawn.count, n)
            XCTAssertEqual(Set(drawn.map { $0.split(separator: " ")[0] }).count, n, "\(n) series: a colour twice: \(drawn)")
        }
    }

    /// 31 layers: a sequential palette and a colour bar from the first to the last, no legend.
    func testManyLayersGetAColourBarNotALegend() {
        let series = (0...30).map { line($0 == 30 ? "30 (final)" : "layer \($0)", Double($0 + 1)) }
        let svg = SVG.lineChart(title: "Share of each layer's signal", xLabel: "offset", yLabel: "share", series: series,
                                sequential: "residual stream")
        XCTAssertFalse(svg.contains("legend-box"))
        XCTAssertEqual(svg.components(separatedBy: "class=\"colorbar\"").count - 1, 20)
        XCTAssertTrue(svg.contains(">layer 0</text>") && svg.contains(">30 (final)</text>") && svg.contains(">residual stream</text>"))
        let colors = styles(svg).map { $0.split(separator: " ")[0] }
        XCTAssertEqual(colors.first.map(String.init), SVG.sequentialColor(0))
        XCTAssertEqual(colors.last.map(String.init), SVG.sequentialColor(1))
        XCTAssertEqual(Set(colors).count, 31)
    }

    /// A legend lies inside the plot area, however many series and however long their names.
    func testLegendsFitInsideThePlot() throws {
        let names = ["a-very-long-run-folder-name/with/a/horizon-under-the-myopic-flow.json", "vanilla", "myopic", "b", "c", "d", "e", "f"]
        let svg = SVG.lineChart(title: "t", xLabel: "x", yLabel: "y", series: names.enumerated().map { line($0.element, Double($0.offset + 1)) },
                                width: 520)
        let box = try XCTUnwrap(svg.range(of: #"<rect class="legend-box" x="([0-9.]+)" y="([0-9.]+)" width="([0-9.]+)" height="([0-9.]+)""#,
                                          options: .regularExpression))
        let numbers = svg[box].split(separator: "\"").compactMap { Double($0) }
        let view = try XCTUnwrap(svg.range(of: #"viewBox="0 0 ([0-9.]+) ([0-9.]+)""#, options: .regularExpression))
        let size = svg[view].split(separator: "\"")[1].split(separator: " ").compactMap { Double($0) }
        let (x, y, w, h) = (numbers[0], numbers[1], numbers[2], numbers[3])
        XCTAssertGreaterThanOrEqual(x, 64)
        XCTAssertLessThanOrEqual(x + w, size[2] - 16 + 1e-9, "the legend runs out of the plot on the right")
        XCTAssertGreaterThanOrEqual(y, 32)
        XCTAssertLessThanOrEqual(y + h, size[3] - 48 + 1e-9, "the legend runs out of the plot at the bottom")
        XCTAssertTrue(svg.contains("…"), "the long name is shortened")
    }

    /// A heatmap of 64 offsets and 31 streams keeps 40-px cells in a box that scrolls, and its
    /// colour bar's labels and unit lie inside the SVG.
    func testHeatmapKeepsItsCellsAndRoomForItsColourBar() throws {
        let rows = (0...30).map { "layer \($0)" }, columns = (0..<64).map { "k=\($0)" }
        let values = rows.indices.map { r in columns.indices.map { c in 1e-3 * Double(r + 1) / Double(c + 1) } }
        let svg = SVG.heatmap(title: "Mean gradient norm (log colour scale)", rowLabel: "residual stream", columnLabel: "offset k",
                              rows: rows, columns: columns, values: values, unit: "‖∂ℓ/∂h‖ (nats per unit)", logScale: true)
        XCTAssertTrue(svg.hasPrefix("<div class=\"scroll\"><svg"), String(svg.prefix(80)))
        XCTAssertTrue(svg.hasSuffix("</svg></div>"))
        let cell = try XCTUnwrap(svg.range(of: #"class="cell" x="[0-9.]+" y="[0-9.]+" width="([0-9.]+)" height="([0-9.]+)""#, options: .regularExpression))
        let size = svg[cell].split(separator: "\"").compactMap { Double($0) }
        XCTAssertGreaterThanOrEqual(size[size.count - 2], 40)
        XCTAssertGreaterThanOrEqual(size[size.count - 1], 26)
        let width = try XCTUnwrap(svg.range(of: #"width="([0-9.]+)" height"#, options: .regularExpression).map {
            Double(svg[$0].split(separator: "\"")[1])! })
        // Every text's right end (at 7 px a character, an upper bound at 11 px) inside the width.
        let texts = try NSRegularExpression(pattern: #"<text x="([0-9.]+)"[^>]*>([^<]*)</text>"#)
        for m in texts.matches(in: svg, range: NSRange(svg.startIndex..., in: svg)) {
            let x = Double(svg[Range(m.range(at: 1), in: svg)!])!
            let text = String(svg[Range(m.range(at: 2), in: svg)!])
            let anchored = svg[Range(m.range, in: svg)!].contains("text-anchor")
            if !anchored { XCTAssertLessThanOrEqual(x + 7 * Double(text.count), width, "clipped: \(text)") }
        }
    }

    func testTableOfContentsLinksEverySection() {
        let (sections, contents) = Report.tableOfContents(["<section class=\"a\"><h2>First — <code>x</code></h2>…</section>",
                                                            "<section class=\"b\"><h2>Second</h2>…</section>"])
        XCTAssertEqual(sections[0], "<section class=\"a\"><h2 id=\"s1\">First — <code>x</code></h2>…</section>")
        XCTAssertTrue(sections[1].contains("<h2 id=\"s2\">Second</h2>"))
        XCTAssertEqual(contents, "<nav class=\"toc\"><h2>Contents</h2><ol><li><a href=\"#s1\">First — x</a></li><li><a href=\"#s2\">Second</a></li></ol></nav>")
    }
}
