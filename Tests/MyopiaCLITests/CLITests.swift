import Foundation
import XCTest
import MyopiaTestSupport

/// Runs the built `myopia` executable and checks what a user sees.
final class CLITests: CLITestCase {
    func testHelpForEverySubcommand() throws {
        for sub in ["demo", "train", "eval", "generate", "fetch", "bench"] {
            let r = try run([sub, "--help"])
            XCTAssertEqual(r.status, 0, sub)
            XCTAssertTrue(r.stdout.contains("USAGE"), sub)
            XCTAssertTrue(r.stdout.contains("Example"), "\(sub) help has no worked example")
        }
    }

    /// train → eval → generate on a small text file, through the command line.
    func testTrainEvalGenerate() throws {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 60).utf8).write(to: corpus)
        let run = dir.appendingPathComponent("run").path
        let train = try self.run(["train", "--data", corpus.path, "--out", run, "--layers", "1", "--heads", "2",
                                  "--d-model", "16", "--seq-len", "16", "--batch", "4", "--steps", "20",
                                  "--warmup", "2", "--lr", "0.01", "--log-every", "5", "--eval-every", "10", "--json"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let metrics = try JSONSerialization.jsonObject(with: Data(train.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(metrics?["step"] as? Int, 20)
        let lines = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 4)

        let eval = try self.run(["eval", "--checkpoint", run, "--data", corpus.path, "--seq-len", "16", "--split", "all", "--json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let result = try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any]
        let bytes = 60 * 45
        XCTAssertEqual(result?["tokens"] as? Int, bytes / 17 * 16)
        let loss = try XCTUnwrap(result?["loss"] as? Double)
        XCTAssertLessThan(loss, Foundation.log(256.0))

        let gen = try self.run(["generate", "--checkpoint", run, "--prompt", "the ", "--max-tokens", "10", "--greedy"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        XCTAssertTrue(gen.stdout.hasPrefix("the "))
        XCTAssertEqual(gen.stdout.utf8.count, 4 + 10 + 1)
    }

    /// A Llama-family model end to end: train (GQA), resume, eval, the horizon, and a gap run.
    func testLlamaFamilyTrainEvalHorizonGap() throws {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 60).utf8).write(to: corpus)
        let run = dir.appendingPathComponent("run").path
        let shape = ["--family", "llama", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--d-model", "16",
                     "--seq-len", "16", "--batch", "4", "--warmup", "2", "--lr", "0.01"]
        let train = try self.run(["train", "--data", corpus.path, "--out", run, "--steps", "10", "--quiet"] + shape)
        XCTAssertEqual(train.status, 0, train.stderr)
        let config = try String(contentsOfFile: run + "/checkpoint-10/config.json", encoding: .utf8)
        XCTAssertTrue(config.contains("\"model_type\" : \"llama\""), config)
        XCTAssertTrue(config.contains("\"num_key_value_heads\" : 2"), config)
        let resumed = try self.run(["train", "--data", corpus.path, "--out", run, "--steps", "20", "--resume", "--json"] + shape)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)

        let eval = try self.run(["eval", "--model", run, "--data", corpus.path, "--seq-len", "16", "--json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let loss = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any])?["loss"] as? Double)
        XCTAssertLessThan(loss, Foundation.log(256.0))

        let horizon = try self.run(["horizon", "--model", run, "--data", corpus.path, "--seq-len", "16", "--sequences", "2",
                                    "--max-offset", "4", "--flow", "myopic", "--json"])
        XCTAssertEqual(horizon.status, 0, horizon.stderr)

        let gap = try self.run(["gap", "--data", corpus.path, "--out", dir.appendingPathComponent("gap").path, "--seeds", "1",
                                "--steps", "4", "--json"] + shape)
        XCTAssertEqual(gap.status, 0, gap.stderr)
        XCTAssertTrue(gap.stdout.contains("myopic"), gap.stdout)

        let gqaOnGPT2 = try self.run(["train", "--data", corpus.path, "--out", run + "2", "--kv-heads", "2", "--steps", "1"])
        XCTAssertNotEqual(gqaOnGPT2.status, 0)
        XCTAssertTrue(gqaOnGPT2.stderr.contains("kv_heads"), gqaOnGPT2.stderr)
    }

    func testBadInputGetsOneClearLine() throws {
        let dir = try temporaryDirectory()
        // Heads that do not divide d_model are rejected before any work.
        let bad = try run(["train", "--data", "/nonexistent.txt", "--out", dir.path, "--heads", "3", "--d-model", "32"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("heads"), bad.stderr)
        // A missing file names the file.
        let missing = try run(["train", "--data", "/nonexistent.txt", "--out", dir.path])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/nonexistent.txt"), missing.stderr)
        // A checkpoint folder with a broken config names the file and the field.
        let ckpt = dir.appendingPathComponent("ckpt")
        try FileManager.default.createDirectory(at: ckpt, withIntermediateDirectories: true)
        try Data(#"{"model_type":"gpt2","vocab_size":256,"n_positions":8,"n_embd":16,"n_layer":1}"#.utf8)
            .write(to: ckpt.appendingPathComponent("config.json"))
        let eval = try run(["eval", "--checkpoint", ckpt.path, "--data", "/etc/hostname", "--seq-len", "4"])
        XCTAssertNotEqual(eval.status, 0)
        XCTAssertTrue(eval.stderr.contains("config.json") && eval.stderr.contains("n_head"), eval.stderr)
        XCTAssertEqual(eval.stderr.split(separator: "\n").count, 1, eval.stderr)
        // A continuous-head (sine) checkpoint is not a language model: one line saying so.
        let sine = dir.appendingPathComponent("sine")
        try FileManager.default.createDirectory(at: sine, withIntermediateDirectories: true)
        try Data(#"{"model_type":"gpt2","vocab_size":1,"n_positions":8,"n_embd":16,"n_layer":1,"n_head":2,"myopia_input_features":2,"myopia_outputs":1}"#.utf8)
            .write(to: sine.appendingPathComponent("config.json"))
        let cont = try run(["eval", "--checkpoint", sine.path, "--data", "/etc/hostname", "--seq-len", "4"])
        XCTAssertNotEqual(cont.status, 0)
        XCTAssertTrue(cont.stderr.contains("continuous heads"), cont.stderr)
        // Out-of-range flags are refused by the parser.
        let neg = try run(["generate", "--checkpoint", ckpt.path, "--prompt", "x", "--top-p", "2"])
        XCTAssertNotEqual(neg.status, 0)
        XCTAssertTrue(neg.stderr.contains("top-p"), neg.stderr)
    }
}
