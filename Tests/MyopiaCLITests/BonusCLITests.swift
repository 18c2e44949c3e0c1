import Foundation
import XCTest
import MyopiaTestSupport

/// The local-myopic flow through the command line: train --reference, eval --flow local-myopic,
/// bonus, and the commands that refuse it.
final class BonusCLITests: CLITestCase {
    func testLocalMyopicTrainEvalBonus() throws {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 60).utf8).write(to: corpus)
        let reference = dir.appendingPathComponent("ref").path
        let train = try run(["train", "--data", corpus.path, "--out", reference, "--family", "llama", "--layers", "2",
                             "--heads", "4", "--kv-heads", "2", "--d-model", "16", "--seq-len", "16", "--batch", "4",
                             "--steps", "10", "--warmup", "2", "--lr", "0.01", "--quiet"])
        XCTAssertEqual(train.status, 0, train.stderr)

        // Zero steps: local-myopic evaluation of the reference against itself is its own loss.
        let common = ["--data", corpus.path, "--seq-len", "16", "--json"]
        let own = try json(try run(["eval", "--model", reference] + common))
        let itself = try json(try run(["eval", "--model", reference, "--flow", "local-myopic", "--reference", reference] + common))
        XCTAssertEqual(itself["loss"] as? Double, own["loss"] as? Double)

        // Fine-tune local-myopic from it (the shape is the reference's), then evaluate it both ways.
        let local = dir.appendingPathComponent("local").path
        let tuned = try run(["train", "--data", corpus.path, "--out", local, "--flow", "local-myopic", "--reference", reference,
                             "--steps", "4", "--warmup", "1", "--lr", "0.003", "--batch", "4", "--json"])
        XCTAssertEqual(tuned.status, 0, tuned.stderr)
        let config = try String(contentsOfFile: local + "/checkpoint-4/config.json", encoding: .utf8)
        XCTAssertTrue(config.contains("\"num_key_value_heads\" : 2"), config)
        let lm = try json(try run(["eval", "--model", local, "--flow", "local-myopic", "--reference", reference] + common))
        let plainRun = try run(["eval", "--model", local] + common)
        let plain = try json(plainRun)
        XCTAssertNotEqual(lm["loss"] as? Double, plain["loss"] as? Double)
        // An ordinary evaluation of a local-myopic run says so; the recorded reference is the default.
        XCTAssertTrue(plainRun.stderr.contains("warning:") && plainRun.stderr.contains("--flow local-myopic --reference"), plainRun.stderr)
        let recorded = try json(try run(["eval", "--model", local, "--flow", "local-myopic"] + common))
        XCTAssertEqual(recorded["loss"] as? Double, lm["loss"] as? Double)

        // --resume finds the recorded reference: four more steps, no --reference.
        let resumed = try run(["train", "--data", corpus.path, "--out", local, "--flow", "local-myopic", "--steps", "8",
                               "--warmup", "1", "--lr", "0.003", "--batch", "4", "--resume", "--quiet"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: local + "/checkpoint-8/model.safetensors"))

        // Without a reference, or where it has no meaning, a clear refusal.
        let noReference = try run(["train", "--data", corpus.path, "--out", dir.appendingPathComponent("x").path,
                                   "--flow", "local-myopic", "--steps", "2"])
        XCTAssertNotEqual(noReference.status, 0)
        XCTAssertTrue(noReference.stderr.contains("reference"), noReference.stderr)
        let horizon = try run(["horizon", "--model", reference, "--data", corpus.path, "--seq-len", "16", "--flow", "local-myopic"])
        XCTAssertNotEqual(horizon.status, 0)
        XCTAssertTrue(horizon.stderr.contains("local-myopic"), horizon.stderr)
        let shape = try run(["bonus", "--reference", reference, "--data", corpus.path, "--layers", "3", "--steps", "2"])
        XCTAssertNotEqual(shape.status, 0)
        XCTAssertTrue(shape.stderr.contains("layers"), shape.stderr)

        // The bonus: one seed, a few steps; bonus.json and the run folders.
        let out = dir.appendingPathComponent("bonus").path
        let settings = ["--reference", reference, "--data", corpus.path, "--seeds", "1", "--steps", "3", "--warmup", "1",
                        "--lr", "0.003", "--batch", "4", "--out", out]
        let bonus = try run(["bonus", "--json"] + settings)
        XCTAssertEqual(bonus.status, 0, bonus.stderr)
        let summary = try json(bonus)
        let score = try XCTUnwrap(summary["reference"] as? [String: Any])
        XCTAssertEqual(score["val_loss"] as? Double, score["local_myopic_val_loss"] as? Double)
        XCTAssertNotNil((summary["bonus"] as? [String: Any])?["val_loss"])
        for run in ["vanilla-seed1", "local-myopic-seed1"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/\(run)/eval.json"), run)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/bonus.json"))
        let table = try run(["bonus", "--resume", "--quiet"] + settings)   // finished runs are only re-scored
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("bonus (vanilla − local-myopic)"), table.stdout)
    }
}
