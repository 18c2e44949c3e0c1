import Foundation
import XCTest
import MyopiaTestSupport

/// `myopia demo --quick` end to end: every stage's files, a report with every section, a summary
/// with finite figures, the terminal table; and the offline fallback when no registry answers.
final class DemoCLITests: XCTestCase {
    /// The sections the analyses of every model add to the report.
    static let analysisSectionMarkers = ["<section class=\"probe\"", "<section class=\"lens\"",
                                         "<section class=\"sine-probe\"", "<section class=\"generation\""]

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-demo-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Every number in a JSON value, with its path (the flags quick, offline and skipped are not
    /// figures); strings like "nan" are reported as not finite.
    func numbers(_ value: Any, path: String = "") -> [(String, Double?)] {
        switch value {
        case let d as [String: Any]:
            return d.filter { !["quick", "offline", "skipped"].contains($0.key) }.flatMap { numbers($0.value, path: path + "." + $0.key) }
        case let a as [Any]: return a.enumerated().flatMap { numbers($0.element, path: path + "[\($0.offset)]") }
        case let n as NSNumber: return [(path, n.doubleValue)]
        case let s as String where ["nan", "inf", "-inf"].contains(s): return [(path, nil)]
        default: return []
        }
    }

    /// The quick demo with the user's asset cache (tiny-shakespeare is fetched if missing, ~1 MB;
    /// SmolLM2 runs only if it is already cached: --quick never downloads it).
    func testQuickDemoWritesAReportWithEverySection() throws {
        let out = try temporaryDirectory().appendingPathComponent("demo")
        let started = Date()
        let r = try runMyopia(["demo", "--quick", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 180, "--quick must stay within its 3-minute budget")

        let summaryData = try Data(contentsOf: out.appendingPathComponent("summary.json"))
        let summary = try XCTUnwrap(try JSONSerialization.jsonObject(with: summaryData) as? [String: Any])
        for key in ["seed", "quick", "offline", "offline_reason", "data", "steps", "val_loss", "seconds", "budget_seconds",
                    "cores", "load_average_start", "load_average_end", "stages", "sine", "text", "games", "smollm2", "smollm2_skipped", "report"] {
            XCTAssertTrue(summary.keys.contains(key), "summary.json lacks \(key)")
        }
        XCTAssertEqual(summary["quick"] as? Bool, true)
        let sine = try XCTUnwrap(summary["sine"] as? [String: Any])
        for key in ["floor_loss", "val_loss", "ratio", "horizon_mean_offset", "lag0_r2"] { XCTAssertNotNil(sine[key], "sine.\(key)") }
        let text = try XCTUnwrap(summary["text"] as? [String: Any])
        for key in ["val_loss", "gap", "unigram_loss", "future_gradient_share", "analysis"] { XCTAssertNotNil(text[key], "text.\(key)") }
        let analysis = try XCTUnwrap(text["analysis"] as? [String: Any])
        for flow in ["vanilla", "myopic"] {
            let a = try XCTUnwrap(analysis[flow] as? [String: Any], flow)
            for key in ["horizon_mean_offset", "probe", "lens", "generation"] { XCTAssertNotNil(a[key], "\(flow).\(key)") }
            let generation = try XCTUnwrap(a["generation"] as? [String: Any])
            XCTAssertNotNil(generation["loop_share"] as? Double)
            XCTAssertNotNil(generation["teacher_forced_loss"] as? Double)
        }
        let figures = numbers(summary)
        XCTAssertGreaterThan(figures.count, 40)
        for (path, value) in figures { XCTAssertTrue(value?.isFinite ?? false, "summary.json\(path) is not finite") }
        let gap = try XCTUnwrap(text["gap"] as? [String: Any])
        XCTAssertNotNil(gap["std"] as? Double, "two seeds give the gap a spread")

        // Every stage's files, where the report (and the report branch's sections) read them.
        let textFolder = (summary["offline"] as? Bool) == true ? "synthetic-text" : "shakespeare"
        var files = ["report.html", "plan.json", "\(textFolder)/gap.json", "games/games.json",
                     "games/consequence-0.5-seed1/upstream.json", "games/teacher-forced-seed2/continuation_advantage.json"]
        for flow in ["vanilla", "myopic"] {
            files += ["sine/sine-\(flow)/metrics.jsonl", "sine/sine-\(flow)/results.json", "sine/sine-\(flow)/horizon.json",
                      "sine/sine-\(flow)/sine_probe.json"]
            files += ["eval.json", "metrics.jsonl", "horizon.json", "probe.json", "lens.json", "generation.json"]
                .map { "\(textFolder)/\(flow)-seed1/\($0)" }
            files.append("\(textFolder)/\(flow)-seed2/eval.json")
        }
        let ranSmolLM2 = !(summary["smollm2"] is NSNull)
        if ranSmolLM2 {
            files += ["horizon.json", "probe.json", "lens.json", "generation.json"].map { "smollm2/\($0)" }
        } else {
            XCTAssertNotNil(summary["smollm2_skipped"] as? String)
        }
        for file in files {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "missing \(file)")
        }

        // The report: the gap, each run's training curves (sine and text), the gradient split, and
        // a horizon for each model; self-contained.
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertEqual(html.components(separatedBy: "<section class=\"gap\"").count - 1, 1)
        XCTAssertEqual(html.components(separatedBy: "<section class=\"games\"").count - 1, 1)
        let stages = try XCTUnwrap(summary["stages"] as? [[String: Any]])
        let gamesStage = try XCTUnwrap(stages.first { $0["stage"] as? String == "games" })
        XCTAssertNotNil(gamesStage["seconds"] as? Double)
        XCTAssertEqual(html.components(separatedBy: "<section class=\"train\"").count - 1, 4)   // 2 sine, 2 text
        XCTAssertEqual(html.components(separatedBy: "<section class=\"horizon\"").count - 1, ranSmolLM2 ? 5 : 4)
        for part in ["Training run — sine-vanilla", "Training run — sine-myopic", "The myopia gap — \(textFolder)",
                     "Validation loss during training", "Loss by position in the window", "The gap by position",
                     "Share of the gradient that serves later tokens", "Gradient horizon — sine-vanilla/horizon.json",
                     "Gradient horizon — vanilla-seed1/horizon.json", "Gradient horizon — myopic-seed1/horizon.json"] {
            XCTAssertTrue(html.contains(part), "report lacks \(part)")
        }
        if ranSmolLM2 { XCTAssertTrue(html.contains("Gradient horizon — smollm2/horizon.json")) }
        XCTAssertFalse(html.contains("no data"))
        XCTAssertFalse(html.contains("<script"))
        for marker in Self.analysisSectionMarkers {
            XCTAssertTrue(html.contains(marker), "report lacks \(marker)")
        }

        // The terminal: stage names on stderr, the table on stdout.
        // SmolLM2's stage runs only when the model is in the user's asset cache (--quick never
        // downloads it); otherwise it says why it was skipped.
        for stage in ["[1/7]", "[2/7] sine task", "[3/7]", "[4/7]", "[5/7] text: the training games", ranSmolLM2 ? "[6/7]" : "smollm2-135m: skipped", "[7/7]"] {
            XCTAssertTrue(r.stderr.contains(stage), "stderr lacks \(stage)")
        }
        for part in ["sine task (p 1, f 3)", "floor", "gap", "training games", "consequence-0.5 − teacher-forced", "horizon mean offset by layer", "probe k=1", "samples in a loop",
                     "smollm2-135m", "report: \(out.appendingPathComponent("report.html").path)"] {
            XCTAssertTrue(r.stdout.contains(part), "stdout lacks \(part):\n\(r.stdout)")
        }
    }

    /// No registry and an empty cache: one line says so, the text stages run on synthetic text,
    /// SmolLM2 is skipped, and the report is still complete.
    func testDemoFallsBackToOfflineTextWithoutARegistry() throws {
        let dir = try temporaryDirectory()
        let out = dir.appendingPathComponent("demo")
        let unreachable = ["MYOPIA_HOME": dir.appendingPathComponent("empty-cache").path,
                           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "",
                           "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0", "PIP_CONFIG_FILE": "/dev/null"]
        let r = try runMyopia(["demo", "--quick", "--out", out.path], environment: unreachable)
        XCTAssertEqual(r.status, 0, r.stderr)
        let offlineLines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("offline:") }
        XCTAssertEqual(offlineLines.count, 1, r.stderr)
        XCTAssertTrue(offlineLines.first?.contains("synthetic") ?? false, r.stderr)
        XCTAssertFalse(r.stderr.contains("error:"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("smollm2-135m: skipped") }.count, 1, r.stderr)
        XCTAssertTrue(r.stdout.contains("offline: the text stages ran on synthetic text"), r.stdout)

        let saved = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])
        XCTAssertEqual(saved["offline"] as? Bool, true)
        XCTAssertEqual(saved["data"] as? String, "synthetic-text")
        XCTAssertTrue((saved["offline_reason"] as? String)?.contains("registry") ?? false, "\(saved["offline_reason"] ?? "")")
        XCTAssertTrue(saved["smollm2"] is NSNull)
        XCTAssertTrue((saved["smollm2_skipped"] as? String)?.contains("cache") ?? false)
        for file in ["report.html", "synthetic-text/gap.json", "synthetic-text/vanilla-seed1/generation.json", "sine/sine-myopic/sine_probe.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "missing \(file)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("smollm2").path))
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("The myopia gap — synthetic-text"))
    }
}
