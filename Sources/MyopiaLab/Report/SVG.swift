import Foundation

/// Inline SVG charts for the HTML report: self-contained markup, no scripts, no network. Every
/// chart has axes with ticks and units, a legend when it has several series, and a title.
public enum SVG {
    /// One line of a line chart.
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]
        /// Optional ± band around each point (same count as points), drawn shaded.
        public var band: [Double]?
        public init(name: String, points: [(x: Double, y: Double)], band: [Double]? = nil) {
            self.name = name
            self.points = points
            self.band = band
        }
    }

    /// The categorical palette: eight distinct colours; the first three are vanilla / myopic /
    /// bigram everywhere, so a chart of up to eight series never shows a colour twice.
    public static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]

    /// The colours left for what is not a flow (a pretrained model, a game): never a flow's colour.
    public static let otherColors = Array(colors.dropFirst(3))

    /// Line patterns that tell apart series of one colour (two seeds of one flow): solid first.
    public static let dashes: [String?] = [nil, "6 3", "2 3", "10 3 2 3"]

    /// The colour of a flow by name, so that a flow has one colour in every chart; anything else
    /// takes the `index`-th of the other colours.
    public static func color(forFlow name: String, fallback index: Int) -> String {
        switch name {
        case "vanilla": return colors[0]
        case "myopic": return colors[1]
        case "bigram": return colors[2]
        default: return otherColors[index % otherColors.count]
        }
    }

    /// A sequential palette (viridis, dark purple → yellow) at t in [0, 1]: for ordered series such
    /// as the layers of a model, read off a colour bar instead of a legend.
    public static func sequentialColor(_ t: Double) -> String {
        let stops: [(Double, Double, Double)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
        let x = min(max(t.isFinite ? t : 0, 0), 1) * Double(stops.count - 1)
        let i = min(Int(x), stops.count - 2), f = x - Double(i)
        let (a, b) = (stops[i], stops[i + 1])
        return String(format: "#%02x%02x%02x", Int((a.0 + (b.0 - a.0) * f).rounded()), Int((a.1 + (b.1 - a.1) * f).rounded()),
                      Int((a.2 + (b.2 - a.2) * f).rounded()))
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func number(_ v: Double) -> String { String(format: "%.2f", v) }

    /// "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 × 10ⁿ, about `count` of them.
    static func ticks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
        guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
        let raw = (hi - lo) / Double(max(1, count))
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var t = (lo / step).rounded(.up) * step
        var out: [Double] = []
        while t <= hi + step * 1e-9 {
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return out
    }

    static func label(_ v: Double) -> String {
        let a = abs(v)
        if a == 0 { return "0" }
        if a >= 1e5 || a < 1e-3 { return String(format: "%.1e", v) }
        if a >= 100 || v == v.rounded() { return String(format: "%.0f", v) }
        if a >= 1 { return String(format: "%.2f", v) }
        return String(format: "%.3g", v)
    }

    /// A tick's label with as many decimals as the ticks' spacing needs, the same for all of them.
    static func tickLabel(_ v: Double, in ticks: [Double]) -> String {
        guard ticks.count > 1 else { return label(v) }
        let step = abs(ticks[1] - ticks[0])
        if step >= 1e5 || step < 1e-3 { return label(v) }
        let decimals = step >= 1 ? 0 : Int(-floor(log10(step) + 1e-9))
        return String(format: "%.\(decimals)f", v)
    }

    /// A line chart. `logX` / `logY` plot x / y on a log scale (positive values only).
    /// Colours: `colors` (and `dashes`) when given; else, for ordered series (`sequential`, the
    /// colour bar's title, or more than eight series) a sequential palette with a colour bar from
    /// the first series' name to the last instead of a legend; else the categorical palette, one
    /// colour each. A legend always lies inside the plot (the chart grows to hold it).
    public static func lineChart(title: String, xLabel: String, yLabel: String, series: [Series],
                                 colors chosen: [String]? = nil, dashes chosenDashes: [String?]? = nil,
                                 width: Double = 640, height requestedHeight: Double = 320,
                                 logX: Bool = false, logY: Bool = false, sequential: String? = nil) -> String {
        let ordered = chosen == nil && (sequential != nil || series.count > colors.count)
        let styles: [(color: String, dash: String?)] = series.indices.map { i in
            if let chosen { return (chosen[i % chosen.count], chosenDashes?[i % max(chosenDashes?.count ?? 1, 1)] ?? nil) }
            if ordered { return (sequentialColor(series.count > 1 ? Double(i) / Double(series.count - 1) : 0), nil) }
            return (colors[i % colors.count], dashes[(i / colors.count) % dashes.count])
        }
        let showLegend = series.count > 1 && !ordered
        let left = 64.0, right = ordered ? 24 + 6.5 * Double(max(series.first?.name.count ?? 0, series.last?.name.count ?? 0, 4)) + 26 : 16.0
        let top = 32.0, bottom = 48.0
        let legendH = 16 * Double(series.count) + 6
        let height = showLegend ? max(requestedHeight, top + bottom + legendH + 16) : requestedHeight
        let plotW = width - left - right, plotH = height - top - bottom
        func tx(_ x: Double) -> Double { logX ? log10(max(x, 1e-12)) : x }
        func ty(_ y: Double) -> Double { logY ? (y > 0 ? log10(y) : -.infinity) : y }
        let xs = series.flatMap { $0.points.map { tx($0.x) } }.filter(\.isFinite)
        var ys: [Double] = []
        for s in series {
            for (i, p) in s.points.enumerated() where p.y.isFinite {
                let b = s.band?[i] ?? 0
                ys += [ty(p.y - b), ty(p.y + b)].filter(\.isFinite)
            }
        }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 \(number(width)) \(number(height))\" width=\"\(number(width))\" height=\"\(number(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        svg += "<text x=\"\(number(width / 2))\" y=\"18\" text-anchor=\"middle\" class=\"title\">\(escape(title))</text>"
        guard let x0 = xs.min(), let x1 = xs.max(), let y0r = ys.min(), let y1r = ys.max() else {
            return svg + "<text x=\"\(number(width / 2))\" y=\"\(number(height / 2))\" text-anchor=\"middle\">no data</text></svg>"
        }
        let pad = (y1r - y0r) * 0.05
        let y0 = y0r - pad, y1 = y1r + pad + (y1r == y0r ? 1 : 0)
        let xSpan = x1 > x0 ? x1 - x0 : 1
        func px(_ x: Double) -> Double { left + (tx(x) - x0) / xSpan * plotW }
        // py takes a value on the axis scale (log10 of it under logY); pv a data value.
        func py(_ y: Double) -> Double { top + (1 - (y - y0) / (y1 - y0)) * plotH }
        func pv(_ y: Double) -> Double { py(ty(y)) }
        // Axes and ticks.
        svg += "<g class=\"axis\"><line x1=\"\(number(left))\" y1=\"\(number(top + plotH))\" x2=\"\(number(left + plotW))\" y2=\"\(number(top + plotH))\"/>"
        svg += "<line x1=\"\(number(left))\" y1=\"\(number(top))\" x2=\"\(number(left))\" y2=\"\(number(top + plotH))\"/>"
        if logY {
            // 1, 2 and 5 × 10ⁿ inside the range (only the powers of ten when that is too many).
            let decades = Array(Int(floor(y0))...Int(ceil(y1)))
            var values = decades.flatMap { n in [1.0, 2, 5].map { $0 * pow(10, Double(n)) } }.filter { log10($0) >= y0 && log10($0) <= y1 }
            if values.count > 8 { values = values.filter { log10($0) == log10($0).rounded() } }
            for v in values {
                let y = py(log10(v))
                svg += "<line class=\"grid\" x1=\"\(number(left))\" y1=\"\(number(y))\" x2=\"\(number(left + plotW))\" y2=\"\(number(y))\"/>"
                svg += "<text x=\"\(number(left - 6))\" y=\"\(number(y + 4))\" text-anchor=\"end\">\(label(v))</text>"
            }
        } else {
            let yTicks = ticks(y0, y1)
            for t in yTicks {
                let y = py(t)
                svg += "<line class=\"grid\" x1=\"\(number(left))\" y1=\"\(number(y))\" x2=\"\(number(left + plotW))\" y2=\"\(number(y))\"/>"
                svg += "<text x=\"\(number(left - 6))\" y=\"\(number(y + 4))\" text-anchor=\"end\">\(tickLabel(t, in: yTicks))</text>"
            }
        }
        // Whole-number x (steps, offsets, layers) gets whole-number ticks.
        let integral = series.allSatisfy { $0.points.allSatisfy { $0.x == $0.x.rounded() } }
        let xTicks = logX ? Array(Int(floor(x0))...Int(ceil(x1))).map { pow(10, Double($0)) }
            : ticks(x0, x1, count: 6).filter { !integral || $0 == $0.rounded() }
        for t in xTicks where tx(t) >= x0 - 1e-9 && tx(t) <= x1 + 1e-9 {
            let x = px(t)
            svg += "<line x1=\"\(number(x))\" y1=\"\(number(top + plotH))\" x2=\"\(number(x))\" y2=\"\(number(top + plotH + 4))\"/>"
            svg += "<text x=\"\(number(x))\" y=\"\(number(top + plotH + 16))\" text-anchor=\"middle\">\(label(t))</text>"
        }
        svg += "</g>"
        svg += "<text x=\"\(number(left + plotW / 2))\" y=\"\(number(height - 8))\" text-anchor=\"middle\" class=\"label\">\(escape(xLabel))</text>"
        svg += "<text transform=\"translate(14 \(number(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\" class=\"label\">\(escape(yLabel))</text>"
        // Bands, then lines.
        for (i, s) in series.enumerated() {
            let (color, dash) = styles[i]
            let dashed = dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
            let pts = s.points.enumerated().filter { ty($0.element.y).isFinite && tx($0.element.x).isFinite }
            if let band = s.band, pts.count > 1 {
                let upper = pts.map { "\(number(px($0.element.x))),\(number(pv($0.element.y + band[$0.offset])))" }
                let lower = pts.reversed().map { "\(number(px($0.element.x))),\(number(pv($0.element.y - band[$0.offset])))" }
                svg += "<polygon class=\"band\" fill=\"\(color)\" points=\"\((upper + lower).joined(separator: " "))\"/>"
            }
            if pts.count == 1, let p = pts.first?.element {
                svg += "<circle cx=\"\(number(px(p.x)))\" cy=\"\(number(pv(p.y)))\" r=\"3\" fill=\"\(color)\"><title>\(escape(s.name))</title></circle>"
            } else if pts.count > 1 {
                let path = pts.map { "\(number(px($0.element.x))),\(number(pv($0.element.y)))" }.joined(separator: " ")
                svg += "<polyline class=\"series\" fill=\"none\" stroke=\"\(color)\"\(dashed) points=\"\(path)\"><title>\(escape(s.name))</title></polyline>"
            }
        }
        if ordered, series.count > 1 {
            // The colour bar: the first series at the bottom, the last at the top.
            let barX = left + plotW + 14
            for k in 0..<20 {
                svg += "<rect class=\"colorbar\" x=\"\(number(barX))\" y=\"\(number(top + plotH * (1 - Double(k + 1) / 20)))\" width=\"10\" height=\"\(number(plotH / 20 + 0.5))\" fill=\"\(sequentialColor(Double(k) / 19))\"/>"
            }
            svg += "<text x=\"\(number(barX + 14))\" y=\"\(number(top + 8))\" class=\"legend\">\(escape(series[series.count - 1].name))</text>"
            svg += "<text x=\"\(number(barX + 14))\" y=\"\(number(top + plotH))\" class=\"legend\">\(escape(series[0].name))</text>"
            if let sequential {
                svg += "<text transform=\"translate(\(number(barX + 24)) \(number(top + plotH / 2))) rotate(90)\" text-anchor=\"middle\" class=\"legend\">\(escape(sequential))</text>"
            }
        } else if showLegend {
            // The legend goes in the plot corner its box covers the fewest drawn points of, on a
            // light backing, so that it hides as little of the lines as it can. It fits the plot:
            // names too long for it are shortened with "…".
            let maxChars = max(4, Int((plotW - 12 - 34) / 6.5))
            let names = series.map { $0.name.count > maxChars ? String($0.name.prefix(maxChars - 1)) + "…" : $0.name }
            let boxW = 34 + 6.5 * Double(names.map(\.count).max() ?? 0), boxH = legendH
            let drawn = series.map { s in
                s.points.filter { ty($0.y).isFinite && tx($0.x).isFinite }.map { (x: px($0.x), y: pv($0.y)) }
            }
            let corner = legendCorner(lines: drawn, box: (boxW, boxH),
                                      plot: (x: left, y: top, width: plotW, height: plotH))
            svg += "<rect class=\"legend-box\" x=\"\(number(corner.x))\" y=\"\(number(corner.y))\" width=\"\(number(boxW))\" height=\"\(number(boxH))\" fill=\"#ffffff\" fill-opacity=\"0.85\" stroke=\"#dddddd\"/>"
            var y = corner.y + 11
            for (i, name) in names.enumerated() {
                let (color, dash) = styles[i]
                let dashed = dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
                svg += "<line x1=\"\(number(corner.x + 6))\" y1=\"\(number(y))\" x2=\"\(number(corner.x + 26))\" y2=\"\(number(y))\" stroke=\"\(color)\"\(dashed) stroke-width=\"3\"/>"
                svg += "<text x=\"\(number(corner.x + 32))\" y=\"\(number(y + 4))\" class=\"legend\">\(escape(name))</text>"
                y += 16
            }
        }
        return svg + "</svg>"
    }

    /// The top-left point of a legend box of `box` size inside the plot area: the corner (top right
    /// first, then top left, bottom right, bottom left) whose box holds the fewest points of
    /// `lines` (each series' pixel positions), with the segments between a line's consecutive
    /// points sampled too, so that a line crossing the box counts even when its points lie outside it.
    static func legendCorner(lines: [[(x: Double, y: Double)]], box: (width: Double, height: Double),
                             plot: (x: Double, y: Double, width: Double, height: Double)) -> (x: Double, y: Double) {
        let inset = 6.0
        let corners = [(plot.x + plot.width - box.width - inset, plot.y + inset),
                       (plot.x + inset, plot.y + inset),
                       (plot.x + plot.width - box.width - inset, plot.y + plot.height - box.height - inset),
                       (plot.x + inset, plot.y + plot.height - box.height - inset)]
        var samples: [(x: Double, y: Double)] = lines.flatMap { $0 }
        for points in lines {
            for (a, b) in zip(points, points.dropFirst()) {
                let steps = Int(min(200, (abs(b.x - a.x) + abs(b.y - a.y)) / 4))
                guard steps > 1 else { continue }
                for k in 1..<steps {
                    let f = Double(k) / Double(steps)
                    samples.append((a.x + (b.x - a.x) * f, a.y + (b.y - a.y) * f))
                }
            }
        }
        func covered(_ corner: (Double, Double)) -> Int {
            samples.reduce(0) { n, p in
                n + (p.x >= corner.0 && p.x <= corner.0 + box.width && p.y >= corner.1 && p.y <= corner.1 + box.height ? 1 : 0)
            }
        }
        let best = corners.min { covered($0) < covered($1) } ?? corners[0]
        return (best.0, best.1)
    }

    /// A heatmap of `values[row][column]` with row and column labels and a colour scale bar.
    /// Colours run from white (the minimum) to dark blue (the maximum); `logScale` maps log10(value).
    /// Cells show their value with `decimals` decimals (default: as `label` writes it); the cells
    /// widen to fit the longest.
    public static func heatmap(title: String, rowLabel: String, columnLabel: String, rows: [String], columns: [String],
                               values: [[Double]], unit: String, logScale: Bool = false, decimals: Int? = nil,
                               cellHeight: Double = 26, markZeros: Bool = false) -> String {
        func text(_ v: Double) -> String {
            if markZeros && v == 0 { return "exact 0" }
            return decimals.map { v.isFinite ? String(format: "%.\($0)f", v) : label(v) } ?? label(v)
        }
        let longest = values.flatMap { $0.map { text($0).count } }.max() ?? 4
        let cellWidth = max(40, 6.5 * Double(longest) + 12, 6.5 * Double(columns.map(\.count).max() ?? 0) + 8)
        func f(_ v: Double) -> Double { logScale ? (v > 0 ? log10(v) : -.infinity) : v }
        let finite = values.flatMap { $0 }.map(f).filter(\.isFinite)
        let lo = finite.min() ?? 0, hi = finite.max() ?? 1
        // Room right of the cells for the colour bar (24 + 12), its end labels and its unit.
        let barLabels = [label(logScale ? pow(10, lo) : lo), label(logScale ? pow(10, hi) : hi)].map(\.count).max() ?? 4
        let right = max(24 + 16 + 6.5 * Double(barLabels), 24 + 7 * Double(unit.count)) + 12
        let left = 16 + 6.5 * Double(rows.map(\.count).max() ?? 8) + 12, top = 36.0, bottom = 56.0
        let width = max(left + Double(columns.count) * cellWidth + right, 7.5 * Double(title.count) + 24)
        let height = top + Double(rows.count) * cellHeight + bottom
        func shade(_ v: Double) -> String {
            if markZeros && v == 0 { return "#f1ece0" }
            let x = f(v)
            guard x.isFinite else { return "#eeeeee" }
            let t = hi > lo ? (x - lo) / (hi - lo) : 0.5
            // white → dark blue
            let r = Int(255 - t * (255 - 8)), g = Int(255 - t * (255 - 48)), b = Int(255 - t * (255 - 107))
            return String(format: "#%02x%02x%02x", r, g, b)
        }
        // In a box that scrolls sideways: the cells and labels keep their size however many columns.
        var svg = "<div class=\"scroll\"><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart heatmap\" viewBox=\"0 0 \(number(width)) \(number(height))\" width=\"\(number(width))\" height=\"\(number(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        svg += "<text x=\"\(number(width / 2))\" y=\"18\" text-anchor=\"middle\" class=\"title\">\(escape(title))</text>"
        for (r, row) in values.enumerated() {
            for (c, v) in row.enumerated() {
                let x = left + Double(c) * cellWidth, y = top + Double(r) * cellHeight
                svg += "<rect class=\"cell\" x=\"\(number(x))\" y=\"\(number(y))\" width=\"\(number(cellWidth))\" height=\"\(number(cellHeight))\" fill=\"\(shade(v))\"><title>\(escape(rows[r])), \(escape(columns[c])): \(text(v)) \(escape(unit))</title></rect>"
                let dark = hi > lo && (f(v) - lo) / (hi - lo) > 0.55
                // An inline style: the stylesheet's text colour would override a fill attribute.
                svg += "<text x=\"\(number(x + cellWidth / 2))\" y=\"\(number(y + cellHeight / 2 + 4))\" text-anchor=\"middle\" class=\"cellvalue\" style=\"fill:\(dark ? "#fff" : "#222")\">\(text(v))</text>"
            }
        }
        for (r, name) in rows.enumerated() {
            svg += "<text x=\"\(number(left - 6))\" y=\"\(number(top + Double(r) * cellHeight + cellHeight / 2 + 4))\" text-anchor=\"end\">\(escape(name))</text>"
        }
        for (c, name) in columns.enumerated() {
            svg += "<text x=\"\(number(left + Double(c) * cellWidth + cellWidth / 2))\" y=\"\(number(top + Double(rows.count) * cellHeight + 16))\" text-anchor=\"middle\">\(escape(name))</text>"
        }
        svg += "<text x=\"\(number(left + Double(columns.count) * cellWidth / 2))\" y=\"\(number(height - 12))\" text-anchor=\"middle\" class=\"label\">\(escape(columnLabel))</text>"
        svg += "<text transform=\"translate(14 \(number(top + Double(rows.count) * cellHeight / 2))) rotate(-90)\" text-anchor=\"middle\" class=\"label\">\(escape(rowLabel))</text>"
        // Colour scale.
        let barX = left + Double(columns.count) * cellWidth + 24, barH = Double(rows.count) * cellHeight
        for i in 0..<20 {
            let t = Double(i) / 19
            let v = logScale ? pow(10, lo + t * (hi - lo)) : lo + t * (hi - lo)
            svg += "<rect x=\"\(number(barX))\" y=\"\(number(top + barH * (1 - Double(i + 1) / 20)))\" width=\"12\" height=\"\(number(barH / 20 + 0.5))\" fill=\"\(shade(v))\"/>"
        }
        let loLabel = logScale ? pow(10, lo) : lo, hiLabel = logScale ? pow(10, hi) : hi
        svg += "<text x=\"\(number(barX + 16))\" y=\"\(number(top + 10))\">\(label(hiLabel))</text>"
        svg += "<text x=\"\(number(barX + 16))\" y=\"\(number(top + barH))\">\(label(loLabel))</text>"
        svg += "<text x=\"\(number(barX))\" y=\"\(number(top + barH + 16))\" class=\"legend\">\(escape(unit))</text>"
        return svg + "</svg></div>"
    }

    /// One series of an interval chart: a mean and an optional interval per category (nil: none).
    public struct IntervalSeries: Sendable {
        public var name: String
        public var values: [(mean: Double, low: Double?, high: Double?)?]
        public init(name: String, values: [(mean: Double, low: Double?, high: Double?)?]) {
            self.name = name
            self.values = values
        }
    }

    /// Dots with interval whiskers, one group per category and one dot per series in it; a dashed
    /// line at zero when the axis spans it (differences).
    public static func intervalChart(title: String, yLabel: String, categories: [String], series: [IntervalSeries],
                                     colors chosen: [String]? = nil, width: Double = 520, height plotHeight: Double = 300) -> String {
        // The legend under the plot, wrapped into as many lines as it needs.
        var legend: [(x: Double, line: Int)] = [], lx = 64.0, line = 0
        for s in series where series.count > 1 {
            let w = 24 + 6.5 * Double(s.name.count)
            if lx + w > width - 8 && lx > 64 { lx = 64; line += 1 }
            legend.append((lx, line))
            lx += w
        }
        let height = plotHeight + (series.count > 1 ? 16 * Double(line) : 0)
        let left = 64.0, right = 16.0, top = 32.0, bottom = 64.0 + (series.count > 1 ? 16 * Double(line) : 0)
        let plotW = width - left - right, plotH = height - top - bottom
        var ys: [Double] = []
        for s in series { for case let v? in s.values { ys += [v.mean, v.low ?? v.mean, v.high ?? v.mean].filter(\.isFinite) } }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 \(number(width)) \(number(height))\" width=\"\(number(width))\" height=\"\(number(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        svg += "<text x=\"\(number(width / 2))\" y=\"18\" text-anchor=\"middle\" class=\"title\">\(escape(title))</text>"
        guard let y0r = ys.min(), let y1r = ys.max(), !categories.isEmpty else {
            return svg + "<text x=\"\(number(width / 2))\" y=\"\(number(height / 2))\" text-anchor=\"middle\">no data</text></svg>"
        }
        let pad = (y1r - y0r) * 0.08 + (y1r == y0r ? max(abs(y1r) * 0.05, 1e-3) : 0)
        let y0 = y0r - pad, y1 = y1r + pad
        func py(_ y: Double) -> Double { top + (1 - (y - y0) / (y1 - y0)) * plotH }
        let group = plotW / Double(categories.count)
        svg += "<g class=\"axis\"><line x1=\"\(number(left))\" y1=\"\(number(top + plotH))\" x2=\"\(number(left + plotW))\" y2=\"\(number(top + plotH))\"/>"
        svg += "<line x1=\"\(number(left))\" y1=\"\(number(top))\" x2=\"\(number(left))\" y2=\"\(number(top + plotH))\"/>"
        let yTicks = ticks(y0, y1)
        for t in yTicks {
            svg += "<line class=\"grid\" x1=\"\(number(left))\" y1=\"\(number(py(t)))\" x2=\"\(number(left + plotW))\" y2=\"\(number(py(t)))\"/>"
            svg += "<text x=\"\(number(left - 6))\" y=\"\(number(py(t) + 4))\" text-anchor=\"end\">\(tickLabel(t, in: yTicks))</text>"
        }
        for (c, name) in categories.enumerated() {
            svg += "<text x=\"\(number(left + (Double(c) + 0.5) * group))\" y=\"\(number(top + plotH + 16))\" text-anchor=\"middle\">\(escape(name))</text>"
        }
        svg += "</g>"
        if y0 < 0 && y1 > 0 {
            svg += "<line x1=\"\(number(left))\" y1=\"\(number(py(0)))\" x2=\"\(number(left + plotW))\" y2=\"\(number(py(0)))\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>"
        }
        svg += "<text transform=\"translate(14 \(number(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\" class=\"label\">\(escape(yLabel))</text>"
        for (i, s) in series.enumerated() {
            let color = chosen?[i % (chosen?.count ?? 1)] ?? colors[i % colors.count]
            for (c, value) in s.values.enumerated() {
                guard let v = value, v.mean.isFinite else { continue }
                let x = left + (Double(c) + Double(i + 1) / Double(series.count + 1)) * group
                // The whisker with its caps as one stroke; without an interval, a tick at the mean.
                let (lo, hi) = (v.low ?? v.mean, v.high ?? v.mean)
                let whisker = v.low == nil
                    ? [(x - 7, py(v.mean)), (x + 7, py(v.mean))]
                    : [(x - 5, py(lo)), (x + 5, py(lo)), (x, py(lo)), (x, py(hi)), (x - 5, py(hi)), (x + 5, py(hi))]
                svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(whisker.map { "\(number($0.0)),\(number($0.1))" }.joined(separator: " "))\"/>"
                svg += "<circle cx=\"\(number(x))\" cy=\"\(number(py(v.mean)))\" r=\"4\" fill=\"\(color)\"><title>\(escape(s.name)), \(escape(categories[c])): \(label(v.mean))</title></circle>"
            }
        }
        for (i, s) in series.enumerated() where series.count > 1 {
            let color = chosen?[i % (chosen?.count ?? 1)] ?? colors[i % colors.count]
            let x = legend[i].x, y = top + plotH + 38 + 16 * Double(legend[i].line)
            svg += "<circle cx=\"\(number(x + 6))\" cy=\"\(number(y - 4))\" r=\"4\" fill=\"\(color)\"/>"
            svg += "<text x=\"\(number(x + 14))\" y=\"\(number(y))\" class=\"legend\">\(escape(s.name))</text>"
        }
        return svg + "</svg>"
    }
}
