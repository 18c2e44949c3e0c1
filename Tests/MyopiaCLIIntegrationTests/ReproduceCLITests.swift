import Foundation
import XCTest
import MyopiaTestSupport

/// `myopia reproduce wu2024 --quick` end to end (with the user's asset cache: tiny-shakespeare and
/// the GPT-2 tokenizer are fetched if missing): plan.json first, every section, reproduce.json rows
/// with paper, measured, interval, scale and verdict, report.html with the table, the curves and
/// the dynamics. Then Ctrl-C after the first section and the same command again: the finished
/// section is reused, not redone, and the figures equal the uninterrupted run's.
final class ReproduceCLITests: CLITestCase {
    func rows(_ out: URL) throws -> [[String: Any]] {
        let data = try Data(contentsOf: out.appendingPathComponent("reproduce.json"))
        let table = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try XCTUnwrap(table["rows"] as? [[String: Any]])
    }

    /// What must not depend on an interruption: every row's figures and verdicts, and the dynamics.
    func figures(_ out: URL) throws -> [String] {
        var lines = try rows(out).map { row -> String in
            let keep = row.filter { ["id", "measured", "interval", "per_seed", "verdict", "curve", "scale"].contains($0.key) }
            return String(decoding: try JSONSerialization.data(withJSONObject: keep, options: [.sortedKeys]), as: UTF8.self)
        }
        let dynamics = try XCTUnwrap(try JSONSerialization.jsonObject(
            with: Data(contentsOf: out.appendingPathComponent("text-gap/vanilla-seed1/dynamics.json"))) as? [String: Any])
        for key in ["points", "gradient_split"] {
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: dynamics[key] ?? NSNull(), options: [.sortedKeys]), as: UTF8.self))
        }
        return lines
    }

    func testQuickReproductionIsCompleteAndResumesAfterCtrlC() throws {
        let dir = try temporaryDirectory()
        let out = dir.appendingPathComponent("straight")
        let r = try run(["reproduce", "wu2024", "--quick", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)

        let plan = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("plan.json"))) as? [String: Any])
        XCTAssertEqual(plan["tier"] as? String, "quick")
        let sections = ["sine-p0.3-f3", "sine-p1-f3", "text-gap", "dynamics", "bonus", "pretrained-gap", "pretrained-bonus"]
        for (i, section) in sections.enumerated() {
            XCTAssertTrue(r.stderr.contains("[\(i + 1)/\(sections.count)] \(section): "), "stderr lacks section \(section)")
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("\(section)/section.json").path), section)
        }
        XCTAssertTrue(r.stderr.contains("left in the plan"), "no ETA for the plan")
        for file in ["text-gap/gap.json", "text-gap/bigram-seed3/eval.json", "bonus/bonus.json", "pretrained-gap/gap.json",
                     "pretrained-bonus/bonus.json", "sine-p1-f3/sine.json", "sine-p1-f3/vanilla-seed2/sine_probe.json",
                     "text-gap/vanilla-seed1/dynamics.json", "report.html"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "missing \(file)")
        }
        // The GPT-2 tokenizer (--quick: 16-token windows), 3 seeds, the bigram baseline.
        let gap = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("text-gap/gap.json"))) as? [String: Any])
        XCTAssertEqual((gap["settings"] as? [String: Any])?["tokenizer"] as? String, "gpt2")
        XCTAssertEqual((gap["seeds"] as? [Any])?.count, 3)
        XCTAssertEqual((gap["flows"] as? [[String: Any]])?.compactMap { $0["flow"] as? String }, ["vanilla", "myopic", "bigram"])

        // Every row: the paper's figure, ours with an interval, both scales, a computed verdict.
        let table = try rows(out)
        let ids = table.compactMap { $0["id"] as? String }
        for id in ["sine-p0.3-f3.myopic_loss", "sine-p1-f3.gap", "sine-p1-f3.probe_r2_layer1", "text.vanilla_loss", "text.myopia_gap",
                   "text.position_crossover", "text.bigram_loss", "text.local_myopia_bonus", "pretrained.myopia_gap",
                   "pretrained.local_myopia_bonus", "sine-p1-f10.gap"] {
            XCTAssertTrue(ids.contains(id), "reproduce.json lacks row \(id): \(ids)")
        }
        for row in table {
            let id = row["id"] as? String ?? "?"
            for key in ["paper", "measured", "interval", "scale", "verdict"] { XCTAssertTrue(row.keys.contains(key), "\(id) lacks \(key)") }
            let verdict = try XCTUnwrap(row["verdict"] as? String)
            XCTAssertTrue(["agrees", "disagrees", "inconclusive", "not_measured"].contains(verdict), verdict)
            let scale = try XCTUnwrap(row["scale"] as? [String: Any])
            XCTAssertNotNil((scale["paper"] as? [String: Any])?["parameters"] as? Int, id)
            if verdict == "not_measured" {
                XCTAssertFalse((row["reason"] as? String ?? "").isEmpty, "\(id) is not measured without a reason")
            } else {
                XCTAssertNotNil((scale["ours"] as? [String: Any])?["tokens"] as? Int, id)
                XCTAssertFalse((row["rules"] as? [Any] ?? []).isEmpty, id)
                if id != "text.position_crossover" {
                    XCTAssertTrue((row["measured"] as? Double)?.isFinite ?? false, id)
                    XCTAssertEqual((row["interval"] as? [Double])?.count, 2, "\(id): an interval over seeds")
                }
            }
        }
        // f = 10 is not in the quick plan: listed, with the reason.
        let f10 = try XCTUnwrap(table.first { $0["id"] as? String == "sine-p1-f10.gap" })
        XCTAssertEqual(f10["verdict"] as? String, "not_measured")
        XCTAssertTrue((f10["reason"] as? String ?? "").contains("quick"))
        // The pretrained rows name their model (a tiny stand-in at --quick).
        let pretrained = try XCTUnwrap(table.first { $0["id"] as? String == "pretrained.myopia_gap" })
        XCTAssertTrue((pretrained["ours"] as? String ?? "").contains("stand-in"), "\(pretrained)")

        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        for part in ["the figures beside ours", "text.myopia_gap", "The text gap by position", "The local myopia bonus by position",
                     "Pre-caching over training", "Horizon: mean offset k by residual stream", "loss ÷ the no-pre-caching floor",
                     "The myopia gap — text-gap", "SmolLM2-135M-Instruct Q4_1"] {
            XCTAssertTrue(html.contains(part), "report lacks \(part)")
        }
        XCTAssertFalse(html.contains("<script"))
        XCTAssertTrue(r.stdout.contains("text.myopia_gap"), r.stdout)

        // Ctrl-C once the first section is done; the same command again finishes the plan.
        let stopped = dir.appendingPathComponent("stopped")
        let first = stopped.appendingPathComponent("sine-p0.3-f3/section.json")
        let (status, stderr) = try interrupt(["reproduce", "wu2024", "--quick", "--out", stopped.path]) {
            FileManager.default.fileExists(atPath: first.path)
        }
        XCTAssertEqual(status, 130, stderr)
        XCTAssertTrue(stderr.contains("run the same command again"), stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stopped.appendingPathComponent("reproduce.json").path))
        let firstRecord = try Data(contentsOf: first)
        let probeDate = try FileManager.default.attributesOfItem(atPath: stopped.appendingPathComponent("sine-p0.3-f3/vanilla-seed1/sine_probe.json").path)[.modificationDate] as? Date

        let resumed = try run(["reproduce", "wu2024", "--quick", "--out", stopped.path])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("[1/7] sine-p0.3-f3: finished earlier, reused"), resumed.stderr)
        XCTAssertFalse(resumed.stderr.contains("sine-p0.3-f3: training"), "a finished section was trained again")
        XCTAssertEqual(try Data(contentsOf: first), firstRecord)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: stopped.appendingPathComponent("sine-p0.3-f3/vanilla-seed1/sine_probe.json").path)[.modificationDate] as? Date, probeDate)
        XCTAssertEqual(try figures(stopped), try figures(out), "an interrupted and resumed plan gives other figures")

        // A different plan into the same folder is refused, naming plan.json.
        let other = try run(["reproduce", "wu2024", "--quick", "--seed", "2", "--out", stopped.path])
        XCTAssertEqual(other.status, 1)
        XCTAssertTrue(other.stderr.contains("plan.json"), other.stderr)
    }
}
