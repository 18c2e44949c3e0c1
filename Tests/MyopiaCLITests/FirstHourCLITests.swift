import Foundation
import XCTest
import MyopiaTestSupport

/// What a new user meets in the first hour at an 80-column terminal: progress that fits the width,
/// one `error: …` line per mistake (with the usage of the command it was for, never the tool's
/// generic one), a model named by its config.json or by a folder of runs, plain messages for a
/// wrong setting, --version, defaults in `train --help`, readable JSON paths, and a warning for a
/// binary training file.
final class FirstHourCLITests: CLITestCase {
    func corpus(in dir: URL) throws -> URL {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "a new user trains a small model first. ", count: 60).utf8).write(to: url)
        return url
    }

    func train(_ dir: URL, _ name: String, steps: Int = 4, extra: [String] = []) throws -> (URL, CLIResult) {
        let run = dir.appendingPathComponent(name)
        let r = try self.run(["train", "--data", try corpus(in: dir).path, "--out", run.path, "--layers", "1", "--heads", "2",
                              "--d-model", "16", "--seq-len", "16", "--batch", "4", "--steps", "\(steps)", "--log-every", "1"] + extra)
        return (run, r)
    }

    /// Progress lines fit the terminal: 80 columns when nothing says otherwise, $COLUMNS when set.
    func testProgressLinesFitTheTerminalWidth() throws {
        let dir = try temporaryDirectory()
        let (_, r) = try train(dir, "a", steps: 6, extra: ["--eval-every", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let progress = r.stderr.split(separator: "\n").filter { $0.hasPrefix("[") }
        XCTAssertEqual(progress.count, 6, r.stderr)
        for line in progress { XCTAssertLessThanOrEqual(line.count, 80, String(line)) }
        XCTAssertTrue(progress.allSatisfy { $0.contains("ETA ") && $0.contains("loss ") }, r.stderr)

        let corpus = try corpus(in: dir)
        let narrow = try run(["train", "--data", corpus.path, "--out", dir.appendingPathComponent("b").path, "--layers", "1",
                              "--heads", "2", "--d-model", "16", "--seq-len", "16", "--batch", "4", "--steps", "3", "--log-every", "1"],
                             environment: ["COLUMNS": "50"])
        XCTAssertEqual(narrow.status, 0, narrow.stderr)
        let lines = narrow.stderr.split(separator: "\n").filter { $0.hasPrefix("[") }
        XCTAssertEqual(lines.count, 3, narrow.stderr)
        for line in lines {
            XCTAssertLessThanOrEqual(line.count, 50, String(line))
            XCTAssertTrue(line.hasSuffix("s"), "the ETA stays: \(line)")
        }
    }

    /// A command-line mistake: one `error:` line and the usage of that command. An error while the
    /// command runs: `error:` and no usage at all.
    func testErrorsSayErrorOnceWithTheirCommandsUsage() throws {
        let missing = try run(["eval", "--model", "nowhere"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.hasPrefix("error: "), missing.stderr)
        XCTAssertTrue(missing.stderr.contains("myopia eval"), missing.stderr)
        XCTAssertFalse(missing.stderr.contains("<subcommand>"), missing.stderr)

        let dir = try temporaryDirectory()
        let (run, trained) = try train(dir, "run")
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let noData = try self.run(["horizon", "--model", run.path, "--seq-len", "8"])
        XCTAssertNotEqual(noData.status, 0)
        XCTAssertEqual(noData.stderr, "error: --data is needed for a language model\n")
        let badFlow = try self.run(["horizon", "--model", run.path, "--seq-len", "8", "--data", try corpus(in: dir).path, "--flow", "sideways"])
        XCTAssertNotEqual(badFlow.status, 0)
        XCTAssertTrue(badFlow.stderr.hasPrefix("error: "), badFlow.stderr)
        XCTAssertFalse(badFlow.stderr.contains("Usage: myopia <subcommand>"), badFlow.stderr)
        for r in [missing, noData, badFlow] { XCTAssertFalse(r.stderr.contains("Error:"), r.stderr) }
    }

    /// `--model …/checkpoint-N/config.json` reads that checkpoint; `--model` on a folder of runs
    /// lists them.
    func testModelByItsConfigFileOrAFolderOfRuns() throws {
        let dir = try temporaryDirectory()
        let runs = dir.appendingPathComponent("runs")
        let (a, ra) = try train(runs, "a")
        XCTAssertEqual(ra.status, 0, ra.stderr)
        let (_, rb) = try train(runs.appendingPathComponent("stage"), "b")
        XCTAssertEqual(rb.status, 0, rb.stderr)
        let config = a.appendingPathComponent("checkpoint-4/config.json")
        let byFile = try json(run(["eval", "--model", config.path, "--data", runs.appendingPathComponent("corpus.txt").path,
                                   "--seq-len", "16", "--json"]))
        XCTAssertEqual(byFile["checkpoint"] as? String, a.appendingPathComponent("checkpoint-4").path)

        let folder = try run(["eval", "--model", runs.path, "--data", runs.appendingPathComponent("corpus.txt").path, "--seq-len", "16"])
        XCTAssertNotEqual(folder.status, 0)
        XCTAssertTrue(folder.stderr.hasPrefix("error: \(runs.path): a folder of runs"), folder.stderr)
        XCTAssertTrue(folder.stderr.contains("inside: a, stage/b"), folder.stderr)
        XCTAssertEqual(folder.stderr.split(separator: "\n").count, 1, folder.stderr)
    }

    /// An unknown key in train's --config: "KEY: unknown setting; known: …".
    func testUnknownTrainingSettingIsNamedPlainly() throws {
        let dir = try temporaryDirectory()
        let config = dir.appendingPathComponent("train.json")
        try Data(#"{"stepz": 10}"#.utf8).write(to: config)
        let r = try run(["train", "--config", config.path, "--out", dir.appendingPathComponent("run").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.hasPrefix("error: \(config.path): stepz: unknown setting; known: "), r.stderr)
        XCTAssertTrue(r.stderr.contains("steps"), r.stderr)
        XCTAssertFalse(r.stderr.contains("unsupported value"), r.stderr)
    }

    /// The `--config` example in every command's help is a key the command has a flag for.
    func testConfigExamplesNameTheCommandsOwnFlags() throws {
        let dump = try run(["--experimental-dump-help"])
        let root = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])?["command"] as? [String: Any])
        var checked = 0
        func walk(_ command: [String: Any], _ path: String) {
            let arguments = command["arguments"] as? [[String: Any]] ?? []
            let longNames = arguments.flatMap { $0["names"] as? [[String: Any]] ?? [] }
                .filter { $0["kind"] as? String == "long" }.compactMap { $0["name"] as? String }
            for argument in arguments {
                let names = (argument["names"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
                guard names.contains("config"), let help = argument["abstract"] as? String,
                      let open = help.range(of: "e.g. {\""), let close = help[open.upperBound...].range(of: "\"") else { continue }
                let key = String(help[open.upperBound..<close.lowerBound]).replacingOccurrences(of: "_", with: "-")
                XCTAssertTrue(longNames.contains(key), "myopia \(path): the --config example names --\(key), which it does not have")
                checked += 1
            }
            for sub in command["subcommands"] as? [[String: Any]] ?? [] {
                walk(sub, path + " " + (sub["commandName"] as? String ?? "?"))
            }
        }
        walk(root, "")
        XCTAssertGreaterThanOrEqual(checked, 15)
    }

    func testVersionDefaultsAndReadableJSON() throws {
        let version = try run(["--version"])
        XCTAssertEqual(version.status, 0, version.stderr)
        XCTAssertTrue(version.stdout.range(of: #"^\d+\.\d+\.\d+\n$"#, options: .regularExpression) != nil, version.stdout)

        let help = try run(["train", "--help"], environment: ["COLUMNS": "80"])
        let flat = help.stdout.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: #" +"#, with: " ", options: .regularExpression)
        for expected in ["Transformer blocks (default 4)", "Residual stream width (default 128)", "Peak learning rate (default 0.001)",
                         "Optimiser steps per run (default 1000)", "(default 500)"] {
            XCTAssertTrue(flat.contains(expected), "train --help lacks \(expected)")
        }

        let dir = try temporaryDirectory()
        let (run, trained) = try train(dir, "run", extra: ["--json"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let eval = try self.run(["eval", "--model", run.path, "--data", dir.appendingPathComponent("corpus.txt").path, "--seq-len", "16", "--json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        XCTAssertFalse(eval.stdout.contains("\\/"), eval.stdout)
        XCTAssertTrue(eval.stdout.contains("\"checkpoint\":\"\(run.path)/checkpoint-4\""), eval.stdout)
        let recorded = try String(contentsOf: run.appendingPathComponent("run_config.json"), encoding: .utf8)
        XCTAssertFalse(recorded.contains("\\/"), recorded)
    }

    /// A binary training file trains, with a warning that shows even under --quiet.
    func testBinaryTrainingFileIsWarnedAbout() throws {
        let dir = try temporaryDirectory()
        var bytes = [UInt8](repeating: 0, count: 4096)
        for i in stride(from: 0, to: bytes.count, by: 3) { bytes[i] = UInt8(truncatingIfNeeded: i * 7 + 1) }
        let binary = dir.appendingPathComponent("model.bin")
        try Data(bytes).write(to: binary)
        let common = ["--layers", "1", "--heads", "2", "--d-model", "16", "--seq-len", "16", "--batch", "4", "--steps", "1", "--quiet"]
        let r = try run(["train", "--data", binary.path, "--out", dir.appendingPathComponent("run").path] + common)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("warning: \(binary.path) looks binary"), r.stderr)

        let text = try corpus(in: dir)
        let clean = try run(["train", "--data", text.path, "--out", dir.appendingPathComponent("clean").path] + common)
        XCTAssertEqual(clean.status, 0, clean.stderr)
        XCTAssertEqual(clean.stderr, "")
    }
}
