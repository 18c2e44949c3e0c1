import Foundation
import XCTest
import MyopiaTestSupport
@testable import MyopiaLab
import Myopia

/// Which tokenizer a model folder is read with (ModelInputs.tokenizer): its own tokenizer.json
/// first, then the one its config names, unless `--tokenizer` says otherwise.
final class ModelInputsTests: XCTestCase {
    static let fixtures = fixturesURL.appendingPathComponent("tokenizer_json")

    /// A tiny Llama checkpoint folder whose config names the byte tokenizer, with room for the
    /// fixtures' vocabularies (at most 643 ids).
    func modelFolder() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-model-inputs-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let model = Transformer(config: .llama(vocabSize: 700, maxPositions: 16, dModel: 8, nLayers: 1, nHeads: 2, nKVHeads: 1,
                                               dMLP: 16, tiedEmbeddings: true, tokenizer: "byte"))
        model.initialize(seed: 1)
        try Checkpoint.saveModel(model, to: dir)
        return dir
    }

    func fixture(_ family: String) -> URL {
        Self.fixtures.appendingPathComponent(family).appendingPathComponent("tokenizer.json")
    }

    func testModelFolderPrefersItsOwnTokenizerJSON() throws {
        let dir = try modelFolder()
        // Without a tokenizer.json: the config's (myopia_tokenizer "byte").
        XCTAssertTrue(try ModelInputs.load(dir.path).tokenizer is ByteTokenizer)

        // With one: it, whatever the config names; said in the log.
        let own = dir.appendingPathComponent("tokenizer.json")
        try FileManager.default.copyItem(at: fixture("qwen2"), to: own)
        var lines: [String] = []
        let loaded = try ModelInputs.load(dir.path, log: { lines.append($0) })
        let tokenizer = try XCTUnwrap(loaded.tokenizer as? HuggingFaceTokenizer)
        XCTAssertEqual(tokenizer.name, own.path)
        XCTAssertEqual(tokenizer.vocabSize, 496)
        XCTAssertEqual(tokenizer.encode("<|im_start|>Hello"), [tokenizer.addedTokens["<|im_start|>"]!] + tokenizer.encode("Hello"))
        XCTAssertTrue(lines.contains { $0.contains(own.path) && $0.contains("tokenizer.json") }, "\(lines)")

        // --tokenizer still wins: a name, or another tokenizer.json.
        XCTAssertTrue(try ModelInputs.load(dir.path, tokenizer: "byte").tokenizer is ByteTokenizer)
        let other = try ModelInputs.load(dir.path, tokenizer: fixture("gemma").path).tokenizer
        XCTAssertEqual(other.name, fixture("gemma").path)
        XCTAssertEqual(other.vocabSize, 643)

        // A fine-tune of the folder records the tokenizer it read.
        var config = TrainConfig()
        config.seqLen = 16
        _ = try ReferenceModel.load(dir.path, given: .init(), config: &config)
        XCTAssertEqual(config.tokenizer, own.path)
        _ = try ReferenceModel.load(dir.path, given: .init(tokenizer: "byte"), config: &config)
        XCTAssertEqual(config.tokenizer, "byte")
    }

    /// The folder's tokenizer.json must fit the model's vocabulary, like any other.
    func testFolderTokenizerLargerThanTheVocabularyIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-model-inputs-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let model = Transformer(config: ModelConfig(vocabSize: 256, maxPositions: 16, dModel: 8, nLayers: 1, nHeads: 2))
        model.initialize(seed: 1)
        try Checkpoint.saveModel(model, to: dir)
        try FileManager.default.copyItem(at: fixture("llama3"), to: dir.appendingPathComponent("tokenizer.json"))
        assertInputError(try ModelInputs.load(dir.path), "invalidValue", field: "vocab_size", reason: "506")
        XCTAssertNil(ModelInputs.folderTokenizer(dir.appendingPathComponent("config.json")))
        XCTAssertEqual(ModelInputs.folderTokenizer(dir)?.lastPathComponent, "tokenizer.json")
    }
}
