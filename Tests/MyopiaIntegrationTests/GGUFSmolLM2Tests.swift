import Foundation
import MyopiaKernels
import XCTest
import MyopiaTestSupport
import Myopia

/// The real SmolLM2-135M GGUF file (fetched once into the shared test cache) against the gguf
/// package's inventory of it (tools/reference/gguf_reference.py).
final class GGUFSmolLM2Tests: XCTestCase {
    private static let fixtures = fixturesURL.appendingPathComponent("gguf")

    func testSmolLM2MetadataInventoryAndEveryTensor() throws {
        let store = AssetStore(home: FileManager.default.temporaryDirectory.appendingPathComponent("myopia-test-assets"))
        let url = try store.fetch("smollm2-135m", log: { print($0) })
        let opened = Date()
        let f = try GGUFFile(contentsOf: url)
        print(String(format: "GGUF: parsed the SmolLM2 header, metadata and tensor table in %.3f s", Date().timeIntervalSince(opened)))
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 32)
        XCTAssertEqual(try f.string("general.architecture"), "llama")
        XCTAssertEqual(try f.int("llama.block_count"), 30)
        XCTAssertEqual(try f.int("llama.embedding_length"), 576)
        XCTAssertEqual(try f.int("llama.attention.head_count"), 9)
        XCTAssertEqual(try f.int("llama.attention.head_count_kv"), 3)
        XCTAssertEqual(try f.int("llama.feed_forward_length"), 1536)
        XCTAssertEqual(try f.int("llama.rope.dimension_count"), 64)
        XCTAssertEqual(try f.float("llama.rope.freq_base"), 100_000)
        XCTAssertEqual(try f.float("llama.attention.layer_norm_rms_epsilon"), 1e-5)
        XCTAssertEqual(try f.int("llama.vocab_size"), 49152)
        XCTAssertEqual(try f.string("tokenizer.ggml.model"), "gpt2")
        let tokens = try f.stringArray("tokenizer.ggml.tokens")
        XCTAssertEqual(tokens.count, 49152)
        XCTAssertEqual(Array(tokens.prefix(3)), ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        let merges = try f.stringArray("tokenizer.ggml.merges")
        XCTAssertEqual(merges.count, 48900)
        XCTAssertEqual(merges.first, "Ġ t")
        XCTAssertEqual(try f.intArray("tokenizer.ggml.token_type").count, 49152)
        XCTAssertEqual(try f.int("tokenizer.ggml.bos_token_id"), 1)
        XCTAssertEqual(try f.int("tokenizer.ggml.eos_token_id"), 2)

        // Inventory: token_embd (Q8_0), 30 blocks of 9 tensors, output_norm; no output.weight (tied).
        XCTAssertEqual(f.tensors.count, 2 + 30 * 9)
        XCTAssertNil(f["output.weight"])
        XCTAssertEqual(f["token_embd.weight"]?.type, .q8_0)
        XCTAssertEqual(f["token_embd.weight"]?.shape, [576, 49152])
        XCTAssertEqual(f["output_norm.weight"]?.type, .f32)
        let perBlock: [String: (GGUFTensorType, [Int])] = [
            "attn_norm.weight": (.f32, [576]), "ffn_norm.weight": (.f32, [576]),
            "attn_q.weight": (.q4_1, [576, 576]), "attn_k.weight": (.q4_1, [576, 192]), "attn_v.weight": (.q4_1, [576, 192]),
            "attn_output.weight": (.q4_1, [576, 576]),
            "ffn_gate.weight": (.q4_1, [576, 1536]), "ffn_up.weight": (.q4_1, [576, 1536]), "ffn_down.weight": (.q4_1, [1536, 576]),
        ]
        for i in 0..<30 {
            for (suffix, (type, shape)) in perBlock {
                let t = try XCTUnwrap(f["blk.\(i).\(suffix)"], "blk.\(i).\(suffix)")
                XCTAssertEqual(t.type, type, t.name)
                XCTAssertEqual(t.shape, shape, t.name)
            }
        }

        // Every tensor against gguf.quants.dequantize (smollm2_probe.json), and sane statistics.
        let probeData = try Data(contentsOf: Self.fixtures.appendingPathComponent("smollm2_probe.json"))
        let probe = try XCTUnwrap(try JSONSerialization.jsonObject(with: probeData) as? [String: Any])
        let probes = try XCTUnwrap(probe["tensors"] as? [[String: Any]])
        XCTAssertEqual(probes.map { $0["name"] as? String }, f.tensors.map(\.name))
        var buffer = [Float](repeating: 0, count: f.tensors.map(\.elementCount).max()!)
        for (t, p) in zip(f.tensors, probes) {
            XCTAssertEqual(p["type"] as? String, t.type.name, t.name)
            XCTAssertEqual(p["shape"] as? [Int], t.shape, t.name)
            let n = t.elementCount
            try buffer.withUnsafeMutableBufferPointer { try f.copyFloats(t.name, into: UnsafeMutableBufferPointer(rebasing: $0[0..<n])) }
            var sum = 0.0, sumSquares = 0.0, sumAbs = 0.0, finite = true
            for x in buffer[0..<n] {
                let d = Double(x)
                sum += d; sumSquares += d * d; sumAbs += abs(d)
                finite = finite && x.isFinite
            }
            XCTAssertTrue(finite, t.name)
            XCTAssertEqual(sum, try XCTUnwrap(p["sum"] as? Double), accuracy: 1e-9 * sumAbs + 1e-12, t.name)
            XCTAssertEqual(sumSquares, try XCTUnwrap(p["sum_squares"] as? Double), accuracy: 1e-9 * sumSquares, t.name)
            for (index, value) in zip(try XCTUnwrap(p["indices"] as? [Int]), try XCTUnwrap(p["values"] as? [Double])) {
                XCTAssertEqual(buffer[index].bitPattern, Float(value).bitPattern, "\(t.name)[\(index)]")
            }
            let mean = sum / Double(n), std = (sumSquares / Double(n) - mean * mean).squareRoot()
            if t.shape.count == 2 {
                XCTAssertTrue(std > 0.02 && std < 1 && abs(mean) < 0.01, "\(t.name): mean \(mean), std \(std)")
            } else {
                XCTAssertTrue(mean > 0 && mean < 5 && std < 1, "\(t.name): mean \(mean), std \(std)")   // RMSNorm gains
            }
        }

        // Throughput of Q4_1 dequantisation over the model's Q4_1 tensors (printed for the record).
        let q4 = f.tensors.filter { $0.type == .q4_1 }
        let bytes = q4.reduce(0) { $0 + $1.byteCount }, values = q4.reduce(0) { $0 + $1.elementCount }
        var seconds = Double.infinity
        for _ in 0..<3 {   // best of three: the machine may be shared
            let start = Date()
            for t in q4 {
                try buffer.withUnsafeMutableBufferPointer { try f.copyFloats(t.name, into: UnsafeMutableBufferPointer(rebasing: $0[0..<t.elementCount])) }
            }
            seconds = min(seconds, Date().timeIntervalSince(start))
        }
        print(String(format: "GGUF Q4_1 dequantisation: %d tensors, %.1f MB in, %.1f M floats out, %.3f s: %.0f MB/s in, %.0f M floats/s (%d threads)",
                     q4.count, Double(bytes) / 1e6, Double(values) / 1e6, seconds, Double(bytes) / 1e6 / seconds, Double(values) / 1e6 / seconds, Parallel.threadCount))
    }
}
