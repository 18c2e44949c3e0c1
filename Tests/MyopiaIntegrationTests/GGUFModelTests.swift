import XCTest
import MyopiaTestSupport
import Myopia

/// SmolLM2-135M-Instruct from its Q4_1 GGUF (the `smollm2-135m` asset) against Hugging Face
/// transformers running the same file (tools/reference/smollm2_reference.py), and the loader's
/// typed errors on files that are not what it reads.
final class GGUFModelTests: XCTestCase {
    struct Reference: Decodable {
        struct Prompt: Decodable {
            let text: String
            let ids: [Int32]
            let greedy_ids: [Int32]
            let greedy_text: String
            let probe_ids: [Int]
            let probe_logits: [Float]
            let top_ids: [Int]
        }
        struct Passage: Decodable {
            let text: String
            let ids: [Int32]
            let loss: Double
            let losses: [Float]
            let hidden_norms: [Double]
        }
        let prompt: Prompt
        let passage: Passage
    }

    static let store = AssetStore(home: FileManager.default.temporaryDirectory.appendingPathComponent("myopia-test-assets"))
    // Loaded once for the class: 135M parameters dequantised to fp32.
    nonisolated(unsafe) static var cached: (Transformer, any Tokenizer)?

    func smolLM2() throws -> (Transformer, any Tokenizer) {
        if let cached = Self.cached { return cached }
        let url = try Self.store.fetch("smollm2-135m", log: { print($0) })
        let model = try GGUFModel.load(from: url, tokenizer: "smollm2-135m")
        let tokenizer = try Tokenizers.load("smollm2-135m", store: Self.store)
        Self.cached = (model, tokenizer)
        return (model, tokenizer)
    }

    func reference() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: fixturesURL.appendingPathComponent("gguf/smollm2_reference.json")))
    }

    func testConfigFromMetadata() throws {
        let (model, _) = try smolLM2()
        let c = model.config
        XCTAssertEqual(c.family, .llama)
        XCTAssertEqual([c.vocabSize, c.dModel, c.nLayers, c.nHeads, c.kvHeads, c.headSize, c.dMLP], [49152, 576, 30, 9, 3, 64, 1536])
        XCTAssertEqual(c.ropeTheta, 100_000)
        XCTAssertEqual(c.layerNormEps, 1e-5, accuracy: 1e-12)
        XCTAssertTrue(c.tiedEmbeddings)
        XCTAssertEqual(model.params.count, 134_515_008)
        XCTAssertEqual(model.checkpointKeys["model.layers.3.self_attn.q_proj.weight"], "blk.3.attn_q.weight")
    }

    /// The greedy continuation of "The capital of France is" begins " Paris", token for token as
    /// transformers has it, and the last position's logits agree.
    func testGreedyContinuationAndLogitsMatchTransformers() throws {
        let (model, tokenizer) = try smolLM2()
        let ref = try reference().prompt
        XCTAssertEqual(tokenizer.encode(ref.text), ref.ids)
        let cache = KVCache(config: model.config, capacity: 64)
        let logits = Array(UnsafeBufferPointer(start: model.decode(ref.ids, cache: cache), count: model.config.vocabSize))
        XCTAssertLessThan(maxRelativeError(ref.probe_ids.map { logits[$0] }, ref.probe_logits), 1e-4)
        let top = logits.indices.sorted { logits[$0] > logits[$1] }.prefix(ref.top_ids.count)
        XCTAssertEqual(Array(top), ref.top_ids)
        let options = SamplingOptions(temperature: 0, maxTokens: ref.greedy_ids.count)
        let generated = Generation.generate(model, prompt: ref.ids, options: options)
        XCTAssertEqual(generated, ref.greedy_ids)
        XCTAssertTrue(tokenizer.decode(generated).hasPrefix(" Paris"), tokenizer.decode(generated))
        XCTAssertEqual(tokenizer.decode(generated), ref.greedy_text)
    }

    /// Teacher-forced loss and per-position losses on a passage, and the residual stream's size
    /// entering every layer.
    func testPassageLossMatchesTransformers() throws {
        let (model, tokenizer) = try smolLM2()
        let ref = try reference().passage
        XCTAssertEqual(tokenizer.encode(ref.text), ref.ids)
        let t = ref.ids.count - 1
        let cache = model.makeCache(batch: 1, seqLen: t)
        let loss = model.forward(tokens: Array(ref.ids.dropLast()), targets: Array(ref.ids.dropFirst()), batch: 1,
                                 seqLen: t, cache: cache)!
        XCTAssertEqual(Double(loss), ref.loss, accuracy: 1e-4 * ref.loss)
        XCTAssertLessThan(maxRelativeError(cache.positionLosses(), ref.losses), 1e-4)
        for (l, norm) in ref.hidden_norms.enumerated() {
            let h = cache.residual(layer: l), c = model.config.dModel
            var mean = 0.0
            for i in 0..<t { mean += (0..<c).reduce(0.0) { $0 + Double(h[i * c + $1] * h[i * c + $1]) }.squareRoot() }
            XCTAssertEqual(mean / Double(t), norm, accuracy: 1e-4 * norm, "layer \(l)")
        }
    }

    /// A GGUF that is not a whole Llama (the reader's test file: tensors of every type, but no
    /// model) is a typed error naming the file and what is missing.
    func testIncompleteModelIsATypedError() throws {
        let url = fixturesURL.appendingPathComponent("gguf/tiny.gguf")
        XCTAssertThrowsError(try GGUFModel.load(from: url)) { error in
            guard case InputError.missing(let file, let field)? = error as? InputError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, url.path)
            XCTAssertTrue(field.contains("llama.") || field.contains("token_embd"), field)
        }
    }
}
