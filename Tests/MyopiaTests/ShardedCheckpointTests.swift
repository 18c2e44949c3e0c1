import XCTest
import MyopiaTestSupport
import Myopia

/// Hugging Face folders as people download them: weights in shards named by
/// model.safetensors.index.json, in BF16 or F16. Fixtures (tools/reference/sharded_reference.py):
/// the tiny Llama in BF16 and the tiny GPT-2 in F16, each saved by transformers in 3 shards, with
/// the logits transformers computes on the folder reloaded in fp32.
final class ShardedCheckpointTests: XCTestCase {
    struct Fixture {
        let name: String
        /// The fp32 folder the shards were made from.
        let original: String
        let round: (Float) -> Float
    }

    static let llama = Fixture(name: "llama_bf16", original: "llama_tiny/hf") {
        HalfFloat.float(fromBFloat16Bits: HalfFloat.bfloat16Bits(from: $0))
    }
    static let gpt2 = Fixture(name: "gpt2_f16", original: "gpt2_tiny/hf") {
        HalfFloat.float(fromHalfBits: HalfFloat.halfBits(from: $0))
    }

    let sharded = fixturesURL.appendingPathComponent("sharded")

    func folder(_ fixture: Fixture) -> URL { sharded.appendingPathComponent(fixture.name).appendingPathComponent("hf") }

    // MARK: - Loading

    func testShardedFoldersHoldTheOriginalWeightsRoundedTo16Bits() throws {
        for fixture in [Self.llama, Self.gpt2] {
            let dir = folder(fixture)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent(Checkpoint.modelFile).path))
            let weights = try CheckpointTensors(folder: dir)
            XCTAssertEqual(weights.files.count, 3, fixture.name)
            XCTAssertEqual(Set(weights.tensors.map(\.dtype)), [fixture.name.hasSuffix("bf16") ? .bf16 : .f16], fixture.name)

