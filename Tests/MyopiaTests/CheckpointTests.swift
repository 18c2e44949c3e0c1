import XCTest
import MyopiaTestSupport
import Myopia

/// Checkpoint folders: round trips, the folder transformers loaded, and typed errors for bad files.
final class CheckpointTests: XCTestCase {
    /// The model behind Tests/Fixtures/myopia_written: Myopia's GPT-2 init with seed 42, then
    /// non-trivial norms and biases. Regenerate with MYOPIA_WRITE_FIXTURES=1 (see tools/reference/README.md).
    static func writtenModel() -> Transformer {
        let config = ModelConfig(vocabSize: 256, maxPositions: 32, dModel: 64, nLayers: 2, nHeads: 4)
        let model = Transformer(config: config)
        model.initialize(seed: 42)
        var rng = SeededGenerator(seed: 43)
        for e in model.params.entries where e.shape.count == 1 {
            let p = model.params.weights + e.offset
            for i in 0..<e.count { p[i] += Float(rng.nextNormal()) * 0.05 }
        }
        return model
    }

    static let writtenTokens: [[Int32]] = (0..<2).map { (r: Int) -> [Int32] in
        (0..<33).map { (i: Int) -> Int32 in Int32((i * 37 + r * 101 + 7) % 256) }
    }

    let written = fixturesURL.appendingPathComponent("myopia_written")

