import Foundation
import XCTest
import MyopiaTestSupport

/// `myopia games` end to end on a tiny configuration: every game over two seeds, every run's
/// measurements, games.json with intervals and the consequence comparison, --resume reusing the
/// finished runs, the report's section, and bad lists refused in one line.
final class GamesExperimentCLITests: CLITestCase {
    func testGamesTrainsMeasuresAndReportsEveryGame() throws {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "the quick brown fox jumps over the lazy dog; the dog sleeps. ", count: 80).utf8).write(to: corpus)
        let out = dir.appendingPathComponent("games")
        let flags = ["games", "--data", corpus.path, "--out", out.path, "--seeds", "1,2", "--layers", "1", "--heads", "2",
                     "--d-model", "16", "--seq-len", "16", "--batch", "4", "--steps", "6", "--warmup", "1", "--log-every", "3",
                     "--eval-every", "6", "--samples", "2", "--max-tokens", "12", "--measure-windows", "2", "--max-offset", "4",
                     "--draws", "1", "--advantage-windows", "4", "--consequence-horizon", "3"]
        let started = Date()
        let r = try run(flags + ["--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
        let summary = try json(r)
        let games = try XCTUnwrap(summary["games"] as? [[String: Any]])
        let labels = ["teacher-forced", "scheduled-sampling-0.25", "consequence-0.5", "multi-token-2"]
        XCTAssertEqual(games.map { $0["label"] as? String }, labels)
        for game in games {
            let valLoss = try XCTUnwrap(game["val_loss"] as? [String: Any])
            XCTAssertEqual((valLoss["per_seed"] as? [Double])?.count, 2)
            XCTAssertNotNil(valLoss["low"] as? Double, "two seeds give an interval")
            XCTAssertEqual((game["position_loss"] as? [Double])?.count, 16)
            XCTAssertEqual((game["horizon_mean_offset"] as? [Double])?.count, 2)
            let upstream = try XCTUnwrap(game["upstream"] as? [String: Any])
            XCTAssertEqual(upstream["max_offset"] as? Int, 4)
            XCTAssertFalse((upstream["cells"] as? [Any] ?? []).isEmpty)
            for key in ["generation", "continuation_advantage", "runs"] { XCTAssertNotNil(game[key], key) }
        }
        // The knob the list leaves unset comes from the game flag.
        let consequence = try XCTUnwrap(games[2]["game"] as? [String: Any])
        XCTAssertEqual(consequence["consequence_horizon"] as? Int, 3)
        XCTAssertEqual((summary["measure"] as? [String: Any])?["advantage_horizon"] as? Int, 3)
        let comparison = try XCTUnwrap((summary["consequence"] as? [[String: Any]])?.first)
        XCTAssertEqual(comparison["baseline"] as? String, "teacher-forced")
        for key in ["val_loss_given_up", "advantage_gain"] {
            XCTAssertEqual(((comparison[key] as? [String: Any])?["per_seed"] as? [Double])?.count, 2, key)
        }
        for label in labels {
            for seed in [1, 2] {
                for file in ["run_config.json", "eval.json", "horizon.json", "upstream.json", "generation.json",
                             "continuation_advantage.json", "commands.json"] {
                    XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("\(label)-seed\(seed)/\(file)").path),
                                  "\(label)-seed\(seed)/\(file)")
                }
            }
        }
        let config = try String(contentsOf: out.appendingPathComponent("multi-token-2-seed1/run_config.json"), encoding: .utf8)
        XCTAssertTrue(config.contains("\"prediction_heads\" : 2"), config)

        // --resume only measures the finished runs again: same scores, no training.
        let resumed = try run(flags + ["--resume", "--json"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let again = try XCTUnwrap(try json(resumed)["games"] as? [[String: Any]])
        XCTAssertEqual((again[0]["val_loss"] as? [String: Any])?["per_seed"] as? [Double],
                       (games[0]["val_loss"] as? [String: Any])?["per_seed"] as? [Double])

        // `myopia runs` lists the experiment by its summary, and each run inside it.
        let listed = try run(["runs", dir.path, "--json"])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        let entries = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        let listedGames = try XCTUnwrap(entries.first { $0["path"] as? String == "games" })
        XCTAssertEqual(listedGames["kind"] as? String, "games")
        XCTAssertEqual(listedGames["game"] as? String, labels.joined(separator: ","))
        XCTAssertEqual(entries.first { $0["path"] as? String == "games/consequence-0.5-seed2" }?["kind"] as? String, "train")

        // The table, and the report's section.
        let table = try run(Array(flags.prefix(1)) + ["--resume"] + Array(flags.dropFirst()))
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("consequence-0.5 against teacher-forced"), table.stdout)
        let report = dir.appendingPathComponent("report.html")
        let rendered = try run(["report", out.path, "--out", report.path])
        XCTAssertEqual(rendered.status, 0, rendered.stderr)
        let html = try String(contentsOf: report, encoding: .utf8)
        for part in ["<section class=\"games\"", "teacher-forced: optimised", "multi-token-2: upstream", "Validation loss by game"] {
            XCTAssertTrue(html.contains(part), "report lacks \(part)")
        }

        // Bad lists are refused in one line naming --games; a single --game and bad seeds as usage errors.
        for bad in [["--games", "teacher-forced,greedy"], ["--games", "multi-token=0"]] {
            let refused = try run(flags + bad)
            XCTAssertNotEqual(refused.status, 0, bad.joined(separator: " "))
            XCTAssertTrue(refused.stderr.contains("games"), refused.stderr)
            XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        }
        for (bad, says) in [(["--game", "consequence"], "--games"), (["--seeds", "1,x"], "--seeds")] {
            let refused = try run(flags + bad)
            XCTAssertNotEqual(refused.status, 0, bad.joined(separator: " "))
            XCTAssertTrue(refused.stderr.contains(says), refused.stderr)
        }
    }
}
