import Foundation
import XCTest
import MyopiaTestSupport
import Myopia

/// GGUF files of each architecture Myopia reads (llama, qwen2, qwen3, gemma2), written by
/// tools/reference/gguf_families_reference.py with the `gguf` package's writer from random
/// `transformers` models as llama.cpp's converter writes them (llama's q/k rows permuted, Gemma's
/// norms stored as 1 + w), tensors in F32, F16, BF16, Q4_0…Q8_0 and raw K-quant blocks (Q2_K…Q6_K).
/// Myopia's logits on the GGUF equal those of `transformers` loading the same GGUF
/// (`from_pretrained(dir, gguf_file:)`), ‖mine − theirs‖ / ‖theirs‖ ≤ 1e-4, and so does the loss.
final class GGUFFamiliesTests: XCTestCase {
    typealias F = GGUFFamilyFixtures

    func testLogitsAndLossMatchTransformersOnTheGGUF() throws {
        for arch in F.architectures {
            let ref = try F.expected(arch)
            let model = try GGUFModel.load(from: F.folder(arch).appendingPathComponent("model.gguf"))
            XCTAssertEqual(model.config.family.rawValue, arch)
            XCTAssertEqual(model.config.vocabSize, ref.vocab_size)
            let tensors = try SafeTensorsFile(contentsOf: F.folder(arch).appendingPathComponent("reference.safetensors"))
            let (logits, loss) = F.run(model, try XCTUnwrap(ref.tokens))
            XCTAssertLessThanOrEqual(relativeError(logits, try tensors.floats("logits")), F.tolerance, arch)
            XCTAssertEqual(loss, try XCTUnwrap(ref.loss), accuracy: F.tolerance * ref.loss!, arch)
        }
    }

    func testEachArchitecturesMetadata() throws {
        let file = { (arch: String) in try GGUFFile(contentsOf: F.folder(arch).appendingPathComponent("model.gguf")) }
        let llama = try GGUFModel.config(file("llama"), tokenizer: nil)
        XCTAssertEqual([llama.headSize, llama.kvHeads, llama.nHeads], [8, 2, 4])
        XCTAssertFalse(llama.tiedEmbeddings)
        XCTAssertEqual(llama.ropeTheta, 5000)
        XCTAssertTrue(try GGUFModel.config(file("qwen2"), tokenizer: nil).tiedEmbeddings)
        XCTAssertEqual(try GGUFModel.config(file("qwen3"), tokenizer: nil).headSize, 16)
        let gemma = try GGUFModel.config(file("gemma2"), tokenizer: nil)
        XCTAssertEqual(gemma.attentionSoftcap, 2)
        XCTAssertEqual(gemma.finalSoftcap, 3)
        // No key holds it: inferred from the head size (key_length), as llama.cpp does below 46 layers.
        XCTAssertEqual(gemma.queryPreAttentionScalar, 16)
        XCTAssertEqual((0..<2).map { gemma.window(layer: $0) }, [4, nil])
    }

    func testUnknownArchitectureIsRefusedNamingTheSupportedOnes() throws {
        XCTAssertThrowsError(try GGUFModel.config(try GGUFFile(contentsOf: fixturesURL.appendingPathComponent("gguf/quants.gguf")), tokenizer: nil)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("quants.gguf"), message)
            XCTAssertTrue(message.contains("general.architecture"), message)
            XCTAssertTrue(message.contains("gemma2, llama, qwen2, qwen3"), message)
            XCTAssertFalse(message.contains("\n"), message)
        }
    }
}

/// The tokenizer each GGUF ships, as the tokenizer.json Myopia writes for it, against the ids of
/// `AutoTokenizer.from_pretrained(dir, gguf_file:)`: byte-level BPE with the llama-bpe and qwen2
/// pre-tokenizers, Gemma's SentencePiece (merges rebuilt from token positions, real-space tokens
/// respelled) and Llama's (merges rebuilt from scores that do not follow positions).
final class GGUFTokenizerJSONTests: XCTestCase {
    static let fixtures = GGUFFamilyFixtures.architectures + ["llama_sentencepiece"]

    func testIdsMatchTransformersGGUFTokenizer() throws {
        for name in Self.fixtures {
            let ref = try GGUFFamilyFixtures.expected(name)
            let url = GGUFFamilyFixtures.folder(name).appendingPathComponent("model.gguf")
            let tokenizer = try Tokenizers.loadGGUF(url, name: name)
            for sample in ref.texts {
                XCTAssertEqual(tokenizer.encode(sample.text, addSpecialTokens: false), sample.ids, "\(name): \(sample.text.debugDescription)")
                XCTAssertEqual(tokenizer.encode(sample.text, addSpecialTokens: true), sample.ids_with_special, "\(name): \(sample.text.debugDescription) with special tokens")
                if !sample.ids.isEmpty { XCTAssertFalse(tokenizer.decode(sample.ids).isEmpty, name) }
            }
        }
    }

    func testUnknownTokenizerModelAndPreTokenizerAreRefusedByName() throws {
        XCTAssertThrowsError(try GGUFTokenizerJSON.make(GGUFFile(contentsOf: fixturesURL.appendingPathComponent("gguf/quants.gguf")))) { error in
            XCTAssertTrue("\(error)".contains("tokenizer.ggml.model"), "\(error)")
        }
    }
}
