import Foundation
import XCTest
import MyopiaTestSupport

/// Honest labels and defaults: the horizon can be measured under the model's own flow, an analysis of a trained run takes the
/// run's seq_len, and `eval` scores the validation split of the text the run trained on (and says so).
final class LabelsCLITests: CLITestCase {
    func corpus(in dir: URL) throws -> URL {
        let url = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "labels that say what was measured, and on which split. ", count: 50).utf8).write(to: url)
        return url
    }

    func train(_ dir: URL, _ name: String, flow: String) throws -> URL {
        let run = dir.appendingPathComponent(name)
        let r = try self.run(["train", "--data", try corpus(in: dir).path, "--out", run.path, "--layers", "2", "--heads", "2",
                              "--d-model", "16", "--seq-len", "12", "--batch", "4", "--steps", "4", "--flow", flow, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return run
    }

    /// The horizon of the true gradient by default; under `--flow own` a myopic model's own
    /// training signal, which lies at offset 0 alone (every layer's mean offset is 0).
    func testHorizonUnderTheModelsOwnFlow() throws {
        let dir = try temporaryDirectory()
        let myopic = try train(dir, "myopic", flow: "myopic")
        let data = dir.appendingPathComponent("corpus.txt").path
        let own = try json(run(["horizon", "--model", myopic.path, "--data", data, "--sequences", "2", "--flow", "own", "--json"]))
        XCTAssertEqual(own["flow"] as? String, "myopic")
        XCTAssertEqual(own["seq_len"] as? Int, 12, "the run's seq_len")
        let ownOffsets = try XCTUnwrap(own["mean_offset"] as? [Double])
        XCTAssertEqual(ownOffsets.count, 3)
        for m in ownOffsets { XCTAssertEqual(m, 0, accuracy: 1e-12) }
        let trueGradient = try json(run(["horizon", "--model", myopic.path, "--data", data, "--sequences", "2", "--json"]))
        XCTAssertEqual(trueGradient["flow"] as? String, "vanilla")
        let offsets = try XCTUnwrap(trueGradient["mean_offset"] as? [Double])
        XCTAssertGreaterThan(offsets[0], 0, "the true gradient reaches layer 0 from later tokens")

        // A model from elsewhere has no own flow, and no seq_len to default to.
        let bare = dir.appendingPathComponent("bare")
        try FileManager.default.createDirectory(at: bare, withIntermediateDirectories: true)
        for file in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: myopic.appendingPathComponent("checkpoint-4/\(file)"), to: bare.appendingPathComponent(file))
        }
        let noFlow = try run(["horizon", "--model", bare.path, "--data", data, "--seq-len", "12", "--flow", "own"])
        XCTAssertNotEqual(noFlow.status, 0)
        XCTAssertTrue(noFlow.stderr.contains("--flow own") && noFlow.stderr.contains("records no training flow"), noFlow.stderr)
        for command in ["eval", "horizon", "lens", "probe"] {
            let r = try run([command, "--model", bare.path, "--data", data])
            XCTAssertNotEqual(r.status, 0, command)
            XCTAssertTrue(r.stderr.hasPrefix("error: --seq-len is needed"), "\(command): \(r.stderr)")
        }
    }

    /// eval, lens and probe of a trained run take its seq_len; eval scores the validation split of
    /// the text the run trained on and says which split it scored.
    func testAnalysesTakeTheRunsSeqLenAndEvalScoresTheValidationSplit() throws {
        let dir = try temporaryDirectory()
        let vanilla = try train(dir, "vanilla", flow: "vanilla")
        let data = dir.appendingPathComponent("corpus.txt")
        let bytes = try Data(contentsOf: data).count
        let validation = Int((Double(bytes) * 0.1).rounded())
        let eval = try json(run(["eval", "--model", vanilla.path, "--data", data.path, "--json"]))
        XCTAssertEqual(eval["seq_len"] as? Int, 12)
        XCTAssertEqual(eval["split"] as? String, "validation")
        XCTAssertEqual(eval["tokens"] as? Int, validation / 13 * 12)
        let all = try json(run(["eval", "--model", vanilla.path, "--data", data.path, "--split", "all", "--json"]))
        XCTAssertEqual(all["split"] as? String, "all")
        XCTAssertEqual(all["tokens"] as? Int, bytes / 13 * 12)
        let text = try run(["eval", "--model", vanilla.path, "--data", data.path])
        XCTAssertTrue(text.stdout.contains("(validation split: the last 10% of the tokens)"), text.stdout)
        XCTAssertTrue(text.stderr.contains("--seq-len 12: the seq_len"), text.stderr)

        // Another text is scored whole.
        let other = dir.appendingPathComponent("other.txt")
        try Data(String(repeating: "another text entirely. ", count: 30).utf8).write(to: other)
        let whole = try json(run(["eval", "--model", vanilla.path, "--data", other.path, "--json"]))
        XCTAssertEqual(whole["split"] as? String, "all")

        for command in [["lens", "--offsets", "0..1"], ["probe", "--offsets", "0..1", "--positions", "200"]] {
            let r = try run(command + ["--model", vanilla.path, "--data", data.path, "--json"])
            XCTAssertEqual(r.status, 0, "\(command): \(r.stderr)")
            XCTAssertEqual(try json(r)["seq_len"] as? Int, 12, "\(command)")
        }
    }
}
