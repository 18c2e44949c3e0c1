import Foundation
import XCTest
import MyopiaTestSupport

/// The command line as a whole: every subcommand's help has a worked example and the common flags;
/// `--config FILE.json` stands for flags (the command line winning, unknown keys refused);
/// progress is plain lines in a pipe and nothing with --quiet.
final class TerminalCLITests: CLITestCase {
    /// Every leaf command as swift-argument-parser describes it: (path, discussion, long flag names).
    func commands() throws -> [(path: String, discussion: String, flags: Set<String>)] {
        let dump = try run(["--experimental-dump-help"])
        XCTAssertEqual(dump.status, 0, dump.stderr)
        let root = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])?["command"] as? [String: Any])
        var out: [(String, String, Set<String>)] = []
        func walk(_ command: [String: Any], _ path: [String]) {
            let subcommands = (command["subcommands"] as? [[String: Any]] ?? []).filter { $0["commandName"] as? String != "help" }
            if subcommands.isEmpty {
                let names = (command["arguments"] as? [[String: Any]] ?? []).flatMap { $0["names"] as? [[String: Any]] ?? [] }
                    .filter { $0["kind"] as? String == "long" }.compactMap { $0["name"] as? String }
                out.append((path.joined(separator: " "), command["discussion"] as? String ?? "", Set(names)))
            }
            for sub in subcommands { walk(sub, path + [sub["commandName"] as? String ?? "?"]) }
        }
        walk(root, [])
        return out
    }

    func testEveryCommandHasAWorkedExampleAndTheCommonFlags() throws {
        let all = try commands()
        XCTAssertEqual(Set(all.map(\.path)), ["demo", "reproduce", "train", "eval", "gradients", "horizon", "dynamics", "upstream", "gap", "games", "bonus", "synthetic sine",
                                              "synthetic recall", "synthetic table-sum", "generate", "loops", "tokenize", "probe", "lens",
                                              "fetch", "bench", "runs", "report", "convert"])
        let reportsNumbers: Set = ["train", "eval", "gradients", "horizon", "dynamics", "gap", "games", "bonus", "synthetic sine", "synthetic recall",
                                   "synthetic table-sum", "generate", "loops", "tokenize", "probe", "lens", "bench", "runs", "demo", "reproduce"]
        let showsProgress: Set = ["demo", "reproduce", "train", "eval", "gradients", "horizon", "dynamics", "gap", "games", "bonus", "synthetic sine", "synthetic recall",
                                  "synthetic table-sum", "generate", "loops", "tokenize", "probe", "lens", "fetch", "bench", "convert"]
        for c in all {
            let example = c.discussion.range(of: "Example")
            XCTAssertNotNil(example, "\(c.path): no worked example in --help")
            if let example {
                XCTAssertTrue(c.discussion[example.upperBound...].contains("myopia \(c.path)"), "\(c.path): the example does not run it")
            }
            if reportsNumbers.contains(c.path) { XCTAssertTrue(c.flags.contains("json"), "\(c.path) has no --json") }
            if showsProgress.contains(c.path) { XCTAssertTrue(c.flags.contains("quiet"), "\(c.path) has no --quiet") }
            XCTAssertTrue(c.flags.contains("config"), "\(c.path) has no --config")
        }
        let help = try run(["lens", "--help"])
        XCTAssertTrue(help.stdout.contains("--config <config>") && help.stdout.contains("--out <out>"), help.stdout)
    }

    func testConfigFileKeysAreFlagsAndTheCommandLineWins() throws {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "a config file stands for flags. ", count: 40).utf8).write(to: corpus)
        let model = dir.appendingPathComponent("run").path
        let train = try run(["train", "--data", corpus.path, "--out", model, "--layers", "1", "--heads", "2", "--d-model", "16",
                                   "--seq-len", "16", "--batch", "4", "--steps", "4", "--log-every", "2", "--quiet"])
        XCTAssertEqual(train.status, 0, train.stderr)

        let config = dir.appendingPathComponent("eval.json")
        try Data(#"{"model": "\#(model)", "data": "\#(corpus.path)", "seq_len": 16, "max-windows": 3, "json": true, "quiet": false}"#.utf8)
            .write(to: config)
        func tokens(_ r: CLIResult) throws -> Int? { try json(r)["tokens"] as? Int }
        XCTAssertEqual(try tokens(run(["eval", "--config", config.path])), 3 * 16)
        XCTAssertEqual(try tokens(run(["eval", "--config", config.path, "--seq-len", "8"])), 3 * 8, "the command line wins")
        XCTAssertEqual(try tokens(run(["eval", "--config=\(config.path)", "--max-windows", "2", "--json"])), 2 * 16)

        for (json, field, why) in [(#"{"sequence_length": 8}"#, "sequence_length", "no flag --sequence-length"),
                                   (#"{"json": "yes"}"#, "json", "true or false"),
                                   (#"{"seq_len": [8, 16]}"#, "seq_len", "one value"),
                                   (#"[1, 2]"#, "(top level)", "a JSON object")] {
            try Data(json.utf8).write(to: config)
            let r = try run(["eval", "--config", config.path])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.hasPrefix("error: \(config.path): \(field): "), r.stderr)
            XCTAssertTrue(r.stderr.contains(why), r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }

        // train keeps its own --config (a training configuration, keys as run_config.json's).
        let trainConfig = dir.appendingPathComponent("train.json")
        try Data(#"{"layers": 1, "heads": 2, "d_model": 16, "seq_len": 16, "batch": 4, "steps": 2, "log_every": 1}"#.utf8).write(to: trainConfig)
        let trained = try run(["train", "--config", trainConfig.path, "--data", corpus.path, "--out", dir.appendingPathComponent("t").path, "--json"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        XCTAssertTrue(trained.stdout.contains("\"step\":2"), trained.stdout)
    }

    /// In a pipe, training progress is plain lines, one per logged step; --quiet leaves stderr empty.
    func testProgressIsPlainLinesInAPipeAndQuietIsQuiet() throws {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "progress goes to stderr. ", count: 40).utf8).write(to: corpus)
        let args = ["train", "--data", corpus.path, "--layers", "1", "--heads", "2", "--d-model", "16", "--seq-len", "16",
                    "--batch", "4", "--steps", "6", "--log-every", "2"]
        let loud = try run(args + ["--out", dir.appendingPathComponent("a").path])
        XCTAssertEqual(loud.status, 0, loud.stderr)
        let lines = loud.stderr.split(separator: "\n").filter { $0.hasPrefix("[") }
        XCTAssertEqual(lines.map { String($0.prefix(5)) }, ["[2/6]", "[4/6]", "[6/6]"], loud.stderr)
        XCTAssertTrue(lines.allSatisfy { $0.contains("ETA ") && $0.count <= 80 }, loud.stderr)
        XCTAssertFalse(loud.stderr.contains("\u{1B}["), "no terminal escapes in a pipe")
        let quiet = try run(args + ["--out", dir.appendingPathComponent("b").path, "--quiet"])
        XCTAssertEqual(quiet.status, 0, quiet.stderr)
        XCTAssertEqual(quiet.stderr, "")
        XCTAssertTrue(quiet.stdout.hasPrefix("step 6: train loss"), quiet.stdout)
        let horizon = try run(["horizon", "--model", dir.appendingPathComponent("b").path, "--data", corpus.path,
                                     "--seq-len", "16", "--sequences", "2", "--quiet"])
        XCTAssertEqual(horizon.status, 0, horizon.stderr)
        XCTAssertEqual(horizon.stderr, "")
    }
}
