import Foundation
import XCTest
import MyopiaTestSupport

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
}
