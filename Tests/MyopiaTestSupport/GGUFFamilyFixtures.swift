import Foundation
import Myopia

/// Tests/Fixtures/gguf_families: a GGUF of each architecture Myopia reads, written by
/// tools/reference/gguf_families_reference.py, with transformers' logits, loss and tokenizer ids.
public enum GGUFFamilyFixtures {
    public static let architectures = ["llama", "qwen2", "qwen3", "gemma2"]
    /// Logits and losses within this relative error of transformers'.
    public static let tolerance = 1e-4

    /// expected.json.
    public struct Expected: Decodable {
        public let architecture: String
        // Absent for the tokenizer-only llama_sentencepiece.
        public let vocab_size: Int?
        public let tokens: [Int32]?
        public let loss: Double?
        public let texts: [Text]
        public struct Text: Decodable {
            public let text: String
            public let ids: [Int32]
            public let ids_with_special: [Int32]
        }
    }

    public static func folder(_ name: String) -> URL { fixturesURL.appendingPathComponent("gguf_families/\(name)") }

    public static func expected(_ name: String) throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: folder(name).appendingPathComponent("expected.json")))
    }

    /// The logits [T, V] and the mean loss of tokens[1...] given tokens[..<T-1].
    public static func run(_ model: Transformer, _ tokens: [Int32]) -> (logits: [Float], loss: Double) {
        let t = tokens.count
        let cache = model.makeCache(batch: 1, seqLen: t)
        _ = model.forward(tokens: tokens, targets: Array(tokens.dropFirst()) + [0], batch: 1, seqLen: t, cache: cache)
        let losses = cache.positionLosses()
        return (cache.logitsArray(), losses.dropLast().reduce(0.0) { $0 + Double($1) } / Double(t - 1))
    }
}
