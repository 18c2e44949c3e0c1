import Foundation
import XCTest
import MyopiaTestSupport
@testable import MyopiaTokenizers
import Myopia

/// tokenizer.json against Hugging Face's `tokenizers`. Each folder of Tests/Fixtures/tokenizer_json
/// (tools/reference/tokenizer_json_reference.py) holds a small tokenizer with the blocks a model
/// family ships and the ids, with and without special tokens, and the decodes `tokenizers` 0.23
/// gives for 41 texts.
final class TokenizerJSONTests: XCTestCase {
    static let families = ["gpt_neox", "qwen2", "llama3", "gemma", "llama2", "mistral", "features_bytelevel", "features_chars"]
    static let folder = fixturesURL.appendingPathComponent("tokenizer_json")

    struct Sample: Decodable {
        let name: String
        let text: String
        let ids: [Int32]
        let ids_with_special: [Int32]
        let decoded: String
        let decoded_skip_special: String
    }

    struct DecodeCase: Decodable {
        let name: String
        let ids: [Int32]
        let text: String
        let text_skip_special: String
    }

    struct Expected: Decodable {
        struct PostProcessor: Decodable { let empty_text_ids: [Int32] }
        let vocab_size: Int
        let added_tokens: [String: Int32]
        let special_tokens: [String]
        let post_processor: PostProcessor
        let samples: [Sample]
        let decode_cases: [DecodeCase]
    }

    static func tokenizerURL(_ family: String) -> URL {
        folder.appendingPathComponent(family).appendingPathComponent("tokenizer.json")
    }

