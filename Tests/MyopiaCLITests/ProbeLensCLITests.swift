import Foundation
import XCTest
import MyopiaTestSupport

/// `myopia probe` and `myopia lens` through the command line: the lens's last layer at offset 0 is
/// `myopia eval`'s loss, the probe's JSON carries its table and both baselines, a sine-task
/// checkpoint gets regression probes, and bad flags get one line.
final class ProbeLensCLITests: CLITestCase {
    var model: String { fixtures.appendingPathComponent("gpt2_tiny/hf").path }
    var text = ""

    /// ~14 KB of seeded word salad, written once per test: enough windows for a probe.
    override func setUpWithError() throws {
        let dir = try temporaryDirectory()
        let words = ["the", "king", "is", "dead", "long", "live", "queen", "of", "night", "and", "day", "my", "lord",
                     "shall", "we", "go", "to", "war", "or", "peace", "now"]
        var state: UInt64 = 12345
        var parts: [String] = []
        for _ in 0..<3000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            parts.append(words[Int(state >> 33) % words.count])
        }
        let url = dir.appendingPathComponent("corpus.txt")
        try Data(parts.joined(separator: " ").utf8).write(to: url)
        text = url.path
    }

    func testLensLastLayerAtOffsetZeroIsTheEvalLoss() throws {
        let eval = try json(run(["eval", "--model", model, "--data", text, "--seq-len", "32", "--max-windows", "20", "--json"]))
        let out = try json(run(["lens", "--model", model, "--data", text, "--seq-len", "32", "--max-windows", "20",
                                "--offsets", "0..2", "--json"]))
        let lens = try XCTUnwrap(out["lens"] as? [String: Any])
        XCTAssertEqual(lens["layers"] as? [Int], [0, 1, 2, 3])
        XCTAssertEqual(lens["offsets"] as? [Int], [0, 1, 2])
        let loss = try XCTUnwrap(lens["loss"] as? [[Double]])
        let evalLoss = try XCTUnwrap(eval["loss"] as? Double)
        XCTAssertEqual(loss[3][0], evalLoss, accuracy: 1e-6 * evalLoss)
        XCTAssertEqual((lens["counts"] as? [Int])?.first, eval["tokens"] as? Int)
        XCTAssertEqual((lens["accuracy"] as? [[Double]])?.count, 4)

        let table = try run(["lens", "--model", model, "--data", text, "--seq-len", "32", "--max-windows", "4", "--layers", "0,3"])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("3 (final)"), table.stdout)
        XCTAssertTrue(table.stdout.contains("unigram"), table.stdout)
    }

    func testProbeJSONHasTheTableAndBothBaselines() throws {
        let out = try json(run(["probe", "--model", model, "--data", text, "--seq-len", "32", "--layers", "0,3",
                                "--offsets", "0,1", "--positions", "1600", "--top", "10", "--epochs", "1", "--json"]))
        let probe = try XCTUnwrap(out["probe"] as? [String: Any])
        XCTAssertEqual(probe["layers"] as? [Int], [0, 3])
        XCTAssertEqual(probe["offsets"] as? [Int], [0, 1])
        XCTAssertEqual(probe["classes"] as? Int, 11, "the 10 most frequent bytes and \"other\"")
        XCTAssertLessThan(try XCTUnwrap(probe["coverage"] as? Double), 1)
        for key in ["loss", "accuracy", "train_loss"] {
            let rows = try XCTUnwrap(probe[key] as? [[Double]], key)
            XCTAssertEqual(rows.map(\.count), [2, 2], key)
            XCTAssertTrue(rows.joined().allSatisfy(\.isFinite), key)
        }
        for key in ["unigram_loss", "unigram_accuracy", "current_token_loss", "current_token_accuracy"] {
            XCTAssertEqual((probe[key] as? [Double])?.count, 2, key)
        }
        XCTAssertEqual((probe["train_positions"] as? Int).map { $0 + (probe["held_out_positions"] as? Int ?? 0) }, 1600)
        XCTAssertEqual(out["model_layers"] as? Int, 3)

        let table = try run(["probe", "--model", model, "--data", text, "--seq-len", "32", "--layers", "3",
                             "--offsets", "0", "--positions", "640", "--epochs", "1"])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("current token"), table.stdout)
        XCTAssertTrue(table.stdout.contains("3 (final)"), table.stdout)
    }

    func testSineCheckpointGetsRegressionProbes() throws {
        let dir = try temporaryDirectory()
        let train = try run(["synthetic", "sine", "--steps", "3", "--layers", "1", "--heads", "2", "--d-model", "16",
                             "--seq-len", "16", "--batch", "4", "--val-sequences", "8", "--warmup", "1",
                             "--out", dir.path, "--quiet"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let out = try json(run(["probe", "--checkpoint", dir.path, "--seq-len", "16", "--lags", "0..2", "--sequences", "64", "--json"]))
        let probe = try XCTUnwrap(out["probe"] as? [String: Any])
        XCTAssertEqual(probe["layers"] as? [Int], [0, 1])
        XCTAssertEqual(probe["lags"] as? [Int], [0, 1, 2])
        let r2 = try XCTUnwrap(probe["r2"] as? [[Double]])
        XCTAssertEqual(r2.map(\.count), [3, 3])
        XCTAssertTrue(r2.joined().allSatisfy { $0.isFinite && $0 <= 1 })
        XCTAssertEqual(probe["train_sequences"] as? Int, 51)
    }

    func testHelpAndBadFlags() throws {
        for sub in ["probe", "lens"] {
            let help = try run([sub, "--help"])
            XCTAssertEqual(help.status, 0)
            XCTAssertTrue(help.stdout.contains("Example"), sub)
        }
        for (arguments, message) in [(["lens", "--model", model, "--data", text, "--seq-len", "32", "--layers", "9"], "--layers"),
                                     (["probe", "--model", model, "--data", text, "--seq-len", "32", "--offsets", "3..1"], "--offsets"),
                                     (["probe", "--model", model, "--data", text, "--seq-len", "32", "--held-out", "1"], "--held-out"),
                                     (["probe", "--model", model, "--seq-len", "32"], "--data")] {
            let r = try run(arguments)
            XCTAssertNotEqual(r.status, 0, arguments.joined(separator: " "))
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
            XCTAssertEqual(r.stdout, "")
        }
    }
}
