import Foundation
import XCTest
import MyopiaTestSupport

/// The report as a person sees it: run folders with every kind of section are made through the
/// command line (training runs with the gradient split, a gap study, a games experiment, eval, horizon, probe, lens,
/// generate and a sine-task probe with --out), `myopia runs` lists them and `myopia report` renders
/// them; the HTML is then opened in headless Chromium, which must lay out every chart with a
/// non-empty box and drawn marks, and a screenshot is written for a person to look at.
final class ReportBrowserTests: CLITestCase {
    /// The package root (Tests/MyopiaCLITests/ is two levels below it).

    func myopia(_ arguments: [String]) throws -> CLIResult {
        let r = try run(arguments)
        XCTAssertEqual(r.status, 0, "myopia \(arguments.joined(separator: " ")): \(r.stderr)")
        return r
    }

    /// Makes the run folders under `dir`; returns the folders to report on.
    func makeRuns(in dir: URL) throws -> [String] {
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "the quick brown fox jumps over the lazy dog; the dog sleeps. ", count: 80).utf8).write(to: corpus)
        let shape = ["--data", corpus.path, "--layers", "2", "--heads", "2", "--d-model", "16", "--seq-len", "16", "--batch", "4",
                     "--steps", "24", "--warmup", "2", "--lr", "0.01", "--log-every", "4", "--eval-every", "8", "--quiet"]
        let vanilla = dir.appendingPathComponent("vanilla").path, myopic = dir.appendingPathComponent("myopic").path
        _ = try myopia(["train", "--out", vanilla, "--log-gradient-split", "8"] + shape)
        _ = try myopia(["train", "--out", myopic, "--flow", "myopic", "--log-gradient-split", "8"] + shape)
        _ = try myopia(["gap", "--out", dir.appendingPathComponent("gap").path, "--seeds", "2", "--bigram"] + shape)
        _ = try myopia(["games", "--out", dir.appendingPathComponent("games").path, "--seeds", "1,2", "--samples", "2",
                        "--max-tokens", "12", "--measure-windows", "2", "--max-offset", "4", "--draws", "1",
                        "--advantage-windows", "4"] + shape)
        for run in [vanilla, myopic] {
            _ = try myopia(["eval", "--model", run, "--data", corpus.path, "--seq-len", "16", "--out", run, "--quiet"])
            _ = try myopia(["horizon", "--model", run, "--data", corpus.path, "--seq-len", "16", "--sequences", "4", "--out", run, "--quiet"])
            _ = try myopia(["probe", "--model", run, "--data", corpus.path, "--seq-len", "16", "--offsets", "0..2", "--top", "16",
                            "--positions", "2000", "--epochs", "2", "--out", run, "--quiet"])
            _ = try myopia(["lens", "--model", run, "--data", corpus.path, "--seq-len", "16", "--offsets", "0..2", "--out", run, "--quiet"])
            // Greedy: an undertrained model falls into a loop, which the report highlights.
            _ = try myopia(["generate", "--model", run, "--prompt", "the ", "--samples", "2", "--max-tokens", "60",
                            "--greedy", "--out", run, "--quiet"])
        }
        let sine = dir.appendingPathComponent("sine").path
        _ = try myopia(["synthetic", "sine", "--out", sine, "--steps", "20", "--batch", "8", "--seq-len", "16", "--layers", "2",
                        "--d-model", "16", "--heads", "2", "--val-sequences", "16", "--eval-every", "10", "--log-every", "5", "--quiet"])
        _ = try myopia(["probe", "--model", sine, "--seq-len", "16", "--lags", "0..4", "--sequences", "64", "--out", sine, "--quiet"])
        return [vanilla, myopic, dir.appendingPathComponent("gap").path, dir.appendingPathComponent("games").path, sine]
    }

    func testReportRendersEveryChartInABrowser() throws {
        guard let chromium = try Self.chromium() else {
            throw XCTSkip("MYOPIA_SKIP_BROWSER is set: the report is not opened in a browser")
        }
        let dir = try temporaryDirectory()
        let runs = try makeRuns(in: dir)

        // `myopia runs` lists the analysis results with a figure each.
        let listed = try myopia(["runs", dir.path, "--json"])
        let entries = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        let vanillaEntry = try XCTUnwrap(entries.first { $0["path"] as? String == "vanilla" })
        XCTAssertEqual(vanillaEntry["kind"] as? String, "train")
        let results = try XCTUnwrap(vanillaEntry["results"] as? [String: String])
        XCTAssertEqual(Set(results.keys), ["eval.json", "horizon.json", "probe.json", "lens.json", "generation.json"])
        XCTAssertTrue(results["probe.json"]?.contains("gain over the current token") == true, "\(results)")
        XCTAssertTrue(try XCTUnwrap(entries.first { $0["path"] as? String == "sine" }?["results"] as? [String: String])["sine_probe.json"] != nil)

        let report = dir.appendingPathComponent("report.html")
        _ = try myopia(["report"] + runs + ["--out", report.path, "--title", "browser test"])
        let html = try String(contentsOf: report, encoding: .utf8)
        for heading in ["Comparison of 5 runs", "Training run", "The myopia gap", "The games experiment", "teacher-forced: optimised", "Gradient horizon", "Evaluation",
                        "Future-token probes", "Logit lens", "Generation samples", "Sine-task regression probes",
                        "g_future", "how probe.json was made: myopia probe", "run_config.json"] {
            XCTAssertTrue(html.contains(heading), "the report has no \(heading)")
        }
        XCTAssertTrue(html.contains("<mark class=\"loopa\">"), "no loop highlighted")
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http"))
        let charts = html.components(separatedBy: "<svg").count - 1
        XCTAssertGreaterThanOrEqual(charts, 30)

        // Lay the page out in Chromium: a copy with a script that writes every chart's box and its
        // drawn marks into the DOM, which --dump-dom prints.
        let probe = dir.appendingPathComponent("report-measured.html")
        let script = """
        <script>
        const boxes = [...document.querySelectorAll('svg.chart')].map(s => { const r = s.getBoundingClientRect();
          return {label: s.getAttribute('aria-label'), width: r.width, height: r.height,
                  marks: s.querySelectorAll('polyline, circle, rect.cell').length,
                  drawn: [...s.querySelectorAll('polyline, rect.cell')].filter(e => { const b = e.getBBox(); return b.width > 0 || b.height > 0; }).length}; });
        const out = document.createElement('pre'); out.id = 'chart-boxes'; out.textContent = btoa(unescape(encodeURIComponent(JSON.stringify(boxes))));
        document.body.appendChild(out);
        </script>
        """
        try Data(html.replacingOccurrences(of: "</body>", with: script + "</body>").utf8).write(to: probe)
        let dom = try Self.run(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(dir.appendingPathComponent("profile").path)",
                                          "--window-size=1280,2000", "--dump-dom", probe.absoluteString])
        let start = try XCTUnwrap(dom.range(of: "<pre id=\"chart-boxes\">"), "no measurements in Chromium's DOM:\n\(dom.prefix(500))")
        let end = try XCTUnwrap(dom.range(of: "</pre>", range: start.upperBound..<dom.endIndex))
        let json = try XCTUnwrap(Data(base64Encoded: String(dom[start.upperBound..<end.lowerBound])))
        let boxes = try XCTUnwrap(JSONSerialization.jsonObject(with: json) as? [[String: Any]])
        XCTAssertEqual(boxes.count, charts, "every <svg> is a chart Chromium found")
        for box in boxes {
            let label = box["label"] as? String ?? "?"
            XCTAssertGreaterThan(box["width"] as? Double ?? 0, 100, label)
            XCTAssertGreaterThan(box["height"] as? Double ?? 0, 100, label)
            XCTAssertGreaterThan(box["marks"] as? Int ?? 0, 0, "\(label): nothing drawn")
            XCTAssertGreaterThan(box["drawn"] as? Int ?? 0, 0, "\(label): marks with empty boxes")
        }

        // A screenshot of the top of the report, for a person to look at.
        // Beside the built myopia (.build/release/ or whichever build folder the tests ran from).
        let screenshot = myopiaBinary.deletingLastPathComponent().appendingPathComponent("report-screenshot.png")
        try? FileManager.default.removeItem(at: screenshot)
        _ = try Self.run(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(dir.appendingPathComponent("profile").path)",
                                    "--hide-scrollbars", "--window-size=1280,3200", "--screenshot=\(screenshot.path)", report.absoluteString])
        let png = try Data(contentsOf: screenshot)
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        XCTAssertGreaterThan(png.count, 50_000)
        print("report screenshot: \(screenshot.path)")
    }

    static func findChromium() -> URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            for name in ["chromium", "chromium-browser"] {
                let url = URL(fileURLWithPath: String(dir)).appendingPathComponent(name)
                if FileManager.default.isExecutableFile(atPath: url.path) { return url }
            }
        }
        return nil
    }

    struct BrowserUnavailable: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    /// Chromium on PATH (tools/ci/setup.sh installs it, and .ci/run calls that before the tests);
    /// nil only when MYOPIA_SKIP_BROWSER is set. Without it the test fails: the report's layout is
    /// checked in a real browser or not at all, and that must be a choice, not an accident.
    static func chromium() throws -> URL? {
        if ProcessInfo.processInfo.environment["MYOPIA_SKIP_BROWSER"] != nil { return nil }
        guard let found = findChromium() else {
            throw BrowserUnavailable(message: "chromium is not on PATH: run `bash tools/ci/setup.sh` (Debian's chromium), "
                                     + "or set MYOPIA_SKIP_BROWSER=1 to skip this test")
        }
        return found
    }

    /// Runs `tool`, killed after `timeout` seconds; returns its stdout.
    static func run(_ tool: URL, _ arguments: [String], timeout: Double = 120) throws -> String {
        let process = Process()
        process.executableURL = tool
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: deadline)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        deadline.cancel()
        return String(decoding: data, as: UTF8.self)
    }
}