    func load(_ family: String) throws -> (HuggingFaceTokenizer, Expected) {
        let tokenizer = try HuggingFaceTokenizer.load(tokenizerJSON: Self.tokenizerURL(family), name: family)
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.folder.appendingPathComponent(family)
            .appendingPathComponent("expected.json")))
        return (tokenizer, expected)
    }

    // MARK: - Against tokenizers

    func testEveryFamilyMatchesTokenizers() throws {
        for family in Self.families {
            let (t, expected) = try load(family)
            XCTAssertEqual(t.vocabSize, expected.vocab_size, family)
            XCTAssertEqual(t.addedTokens, expected.added_tokens, family)
            XCTAssertEqual(Set(t.specialTokens.keys), Set(expected.special_tokens), family)
            XCTAssertEqual(t.postProcessor.prefix + t.postProcessor.suffix, expected.post_processor.empty_text_ids, family)
            XCTAssertEqual(expected.samples.count, 41)
            for s in expected.samples {
                XCTAssertEqual(t.encode(s.text), s.ids, "\(family): \(s.name)")
                XCTAssertEqual(t.encode(s.text, addSpecialTokens: true), s.ids_with_special, "\(family): \(s.name) with special tokens")
                XCTAssertEqual(t.decode(s.ids), s.decoded, "\(family): decode \(s.name)")
                XCTAssertEqual(t.decode(s.ids_with_special, skipSpecialTokens: true), s.decoded_skip_special,
                               "\(family): decode \(s.name) skipping special tokens")
            }
            for c in expected.decode_cases {
                XCTAssertEqual(t.decode(c.ids), c.text, "\(family): \(c.name)")
                XCTAssertEqual(t.decode(c.ids, skipSpecialTokens: true), c.text_skip_special, "\(family): \(c.name)")
            }
        }
    }

    /// What the families' post-processors add, and the end-of-text token.
    func testBeginningOfSequenceAndEndOfText() throws {
        let cases: [(String, Bool, String?, String?)] = [
            ("gpt_neox", false, nil, "<|endoftext|>"), ("qwen2", false, nil, "<|endoftext|>"),
            ("llama3", true, "<|begin_of_text|>", nil), ("gemma", true, "<bos>", nil), ("llama2", true, "<s>", nil),
            ("features_chars", false, nil, nil),
        ]
        for (family, addsBOS, bos, eot) in cases {
            let (t, _) = try load(family)
            XCTAssertEqual(t.addsBOS, addsBOS, family)
            XCTAssertEqual(t.beginningOfSequence, bos.map { t.addedTokens[$0]! }, family)
            XCTAssertEqual(t.endOfText, eot.map { t.addedTokens[$0]! }, family)
            XCTAssertEqual(t.encode("Hello", addSpecialTokens: true).first == t.beginningOfSequence, addsBOS, family)
        }
        let (features, _) = try load("features_bytelevel")   // BOS and EOS
        XCTAssertEqual(features.encode("", addSpecialTokens: true), [features.addedTokens["<s>"]!, features.addedTokens["</s>"]!])
    }

    // MARK: - Round trips

    /// A byte-level tokenizer without a normalizer (Llama 3) gives back any text exactly, including
    /// text the fixture never saw; so does a SentencePiece-style one with byte fallback (Gemma),
    /// for text without "▁" (which it decodes as a space).
    func testDecodeRoundTripsArbitraryText() throws {
        var rng = SeededGenerator(seed: 11)
        for family in ["llama3", "gemma"] {
            let fragments = ["the", " ", "  ", "\n", "\t", "\r\n", "'s", "'LL", "0", "12345", "é", "e\u{301}", "漢字", "한",
                             "👍🏽", "\u{200D}", "\u{00A0}", "\u{3000}", "½", "ſ", "<|", "|>", "<0x41>", "x", "Q", "—", "\u{0}"]
                + (family == "gemma" ? [] : ["▁"])
            let (t, _) = try load(family)
            for _ in 0..<200 {
                let text = (0..<Int(rng.next() % 40)).map { _ in fragments[Int(rng.next() % UInt64(fragments.count))] }.joined()
                let ids = t.encode(text)
                XCTAssertEqual(t.decode(ids), text, "\(family): \(text.debugDescription)")
                // Streaming: each token's bytes, one after another, are the text's.
                let streamed = ids.flatMap { t.decodeBytes([$0]) }
                XCTAssertEqual(String(decoding: streamed, as: UTF8.self), text, "\(family): streamed \(text.debugDescription)")
            }
        }
    }

    /// decodeBytes streams what decode writes, except the leading space that Strip removes.
    func testDecodeBytesAreEachTokensBytes() throws {
        let (llama2, _) = try load("llama2")
        let ids = llama2.encode("Hello world ☃")
        XCTAssertEqual(llama2.decode(ids), "Hello world ☃")
        XCTAssertEqual(String(decoding: llama2.decodeBytes(ids), as: UTF8.self), " Hello world ☃")
        let snowman = ["<0xE2>", "<0x98>", "<0x83>"].map { llama2.tokenID($0)! }
        XCTAssertEqual(llama2.decodeBytes(snowman), [0xE2, 0x98, 0x83])
        XCTAssertEqual(llama2.decode(Array(snowman.prefix(2))), "\u{FFFD}\u{FFFD}")   // one per byte, as ByteFallback does
    }

    /// A text with no pre-tokenizer is one piece (Gemma); a long one still encodes in n log n.
    func testLongInputsAreNotQuadratic() throws {
        for (family, unit) in [("gemma", "the quick brown fox "), ("llama3", "abcdefghij"), ("features_chars", "abc ")] {
            let (t, _) = try load(family)
            let text = String(repeating: unit, count: 20_000)
            let started = Date()
            let ids = t.encode(text)
            XCTAssertLessThan(Date().timeIntervalSince(started), 5, family)
            if family != "features_chars" { XCTAssertEqual(t.decode(ids), text, family) }
            XCTAssertLessThan(ids.count, text.utf8.count, family)
        }
    }

    /// Metaspace's `prepend_scheme: first` puts "▁" only before text that starts the input; text a
    /// normalizer cut the start of (a Strip, a Replace with "") does not, as `tokenizers` decides it
    /// from offsets into the original text. Ids from tokenizers 0.23.3 for the same blocks.
    func testMetaspaceFirstAfterANormalizerThatCutsTheStart() throws {
        func tokenizer(_ normalizer: String) throws -> HuggingFaceTokenizer {
            let json = #"{"normalizer":\#(normalizer),"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false},"#
                + #""added_tokens":[{"id":5,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],"#
                + #""model":{"type":"BPE","vocab":{"▁":0,"h":1,"i":2," ":3,"x":4},"merges":[]}}"#
            return try HuggingFaceTokenizer(TokenizerJSON(bytes: Array(json.utf8), source: "metaspace.json"), name: "metaspace")
        }
        let strip = try tokenizer(#"{"type":"Strip","strip_left":true,"strip_right":false}"#)
        XCTAssertEqual(strip.encode("hi"), [0, 1, 2])
        XCTAssertEqual(strip.encode("  hi"), [1, 2])
        XCTAssertEqual(strip.encode(" hi"), [1, 2])
        XCTAssertEqual(strip.encode("x hi"), [0, 4, 0, 1, 2])
        XCTAssertEqual(strip.encode("<s>hi"), [5, 1, 2])   // after an added token: not the input's start
        let replace = try tokenizer(#"{"type":"Replace","pattern":{"String":" "},"content":""}"#)
        XCTAssertEqual(replace.encode("hi"), [0, 1, 2])
        XCTAssertEqual(replace.encode("  hi"), [1, 2])
    }

    // MARK: - Loading by path

    func testTokenizersLoadReadsTokenizerJSONAndFoldersHoldingOne() throws {
        let file = Self.tokenizerURL("qwen2")
        let byFile = try Tokenizers.load(file.path)
        XCTAssertTrue(byFile is HuggingFaceTokenizer)
        XCTAssertEqual(byFile.name, file.path)
        let byFolder = try Tokenizers.load(file.deletingLastPathComponent().path)
        XCTAssertTrue(byFolder is HuggingFaceTokenizer)
        XCTAssertEqual(byFolder.encode("Hello world"), byFile.encode("Hello world"))
        XCTAssertEqual(byFolder.vocabSize, 496)
    }

    // MARK: - Refusals

    /// The llama3 fixture with `original` replaced by `replacement` (which must change it), written to a temporary file.
    func variant(_ original: String, _ replacement: String, family: String = "llama3") throws -> URL {
        let text = try String(contentsOf: Self.tokenizerURL(family), encoding: .utf8)
        XCTAssertTrue(text.contains(original), "fixture lacks \(original)")
        return try write(text.replacingOccurrences(of: original, with: replacement))
    }

    func write(_ text: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-tokenizer-json-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("tokenizer.json")
        try Data(text.utf8).write(to: url)
        return url
    }

    func refusal(_ url: URL, _ caseName: String, field: String, reason: String? = nil, line: UInt = #line) {
        let error = assertInputError(try HuggingFaceTokenizer.load(tokenizerJSON: url), caseName, field: field, reason: reason, line: line)
        XCTAssertEqual(error?.file, url.path, line: line)
        XCTAssertEqual(error?.field, field, line: line)
    }

    /// What Myopia does not run is refused by its field path and value, never skipped.
    func testUnsupportedPartsAreRefusedByFieldPath() throws {
        let split = ##"{"type":"Split","pattern":{"Regex":""##
        refusal(try variant(#""model":{"type":"BPE""#, #""model":{"type":"WordPiece""#), "unsupported", field: "model.type", reason: "\"WordPiece\"")
        refusal(try variant(#""model":{"type":"BPE""#, #""model":{"type":"Unigram""#), "unsupported", field: "model.type", reason: "\"Unigram\"")
        refusal(try variant(#"{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}"#,
                            #"{"type":"BertPreTokenizer"}"#), "unsupported", field: "pre_tokenizer.pretokenizers[1].type",
                reason: "\"BertPreTokenizer\"")
        refusal(try variant(#""normalizer":null"#, #""normalizer":{"type":"BertNormalizer","lowercase":true}"#),
                "unsupported", field: "normalizer.type", reason: "\"BertNormalizer\"")
        refusal(try variant(#""normalizer":null"#, #""normalizer":{"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Precompiled"}]}"#),
                "unsupported", field: "normalizer.normalizers[1].type", reason: "\"Precompiled\"")
        refusal(try variant(#""decoder":{"type":"ByteLevel""#, ###""decoder":{"type":"WordPiece","prefix":"##","cleanup":true},"x":{"type":"ByteLevel""###),
                "unsupported", field: "decoder.type", reason: "\"WordPiece\"")
        refusal(try variant(#""post_processor":{"type":"Sequence""#, #""post_processor":{"type":"RobertaProcessing","sep":["</s>",2],"cls":["<s>",0]},"x":{"type":"Sequence""#),
                "unsupported", field: "post_processor.type", reason: "\"RobertaProcessing\"")
        refusal(try variant(split, split + #"\\w+|"#), "unsupported", field: "pre_tokenizer.pretokenizers[0].pattern.Regex")
        refusal(try variant(#""behavior":"Isolated""#, #""behavior":"Removed""#), "unsupported", field: "pre_tokenizer.pretokenizers[0].behavior")
        refusal(try variant(#""invert":false"#, #""invert":true"#), "unsupported", field: "pre_tokenizer.pretokenizers[0].invert")
        refusal(try variant(#""dropout":null"#, #""dropout":0.1"#), "unsupported", field: "model.dropout", reason: "0.1")
        refusal(try variant(#""continuing_subword_prefix":null"#, ###""continuing_subword_prefix":"##""###), "unsupported",
                field: "model.continuing_subword_prefix", reason: "\"##\"")
        refusal(try variant(#""end_of_word_suffix":null"#, #""end_of_word_suffix":"</w>""#), "unsupported", field: "model.end_of_word_suffix")
        refusal(try variant(#""truncation":null"#, #""truncation":{"max_length":512,"strategy":"LongestFirst","stride":0}"#),
                "unsupported", field: "truncation")
        refusal(try variant(#""padding":null"#, #""padding":{"strategy":"BatchLongest"}"#), "unsupported", field: "padding")
        // ByteLevel anywhere but last; Metaspace anywhere but first.
        refusal(try variant(#"[{"type":"Split""#, #"[{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true},{"type":"Split""#),
                "unsupported", field: "pre_tokenizer.pretokenizers[0].type", reason: "ByteLevel")
        // A Replace normalizer with a regex.
        refusal(try variant(#""normalizer":null"#, #""normalizer":{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "}"#),
                "unsupported", field: "normalizer.pattern.Regex")
    }

    /// Broken files: a typed error naming the file and the field.
    func testMalformedFilesAreRefusedByField() throws {
        let text = try String(contentsOf: Self.tokenizerURL("llama3"), encoding: .utf8)
        refusal(try write(String(text.prefix(text.count / 2))), "invalidHeader", field: "JSON", reason: "not valid JSON")
        refusal(try write(#"{"model": {"type": "BPE""#), "invalidHeader", field: "JSON", reason: "the end of the file inside an object at line 1")
        refusal(try write("[1, 2]"), "invalidValue", field: "(top level)", reason: "a JSON object")
        refusal(try write(#"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "model": {}}"#), "invalidHeader", field: "JSON",
                reason: "the key \"model\" a second time")
        refusal(try write(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)), "invalidHeader", field: "JSON",
                reason: "nesting deeper")
        refusal(try write(#"{"version": "1.0"}"#), "missing", field: "model")
        refusal(try write("{\"model\": \"BPE\u{0}\"}"), "invalidHeader", field: "JSON", reason: "a control character")
        refusal(try variant(#""version":"1.0""#, #""version":"2.0""#), "invalidValue", field: "version")
        refusal(try variant(#""vocab":{"#, #""vocab":[],"x":{"#), "invalidValue", field: "model.vocab", reason: "an object")
        refusal(try variant(#""vocab":{"!":0"#, #""vocab":{"!":-1"#), "invalidValue", field: "model.vocab[\"!\"]")
        refusal(try variant(#""vocab":{"!":0"#, #""vocab":{"!":1.5"#), "invalidValue", field: "model.vocab[\"!\"]", reason: "1.5")
        assertInputError(try HuggingFaceTokenizer.load(tokenizerJSON: variant(#""vocab":{"!":0"#, #""vocab":{"!":1"#)), "invalidValue",
                         field: "model.vocab[", reason: "an id of its own")
        refusal(try variant(#""vocab":{"!":0"#, #""vocab":{"!":99999999"#), "invalidValue", field: "model.vocab")
        refusal(try variant(#""special":true"#, #""special":"yes""#), "invalidValue", field: "added_tokens[0].special", reason: "true or false")
        refusal(try variant(#""id":500,"#, #""id":7,"#), "invalidValue", field: "added_tokens[0].id", reason: "500")
        refusal(try variant(#""ignore_merges":true"#, #""ignore_merges":1"#), "invalidValue", field: "model.ignore_merges")
        refusal(try variant(#""unk_token":null"#, #""unk_token":"<unk>""#), "invalidValue", field: "model.unk_token")
        refusal(try variant(#""merges":[["#, #""merges":[["nope","t"],["#), "invalidValue", field: "model.merges[0]", reason: "\"nope\", which is not a token")
        refusal(try variant(#""merges":[["#, #""merges":[["!","!"],["#), "invalidValue", field: "model.merges[0]", reason: "\"!!\", which is not a token")
        refusal(try variant(#""merges":[["#, #""merges":[["a","b","c"],["#), "invalidValue", field: "model.merges[0]", reason: "a pair")
        refusal(try variant(#""merges":[["#, #""merges":["a  b",["#), "invalidValue", field: "model.merges[0]", reason: "one space")
        refusal(try variant(#""ids":[500]"#, #""ids":[5000]"#), "invalidValue", field: "post_processor")
        refusal(try variant(#"{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence""#,
                            #"{"SpecialToken":{"id":"<|nope|>","type_id":0}},{"Sequence""#), "invalidValue",
                field: "post_processor.processors[1].single[0].SpecialToken.id")
        // An added token given twice.
        refusal(try variant(#"{"id":501,"content":"<|end_of_text|>""#, #"{"id":501,"content":"<|begin_of_text|>""#, family: "llama3"),
                "invalidValue", field: "added_tokens[1].content")
        refusal(try write("{}").deletingLastPathComponent().appendingPathComponent("absent.json"), "missing", field: "file")
    }

    // MARK: - Pieces

    /// Llama 3's and Qwen2's regexes, on the cases that tell their alternatives apart.
    func testLlama3AndQwen2Pieces() {
        let cases: [(String, [String], [String])] = [
            ("Hello world", ["Hello", " world"], ["Hello", " world"]),
            ("I'm HE'S 'Re x'ſx", ["I", "'m", " HE", "'S", " '", "Re", " x", "'ſ", "x"], ["I", "'m", " HE", "'S", " '", "Re", " x", "'ſ", "x"]),
            ("12345 ab1", ["123", "45", " ab", "1"], ["1", "2", "3", "4", "5", " ab", "1"]),
            ("a  b\n\n c", ["a", " ", " b", "\n\n", " c"], ["a", " ", " b", "\n\n", " c"]),
            ("x !!\n\ny", ["x", " !!\n\n", "y"], ["x", " !!\n\n", "y"]),
            ("(word) \tword", ["(word", ")", " ", "\tword"], ["(word", ")", " ", "\tword"]),
            ("end   ", ["end", "   "], ["end", "   "]),
            ("a \n b", ["a", " \n", " b"], ["a", " \n", " b"]),
            ("\u{00A0}word 7", ["\u{00A0}word", " ", "7"], ["\u{00A0}word", " ", "7"]),
        ]
        for (text, llama3, qwen2) in cases {
            XCTAssertEqual(PreTokenizer.llama3.pieces(text), llama3, text.debugDescription)
            XCTAssertEqual(PreTokenizer.qwen2.pieces(text), qwen2, text.debugDescription)
        }
    }
}

extension HuggingFaceTokenizer {
    /// The id of a token as the file spells it.
    func tokenID(_ token: String) -> Int32? {
        (0..<Int32(vocabSize)).first { tokenString($0) == token }
    }
}
