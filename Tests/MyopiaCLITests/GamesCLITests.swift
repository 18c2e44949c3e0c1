import Foundation
import XCTest
import MyopiaTestSupport

/// The training games through the command line: each game trains, records its knobs and logs its
/// statistics; the token tasks, `gap` and `--config` files take them too; bad combinations are
/// refused in one line naming the setting.
final class GamesCLITests: CLITestCase {
    func corpus() throws -> (dir: URL, path: String) {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 60).utf8).write(to: corpus)
        return (dir, corpus.path)
    }

    let shape = ["--layers", "1", "--heads", "2", "--d-model", "16", "--seq-len", "16", "--batch", "4", "--steps", "6",
                 "--warmup", "1", "--log-every", "3", "--eval-every", "6"]

    func testEveryGameTrainsAndRecordsItsKnobs() throws {
        let (dir, data) = try corpus()
        let games: [(flags: [String], record: [String: Any], logged: String)] = [
            (["--game", "scheduled-sampling", "--sample-rate", "0.4"], ["sample_rate": 0.4], "replaced_share"),
            (["--game", "consequence", "--consequence-horizon", "3", "--consequence-estimator", "exact"],
             ["consequence_horizon": 3, "consequence_positions": 4, "consequence_weight": 0.5, "consequence_estimator": "exact"],
             "advantage"),
            (["--game", "multi-token", "--prediction-heads", "3", "--family", "llama"], ["prediction_heads": 3], "next_token_loss"),
        ]
        for (i, game) in games.enumerated() {
            let out = dir.appendingPathComponent("run\(i)").path
            let r = try run(["train", "--data", data, "--out", out, "--json"] + shape + game.flags)
            let metrics = try json(r)
            XCTAssertNotNil((metrics["game"] as? [String: Any])?[game.logged], "\(game.flags): \(metrics)")
            let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/run_config.json"))) as? [String: Any])
            XCTAssertEqual(config["game"] as? String, game.flags[1])
            for (key, value) in game.record {
                XCTAssertEqual("\(config[key] ?? "none")", "\(value)", "\(key) in \(game.flags)")
            }
            // The checkpoint is an ordinary t+1 model to every other command.
            let eval = try run(["eval", "--model", out, "--data", data, "--seq-len", "16", "--json"])
            XCTAssertEqual(eval.status, 0, eval.stderr)
        }
        let heads = try String(contentsOfFile: dir.appendingPathComponent("run2/checkpoint-6/config.json").path, encoding: .utf8)
        XCTAssertTrue(heads.contains("\"myopia_prediction_heads\" : 3"), heads)
    }

    func testConfigFileTokenTasksAndGapTakeTheGame() throws {
        let (dir, data) = try corpus()
        let file = dir.appendingPathComponent("settings.json")
        try Data(#"{"game": "scheduled-sampling", "sample-rate": 0.2}"#.utf8).write(to: file)
        let out = dir.appendingPathComponent("from-file").path
        XCTAssertEqual(try run(["train", "--data", data, "--out", out, "--config", file.path, "--quiet"] + shape).status, 0)
        let config = try String(contentsOfFile: out + "/run_config.json", encoding: .utf8)
        XCTAssertTrue(config.contains("\"sample_rate\" : 0.2"), config)
        // A new --game replaces the file's game and drops its knobs.
        let replaced = dir.appendingPathComponent("replaced").path
        XCTAssertEqual(try run(["train", "--data", data, "--out", replaced, "--config", file.path, "--game", "multi-token",
                                "--quiet"] + shape).status, 0)
        XCTAssertFalse(try String(contentsOfFile: replaced + "/run_config.json", encoding: .utf8).contains("sample_rate"))

        let recall = try json(try run(["synthetic", "recall", "--steps", "4", "--eval-episodes", "8", "--eval-every", "2",
                                       "--layers", "1", "--d-model", "16", "--batch", "4", "--flows", "vanilla,myopic",
                                       "--game", "consequence", "--consequence-horizon", "2",
                                       "--out", dir.appendingPathComponent("recall").path, "--json"]))
        let settings = try XCTUnwrap(recall["settings"] as? [String: Any])
        XCTAssertEqual((settings["game"] as? [String: Any])?["game"] as? String, "consequence")

        let gap = try run(["gap", "--data", data, "--out", dir.appendingPathComponent("gap").path, "--seeds", "1",
                           "--game", "multi-token", "--json"] + shape)
        XCTAssertEqual(gap.status, 0, gap.stderr)
        let gapConfig = try String(contentsOfFile: dir.appendingPathComponent("gap/myopic-seed1/run_config.json").path, encoding: .utf8)
        XCTAssertTrue(gapConfig.contains("\"game\" : \"multi-token\""), gapConfig)
    }

    /// `myopia upstream` reads the game and flow the run recorded, or the flags, and prints the
    /// issue's JSON; `--out` keeps upstream.json in the run folder.
    func testUpstreamReadsTheRunsGameAndPrintsTheTable() throws {
        let (dir, data) = try corpus()
        let out = dir.appendingPathComponent("ss").path
        XCTAssertEqual(try run(["train", "--data", data, "--out", out, "--quiet", "--game", "scheduled-sampling",
                                "--sample-rate", "0.5"] + shape).status, 0)
        let measured = try json(try run(["upstream", "--model", out, "--data", data, "--seq-len", "16", "--windows", "4",
                                         "--max-offset", "3", "--draws", "2", "--json", "--out", out]))
        XCTAssertEqual(measured["game"] as? String, "scheduled-sampling")
        XCTAssertEqual(measured["flow"] as? String, "vanilla")
        let cells = try XCTUnwrap(measured["cells"] as? [[String: Any]])
        XCTAssertEqual(cells.count, 3 * 4 + 4 + 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/upstream.json"))
        let flagged = try json(try run(["upstream", "--model", out, "--data", data, "--seq-len", "16", "--windows", "4",
                                        "--max-offset", "3", "--game", "teacher-forced", "--flow", "myopic", "--json"]))
        XCTAssertEqual(flagged["game"] as? String, "teacher-forced")
        let outputs = try XCTUnwrap(flagged["cells"] as? [[String: Any]]).filter { $0["variable"] as? String == "outputs" }
        XCTAssertTrue(outputs.allSatisfy { $0["upstream"] as? Double == 0 && $0["optimised"] as? Double == 0 })
        let text = try run(["upstream", "--model", out, "--data", data, "--seq-len", "16", "--windows", "4", "--quiet"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("outputs"), text.stdout)
        XCTAssertTrue(text.stdout.split(separator: "\n").allSatisfy { $0.count <= 80 }, text.stdout)
    }

    func testBadCombinationsAreRefusedInOneLine() throws {
        let (dir, data) = try corpus()
        let out = dir.appendingPathComponent("bad").path
        for (flags, says) in [(["--sample-rate", "0.3"], "sample_rate"),
                              (["--game", "scheduled-sampling", "--prediction-heads", "2"], "prediction_heads"),
                              (["--game", "reinforce"], "game"),
                              (["--game", "consequence", "--consequence-horizon", "16"], "consequence_horizon"),
                              (["--game", "multi-token", "--prediction-heads", "0"], "prediction_heads")] {
            let r = try run(["train", "--data", data, "--out", out] + shape + flags)
            XCTAssertNotEqual(r.status, 0, "\(flags)")
            XCTAssertTrue(r.stderr.contains(says), "\(flags): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(flags): \(r.stderr)")
        }
        let sine = try run(["synthetic", "sine", "--game", "scheduled-sampling", "--steps", "1"])
        XCTAssertNotEqual(sine.status, 0)
        XCTAssertTrue(sine.stderr.contains("teacher-forced"), sine.stderr)
    }
}