            let model = try Checkpoint.loadModel(from: dir)
            let original = try Checkpoint.loadModel(from: fixturesURL.appendingPathComponent(fixture.original))
            XCTAssertEqual(model.config, original.config, fixture.name)
            for e in original.params.entries {
                let loaded = try XCTUnwrap(model.params.entry(e.name), e.name)
                let got = model.params.buffer(model.params.weights, loaded).map(\.bitPattern)
                let want = original.params.buffer(original.params.weights, e).map { fixture.round($0).bitPattern }
                XCTAssertEqual(got, want, "\(fixture.name) \(e.name)")
            }
            // The keys as the files spell them (GPT-2's carry transformers' `transformer.` prefix).
            XCTAssertEqual(Set(model.checkpointKeys.values), Set(weights.tensors.map(\.name)), fixture.name)
        }
    }

    func testLogitsMatchTransformersOnTheReloadedFolder() throws {
        struct Reference: Decodable { let tokens: [Int32]; let T: Int }
        for fixture in [Self.llama, Self.gpt2] {
            let dir = sharded.appendingPathComponent(fixture.name)
            let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: dir.appendingPathComponent("reference.json")))
            let logits = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("reference.safetensors")).floats("logits")
            let model = try Checkpoint.loadModel(from: folder(fixture))
            let cache = model.makeCache(batch: 1, seqLen: ref.T)
            _ = model.forward(tokens: Array(ref.tokens.dropLast()), targets: Array(ref.tokens.dropFirst()), batch: 1, seqLen: ref.T, cache: cache)
            XCTAssertLessThan(maxRelativeError(cache.logitsArray(), logits), 2e-5, fixture.name)
            // The test would notice weights left unrounded: the fp32 model is far off.
            let original = try Checkpoint.loadModel(from: fixturesURL.appendingPathComponent(fixture.original))
            let fp32 = original.makeCache(batch: 1, seqLen: ref.T)
            _ = original.forward(tokens: Array(ref.tokens.dropLast()), targets: Array(ref.tokens.dropFirst()), batch: 1, seqLen: ref.T, cache: fp32)
            XCTAssertGreaterThan(maxRelativeError(fp32.logitsArray(), logits), 2e-4, fixture.name)
        }
    }

    func testModelSourceTakesAShardedFolder() throws {
        let dir = folder(Self.llama)
        let location = try ModelSource.locate(dir.path)
        guard case .checkpoint(let url) = location else { return XCTFail("\(location)") }
        XCTAssertEqual(url.standardizedFileURL.path, dir.standardizedFileURL.path)
        XCTAssertEqual(try ModelSource.config(at: location).nLayers, 2)
        XCTAssertEqual(try ModelSource.load(location).params.count, 21664)
    }

    /// A Hugging Face cache snapshot is a folder of links into a blob store; the names in the index
    /// are plain, where the links point is not the index's business.
    func testShardsMayBeSymbolicLinks() throws {
        let dir = try temporaryDirectory(self)
        for name in try FileManager.default.contentsOfDirectory(atPath: folder(Self.llama).path) {
            try FileManager.default.createSymbolicLink(at: dir.appendingPathComponent(name), withDestinationURL: folder(Self.llama).appendingPathComponent(name))
        }
        XCTAssertEqual(try Checkpoint.loadModel(from: dir).params.weightArray(), try Checkpoint.loadModel(from: folder(Self.llama)).params.weightArray())
    }

    /// Only the files the index names are read; a folder with model.safetensors uses it, as
    /// transformers does.
    func testFilesTheIndexDoesNotNameAreNotRead() throws {
        let dir = try copy(Self.llama)
        for junk in ["model-00004-of-00004.safetensors", "consolidated.safetensors", "pytorch_model.bin"] {
            try Data("not a tensor file".utf8).write(to: dir.appendingPathComponent(junk))
        }
        let model = try Checkpoint.loadModel(from: dir)
        XCTAssertEqual(model.params.weightArray(), try Checkpoint.loadModel(from: folder(Self.llama)).params.weightArray())

        let original = try Checkpoint.loadModel(from: fixturesURL.appendingPathComponent(Self.llama.original))
        try FileManager.default.copyItem(at: fixturesURL.appendingPathComponent(Self.llama.original).appendingPathComponent(Checkpoint.modelFile),
                                         to: dir.appendingPathComponent(Checkpoint.modelFile))
        XCTAssertEqual(try Checkpoint.loadModel(from: dir).params.weightArray(), original.params.weightArray())
    }

    func testLoadWeightsTakesAFolderAnIndexOrAFile() throws {
        let dir = folder(Self.llama)
        let reference = try Checkpoint.loadModel(from: dir).params.weightArray()
        for url in [dir, dir.appendingPathComponent(Checkpoint.indexFile)] {
            let model = Transformer(config: try ModelConfig.load(from: dir.appendingPathComponent(Checkpoint.configFile)))
            try Checkpoint.loadWeights(into: model.params, from: url)
            XCTAssertEqual(model.params.weightArray(), reference, url.lastPathComponent)
        }
        let weights = try CheckpointTensors(contentsOf: dir.appendingPathComponent(Checkpoint.indexFile))
        XCTAssertEqual(weights.index?.totalSize, 43328)
        XCTAssertEqual(weights["model.norm.weight"].map { weights.path(of: $0) }, dir.appendingPathComponent("model-00003-of-00003.safetensors").path)
        XCTAssertEqual(try weights.floats("model.norm.weight").count, 32)
    }

    // MARK: - Refusals: each names the file and the field

    /// A writable copy of a fixture folder.
    func copy(_ fixture: Fixture) throws -> URL {
        let dir = try temporaryDirectory(self).appendingPathComponent("hf")
        try FileManager.default.copyItem(at: folder(fixture), to: dir)
        return dir
    }

    func index(_ dir: URL) -> URL { dir.appendingPathComponent(Checkpoint.indexFile) }

    func editIndex(_ dir: URL, _ edit: (inout [String: Any]) -> Void) throws {
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: index(dir))) as? [String: Any])
        edit(&json)
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys]).write(to: index(dir))
    }

    func editMap(_ dir: URL, _ edit: (inout [String: Any]) -> Void) throws {
        try editIndex(dir) { json in
            var map = json["weight_map"] as! [String: Any]
            edit(&map)
            json["weight_map"] = map
        }
    }

    /// Rewrites one shard (in F32) with the tensors `edit` leaves, and the index's total_size.
    func editShard(_ dir: URL, _ name: String, _ edit: (inout [SafeTensorsWriter.Tensor]) -> Void) throws {
        let url = dir.appendingPathComponent(name)
        let file = try SafeTensorsFile(contentsOf: url)
        var tensors = try file.entries.map { SafeTensorsWriter.Tensor(name: $0.name, shape: $0.shape, data: try file.floats($0.name)) }
        edit(&tensors)
        try SafeTensorsWriter.write(tensors, metadata: file.metadata, to: url)
        try editIndex(dir) { $0["metadata"] = nil }
    }

    func refused(_ dir: URL, _ caseName: String, file: URL? = nil, field: String, reason: String? = nil,
                 line: UInt = #line) {
        let error = assertInputError(try Checkpoint.loadModel(from: dir), caseName, field: field, reason: reason, line: line)
        XCTAssertEqual(error?.file, (file ?? index(dir)).path, "\(error.map { "\($0)" } ?? "")", line: line)
    }

    func testMissingShard() throws {
        let dir = try copy(Self.llama)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model-00002-of-00003.safetensors"))
        refused(dir, "missing", field: #"weight_map["model.layers.0.mlp.up_proj.weight"]: shard "model-00002-of-00003.safetensors""#)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("model-00002-of-00003.safetensors"), withIntermediateDirectories: false)
        refused(dir, "invalidValue", field: #"weight_map["model.layers.0.mlp.up_proj.weight"]"#, reason: "a folder")
    }

    func testTensorTheIndexNamesIsNotInItsShard() throws {
        let dir = try copy(Self.llama)
        try editMap(dir) { $0["model.layers.7.mlp.up_proj.weight"] = "model-00001-of-00003.safetensors" }
        refused(dir, "invalidValue", field: #"weight_map["model.layers.7.mlp.up_proj.weight"]"#,
                reason: #"expected a shard that holds the tensor, found "model-00001-of-00003.safetensors", which does not"#)
        // In another shard than the one named.
        let moved = try copy(Self.llama)
        try editMap(moved) { $0["lm_head.weight"] = "model-00003-of-00003.safetensors" }
        refused(moved, "invalidValue", field: #"weight_map["lm_head.weight"]"#,
                reason: #"expected the shard that holds the tensor, "model-00001-of-00003.safetensors", found "model-00003-of-00003.safetensors""#)
    }

    func testTensorTheModelNeedsIsMissing() throws {
        let dir = try copy(Self.llama)
        try editShard(dir, "model-00002-of-00003.safetensors") { $0.removeAll { $0.name == "model.layers.0.mlp.up_proj.weight" } }
        try editMap(dir) { $0["model.layers.0.mlp.up_proj.weight"] = nil }
        let error = assertInputError(try Checkpoint.loadModel(from: dir), "missing", field: #"weight_map["model.layers.0.mlp.up_proj.weight"]"#)
        XCTAssertEqual(error?.description, index(dir).path + #": weight_map["model.layers.0.mlp.up_proj.weight"]: missing"#)
        // GPT-2's is named as the file names it, with transformers' prefix.
        let gpt2 = try copy(Self.gpt2)
        let weights = try CheckpointTensors(folder: gpt2)
        let shard = weights.files[try XCTUnwrap(weights["transformer.ln_f.bias"]).file].lastPathComponent
        try editShard(gpt2, shard) { $0.removeAll { $0.name == "transformer.ln_f.bias" } }
        try editMap(gpt2) { $0["transformer.ln_f.bias"] = nil }
        refused(gpt2, "missing", field: #"weight_map["transformer.ln_f.bias"]"#)
    }

    func testTensorInTwoShards() throws {
        let dir = try copy(Self.llama)
        let norm = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("model-00003-of-00003.safetensors")).floats("model.norm.weight")
        try editShard(dir, "model-00001-of-00003.safetensors") { $0.append(.init(name: "model.norm.weight", shape: [32], data: norm)) }
        refused(dir, "invalidValue", field: #"weight_map["model.norm.weight"]"#,
                reason: #"expected the tensor in one shard, found it in both "model-00001-of-00003.safetensors" and "model-00003-of-00003.safetensors""#)
    }

    func testShardHoldsATensorTheIndexDoesNotName() throws {
        let dir = try copy(Self.llama)
        try editMap(dir) { $0["model.norm.weight"] = nil }
        refused(dir, "missing", field: #"weight_map["model.norm.weight"] (a tensor of "model-00003-of-00003.safetensors")"#)
    }

    func testTotalSizeMustBeTheBytesOfTheTensors() throws {
        let dir = try copy(Self.llama)
        try editIndex(dir) { $0["metadata"] = ["total_size": 43330, "total_parameters": 21664] }
        refused(dir, "invalidValue", field: "metadata.total_size", reason: "expected 43328 (the bytes of the 21 tensors in the shards), found 43330")
        // Absent, null, or written as an integral float: accepted.
        for metadata: Any in [["total_size": NSNull()], ["format": "pt"], NSNull(), ["total_size": 43328.0]] {
            try editIndex(dir) { $0["metadata"] = metadata }
            XCTAssertNoThrow(try Checkpoint.loadModel(from: dir), "\(metadata)")
        }
        for (value, found) in [(#""43328""#, #""43328""#), ("-1", "-1"), ("1.5", "1.5"), ("1e400", "1e400"), ("[]", "[]")] {
            var text = try String(contentsOf: folder(Self.llama).appendingPathComponent(Checkpoint.indexFile), encoding: .utf8)
            text = text.replacingOccurrences(of: #""total_size": 43328"#, with: #""total_size": \#(value)"#)
            try Data(text.utf8).write(to: index(dir))
            refused(dir, "invalidValue", field: "metadata.total_size", reason: "found \(found)")
        }
    }

    func testShardPathsMustBePlainFileNamesInTheFolder() throws {
        let dir = try copy(Self.llama)
        // A real safetensors file outside the folder, which an escaping name would reach.
        try FileManager.default.copyItem(at: dir.appendingPathComponent("model-00003-of-00003.safetensors"),
                                         to: dir.deletingLastPathComponent().appendingPathComponent("outside.safetensors"))
        let cases = [
            ("../outside.safetensors", "a path out of the folder"),
            ("sub/../../outside.safetensors", "a path out of the folder"),
            (dir.deletingLastPathComponent().appendingPathComponent("outside.safetensors").path, "an absolute path"),
            ("sub/model.safetensors", "a path into a subfolder"),
            (#"..\outside.safetensors"#, "a path out of the folder"),
            ("", "an empty name"),
            ("..", "a folder, not a file"),
            ("model-00003-of-00003.bin", "not a .safetensors file"),
            ("model\n.safetensors", "a control character"),
        ]
        for (name, problem) in cases {
            try editMap(dir) { $0["model.norm.weight"] = name }
            refused(dir, "invalidValue", field: #"weight_map["model.norm.weight"]"#, reason: problem)
            refused(dir, "invalidValue", field: #"weight_map["model.norm.weight"]"#, reason: "inside the checkpoint folder (no folder part, no .., not an absolute path)")
        }
    }

    func testMalformedIndexJSON() throws {
        let dir = try copy(Self.llama)
        let good = try Data(contentsOf: index(dir))
        let cases: [(Data, String, String, String)] = [
            (Data("{not json".utf8), "invalidHeader", "(top level)", "invalid JSON at byte 1"),
            (good.prefix(good.count / 2), "invalidHeader", "(top level)", "invalid JSON"),
            (Data([0x7B, 0xFF, 0x7D]), "invalidHeader", "(top level)", "not valid UTF-8"),
            (Data((String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).utf8), "invalidHeader", "(top level)", "nested deeper"),
            (Data("[]".utf8), "invalidValue", "(top level)", "an array"),
            (Data(#"{"metadata": {}}"#.utf8), "missing", "weight_map", ""),
            (Data(#"{"weight_map": {}}"#.utf8), "invalidValue", "weight_map", "at least one tensor"),
            (Data(#"{"weight_map": ["model-00001-of-00003.safetensors"]}"#.utf8), "invalidValue", "weight_map", "an array"),
            (Data(#"{"weight_map": {"lm_head.weight": 1}}"#.utf8), "invalidValue", #"weight_map["lm_head.weight"]"#, "a string"),
            (Data(#"{"weight_map": {"lm_head.weight": null}}"#.utf8), "invalidValue", #"weight_map["lm_head.weight"]"#, "null"),
            (Data(#"{"metadata": "big", "weight_map": {"lm_head.weight": "a.safetensors"}}"#.utf8), "invalidValue", "metadata", "a string"),
            (Data(#"{"weight_map": {"a": "x.safetensors"}, "weight_map": {"a": "x.safetensors"}}"#.utf8), "invalidHeader", "weight_map", "more than once"),
            (Data(#"{"metadata": {"total_size": 1, "total_size": 1}, "weight_map": {"a": "x.safetensors"}}"#.utf8), "invalidHeader", "metadata.total_size", "more than once"),
        ]
        for (data, caseName, field, reason) in cases {
            try data.write(to: index(dir))
            refused(dir, caseName, field: field, reason: reason.isEmpty ? nil : reason)
        }
        // The same tensor twice in weight_map (JSONSerialization would keep one silently).
        var text = String(decoding: good, as: UTF8.self)
        text = text.replacingOccurrences(of: #""model.norm.weight": "model-00003-of-00003.safetensors""#,
                                         with: #""model.norm.weight": "model-00003-of-00003.safetensors", "model.norm.weight": "model-00001-of-00003.safetensors""#)
        try Data(text.utf8).write(to: index(dir))
        refused(dir, "invalidHeader", field: #"weight_map["model.norm.weight"]"#, reason: "appears more than once")
    }

    func testBrokenShardIsNamed() throws {
        let dir = try copy(Self.llama)
        let shard = dir.appendingPathComponent("model-00002-of-00003.safetensors")
        let bytes = try Data(contentsOf: shard)
        try bytes.prefix(bytes.count - 10).write(to: shard)
        refused(dir, "truncated", file: shard, field: "data_offsets", reason: "size of the data section")
        try Data([1, 2, 3]).write(to: shard)
        refused(dir, "truncated", file: shard, field: "header length")
    }

    /// The shards are checked from their headers, then read one at a time: one rewritten in
    /// between is refused, not half-loaded.
    func testAShardRewrittenAfterTheCheckIsRefused() throws {
        let dir = try copy(Self.llama)
        let weights = try CheckpointTensors(folder: dir)
        try editShard(dir, "model-00003-of-00003.safetensors") { _ in }   // now F32: another header
        let model = Transformer(config: try ModelConfig.load(from: dir.appendingPathComponent(Checkpoint.configFile)))
        let error = assertInputError(try Checkpoint.loadWeights(into: model.params, from: weights), "invalidValue", field: "header", reason: "changed")
        XCTAssertEqual(error?.file, dir.appendingPathComponent("model-00003-of-00003.safetensors").path)
    }

    func testFolderWithoutWeights() throws {
        let dir = try temporaryDirectory(self)
        try FileManager.default.copyItem(at: folder(Self.llama).appendingPathComponent(Checkpoint.configFile), to: dir.appendingPathComponent(Checkpoint.configFile))
        refused(dir, "missing", file: dir, field: "model.safetensors or model.safetensors.index.json")
    }
}