    func testMyopiaFolderIsWhatTransformersLoaded() throws {
        let dir = try temporaryDirectory(self)
        let model = Self.writtenModel()
        try Checkpoint.saveModel(model, to: dir)
        if ProcessInfo.processInfo.environment["MYOPIA_WRITE_FIXTURES"] == "1" {
            try? FileManager.default.removeItem(at: written)
            try Checkpoint.saveModel(model, to: written)
            let json = try JSONEncoder().encode(["tokens": Self.writtenTokens])
            try json.write(to: written.appendingPathComponent("tokens.json"))
        }
        // Myopia still writes exactly the bytes that transformers was given.
        for name in [Checkpoint.configFile, Checkpoint.modelFile] {
            XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent(name)),
                           try Data(contentsOf: written.appendingPathComponent(name)), name)
        }
        // ... and computes the loss transformers computed on it.
        struct Check: Decodable { let loss: Double }
        let check = try JSONDecoder().decode(Check.self, from: Data(contentsOf: written.appendingPathComponent("transformers_check.json")))
        let loaded = try Checkpoint.loadModel(from: written)
        let cache = loaded.makeCache(batch: 2, seqLen: 32)
        let loss = loaded.forward(tokens: Self.writtenTokens.flatMap { $0.dropLast() },
                                  targets: Self.writtenTokens.flatMap { $0.dropFirst() }, batch: 2, seqLen: 32, cache: cache)!
        XCTAssertEqual(Double(loss), check.loss, accuracy: 1e-4 * check.loss)
    }

    func testRoundTripIsBitExact() throws {
        let dir = try temporaryDirectory(self)
        let model = Self.writtenModel()
        try Checkpoint.saveModel(model, to: dir)
        let loaded = try Checkpoint.loadModel(from: dir)
        XCTAssertEqual(loaded.config, model.config)
        XCTAssertTrue(loaded.params.weightArray() == model.params.weightArray(), "weights changed in the round trip")
        // The optimiser state too.
        model.params.ensureMoments()
        for i in 0..<model.params.count { model.params.moment1![i] = Float(i % 7); model.params.moment2![i] = Float(i % 5) }
        try Checkpoint.saveOptimizer(model.params, to: dir)
        try Checkpoint.loadOptimizer(into: loaded.params, from: dir)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: loaded.params.moment1!, count: 100)),
                       Array(UnsafeBufferPointer(start: model.params.moment1!, count: 100)))
    }

    func testRunFolderResolvesToNewestCheckpoint() throws {
        let run = try temporaryDirectory(self)
        let model = Self.writtenModel()
        for step in [5, 40, 10] { try Checkpoint.saveModel(model, to: run.appendingPathComponent("checkpoint-\(step)")) }
        XCTAssertEqual(try Checkpoint.resolve(run).lastPathComponent, "checkpoint-40")
        XCTAssertThrowsError(try Checkpoint.resolve(run.appendingPathComponent("nothing-here")))
    }

    // MARK: bad files

    func writeConfig(_ dir: URL, _ json: String) throws {
        try Data(json.utf8).write(to: dir.appendingPathComponent("config.json"))
    }

    func assertConfigError(_ json: String, field: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try temporaryDirectory(self)
        try writeConfig(dir, json)
        XCTAssertThrowsError(try ModelConfig.load(from: dir.appendingPathComponent("config.json")), file: file, line: line) { error in
            guard let e = error as? InputError else { return XCTFail("not an InputError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.file, dir.appendingPathComponent("config.json").path, file: file, line: line)
            XCTAssertEqual(e.field, field, "\(e)", file: file, line: line)
        }
    }

    let good = #"{"model_type":"gpt2","vocab_size":256,"n_positions":64,"n_embd":96,"n_layer":3,"n_head":3}"#

    func testConfigErrorsNameTheField() throws {
        try assertConfigError(#"{"model_type":"gpt2","vocab_size":256,"n_positions":64,"n_embd":96,"n_layer":3}"#, field: "n_head")
        try assertConfigError(good.replacingOccurrences(of: #""n_head":3"#, with: #""n_head":5"#), field: "n_head")
        try assertConfigError(good.replacingOccurrences(of: #""n_layer":3"#, with: #""n_layer":"three""#), field: "n_layer")
        try assertConfigError(good.replacingOccurrences(of: #""vocab_size":256"#, with: #""vocab_size":-1"#), field: "vocab_size")
        try assertConfigError(good.replacingOccurrences(of: #""n_embd":96"#, with: #""n_embd":99999999"#), field: "n_embd")
        try assertConfigError(good.replacingOccurrences(of: "}", with: #","activation_function":"relu"}"#), field: "activation_function")
        try assertConfigError(good.replacingOccurrences(of: #""gpt2""#, with: #""mamba""#), field: "model_type")
        try assertConfigError("{not json", field: "(top level)")
        // A good one loads, with HF's extra keys ignored.
        let dir = try temporaryDirectory(self)
        try writeConfig(dir, good.replacingOccurrences(of: "}", with: #","n_inner":null,"summary_type":"cls_index"}"#))
        XCTAssertEqual(try ModelConfig.load(from: dir.appendingPathComponent("config.json")).dMLP, 384)
    }

    func testWeightFileErrors() throws {
        let model = Self.writtenModel()
        let store = model.params
        func write(_ tensors: [SafeTensorsWriter.Tensor]) throws -> URL {
            let url = try temporaryDirectory(self).appendingPathComponent("model.safetensors")
            try SafeTensorsWriter.write(tensors, to: url)
            return url
        }
        var tensors = store.entries.map { SafeTensorsWriter.Tensor(name: $0.name, shape: $0.shape, data: Array(store.buffer(store.weights, $0))) }
        // Missing tensor.
        let missing = try write(Array(tensors.dropLast()))
        XCTAssertThrowsError(try Checkpoint.loadWeights(into: Transformer(config: model.config).params, from: missing)) {
            XCTAssertEqual($0 as? InputError, .missing(file: missing.path, field: "ln_f.bias"))
        }
        // Wrong shape.
        tensors[0] = SafeTensorsWriter.Tensor(name: "wte.weight", shape: [64, 256], data: tensors[0].data)
        let wrong = try write(tensors)
        XCTAssertThrowsError(try Checkpoint.loadWeights(into: Transformer(config: model.config).params, from: wrong)) {
            XCTAssertEqual(($0 as? InputError)?.field, "wte.weight")
        }
        // An untied head.
        tensors[0] = SafeTensorsWriter.Tensor(name: "wte.weight", shape: [256, 64], data: tensors[0].data)
        let untied = try write(tensors + [SafeTensorsWriter.Tensor(name: "lm_head.weight", shape: [256, 64], data: [Float](repeating: 0, count: 256 * 64))])
        XCTAssertThrowsError(try Checkpoint.loadWeights(into: Transformer(config: model.config).params, from: untied)) {
            XCTAssertEqual(($0 as? InputError)?.field, "lm_head.weight")
        }
        // An unknown tensor.
        let unknown = try write(tensors + [SafeTensorsWriter.Tensor(name: "h.9.mlp.c_fc.weight", shape: [1], data: [0])])
        XCTAssertThrowsError(try Checkpoint.loadWeights(into: Transformer(config: model.config).params, from: unknown)) {
            XCTAssertEqual(($0 as? InputError)?.field, "h.9.mlp.c_fc.weight")
        }
        // A truncated file.
        let good = try write(tensors)
        let bytes = try Data(contentsOf: good)
        try bytes.prefix(bytes.count / 2).write(to: good)
        XCTAssertThrowsError(try Checkpoint.loadWeights(into: Transformer(config: model.config).params, from: good)) {
            XCTAssertNotNil($0 as? InputError)
        }
    }
}
