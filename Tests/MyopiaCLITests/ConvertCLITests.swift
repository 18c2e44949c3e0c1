import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// `myopia convert` on the GGUF of each architecture (Tests/Fixtures/gguf_families, made by
/// tools/reference/gguf_families_reference.py): the folder it writes gives transformers' logits on
/// the GGUF (≤ 1e-4 relative; bit for bit Myopia's own on the GGUF), its tokenizer.json gives
/// transformers' GGUF tokenizer's ids, and `myopia eval` of the GGUF and of the folder agree.
final class ConvertCLITests: CLITestCase {
    func testConvertedFolderGivesTheGGUFsLogitsTokensAndLoss() throws {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "The quick brown fox jumps over the lazy dog. Hello, world! 12345 numbers.\n", count: 6).utf8).write(to: corpus)
        for arch in GGUFFamilyFixtures.architectures {
            let gguf = fixtures.appendingPathComponent("gguf_families/\(arch)/model.gguf")
            let out = dir.appendingPathComponent(arch)
            let r = try run(["convert", gguf.path, "--out", out.path, "--quiet"])
            XCTAssertEqual(r.status, 0, r.stderr)
            for name in ["config.json", "model.safetensors", "tokenizer.json"] {
                XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path), "\(arch): \(name)")
            }
            let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any])
            XCTAssertEqual(config["model_type"] as? String, arch)
            if arch == "gemma2" {   // Gemma2Config refuses an integer soft-cap
                let text = try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8)
                XCTAssertTrue(text.contains("\"attn_logit_softcapping\" : 2.0,") && text.contains("\"final_logit_softcapping\" : 3.0,"), text)
            }

            // Logits: the folder's equal the GGUF's, and transformers'.
            let ref = try GGUFFamilyFixtures.expected(arch)
            let tokens = try XCTUnwrap(ref.tokens)
            let folder = try Checkpoint.loadModel(from: out)
            let direct = try GGUFModel.load(from: gguf)
            let (folderLogits, folderLoss) = GGUFFamilyFixtures.run(folder, tokens)
            let (ggufLogits, ggufLoss) = GGUFFamilyFixtures.run(direct, tokens)
            XCTAssertEqual(folderLogits, ggufLogits, arch)
            XCTAssertEqual(folderLoss, ggufLoss, arch)
            let transformers = try SafeTensorsFile(contentsOf: GGUFFamilyFixtures.folder(arch).appendingPathComponent("reference.safetensors"))
            XCTAssertLessThanOrEqual(relativeError(folderLogits, try transformers.floats("logits")), GGUFFamilyFixtures.tolerance, arch)

            // Tokenizer ids: the written tokenizer.json against transformers' GGUF tokenizer.
            let tokenizer = try Tokenizers.load(out.appendingPathComponent("tokenizer.json").path)
            for sample in ref.texts {
                XCTAssertEqual(tokenizer.encode(sample.text, addSpecialTokens: false), sample.ids, "\(arch): \(sample.text.debugDescription)")
                XCTAssertEqual(tokenizer.encode(sample.text, addSpecialTokens: true), sample.ids_with_special, "\(arch): \(sample.text.debugDescription)")
            }

            // eval reads the GGUF directly with the folder's loss.
            func loss(_ model: URL) throws -> Double {
                let e = try json(try run(["eval", "--model", model.path, "--data", corpus.path, "--seq-len", "8", "--json", "--quiet"]))
                return try XCTUnwrap(e["loss"] as? Double)
            }
            let ggufEval = try loss(gguf), folderEval = try loss(out)
            XCTAssertEqual(ggufEval, folderEval, accuracy: 1e-6, arch)
            XCTAssertTrue(ggufEval.isFinite && ggufEval > 0, arch)
        }
    }

    func testUnsupportedArchitectureIsOneLineNamingTheFileValueAndSupportedOnes() throws {
        let dir = try temporaryDirectory()
        let r = try run(["convert", fixtures.appendingPathComponent("gguf/tiny.gguf").path, "--out", dir.appendingPathComponent("x").path])
        XCTAssertEqual(r.status, 1)
        let message = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertFalse(message.contains("\n"), message)
        XCTAssertTrue(message.contains("tiny.gguf"), message)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x/model.safetensors").path))
    }

    /// eval refuses, before reading the weights, a model larger than the memory it is given.
    func testEvalRefusesAModelThatDoesNotFit() throws {
        let dir = try temporaryDirectory()
        let corpus = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "the cat sat on the mat. ", count: 20).utf8).write(to: corpus)
        let gguf = fixtures.appendingPathComponent("gguf_families/qwen2/model.gguf")
        let refused = try run(["eval", "--model", gguf.path, "--data", corpus.path, "--seq-len", "8"],
                              environment: ["MYOPIA_MEMORY_LIMIT": "100000"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("model.gguf") && refused.stderr.contains("available (MYOPIA_MEMORY_LIMIT)"), refused.stderr)
        let fits = try run(["eval", "--model", gguf.path, "--data", corpus.path, "--seq-len", "8", "--quiet"],
                           environment: ["MYOPIA_MEMORY_LIMIT": "10000000"])
        XCTAssertEqual(fits.status, 0, fits.stderr)
    }
}
