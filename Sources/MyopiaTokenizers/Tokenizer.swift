// Tokenizer: what training, evaluation and generation need from a tokenizer, and `Tokenizers.load`,
// which turns what a user typed after `--tokenizer` into one.
//
//   byte            ByteTokenizer, vocab 256
//   gpt2            BPETokenizer from the `gpt2` asset (vocab.json + merges.txt), vocab 50257
//   gpt2-tiktoken   BPETokenizer from the `gpt2-tiktoken` asset (tiktoken ranks); the same ids
//   smollm2-135m    BPETokenizer embedded in the `smollm2-135m` GGUF (GGUFTokenizer.swift), vocab 49152,
//                   SmolLM2's digit-splitting pre-tokenizer, end of text = <|im_end|> (its eos, 2)
//   PATH            a tokenizer.json (Hugging Face's tokenizers format: HuggingFaceTokenizer), a folder
//                   holding one (else vocab.json + merges.txt), a vocab.json (merges.txt beside it), a
//                   .tiktoken ranks file (`<|endoftext|>` = number of ranks, as in GPT-2), or a
//                   .gguf file whose tokenizer.ggml.model is "gpt2" or "llama" (SentencePiece)

import Foundation
import MyopiaSupport
import MyopiaAssets
import MyopiaFormats

public protocol Tokenizer: Sendable {
    /// What `Tokenizers.load` was given: a known name or a path. Checkpoints record it.
    var name: String { get }
    /// Ids are in 0..<vocabSize.
    var vocabSize: Int { get }
    /// Text to ids, never adding a BOS or EOS. Special tokens written in the text are treated as
    /// the tokenizer's own library treats them: as the plain text they are for GPT-2's files,
    /// tiktoken ranks and GGUF (tiktoken's `encode_ordinary`), as their ids for a tokenizer.json
    /// (`tokenizers`' `encode(text, add_special_tokens=False)`).
    func encode(_ text: String) -> [Int32]
    /// Text to ids for a whole sequence: with `addSpecialTokens`, the tokens a tokenizer.json's
    /// post-processor puts around it (a BOS for Llama 3 and Gemma), as `tokenizers`' `encode(text,
    /// add_special_tokens=True)`. The other tokenizers have none to add.
    func encode(_ text: String, addSpecialTokens: Bool) -> [Int32]
    /// Ids to text; bytes that are not valid UTF-8 become U+FFFD. Ids outside the vocabulary are skipped.
    func decode(_ ids: [Int32]) -> String
    /// Ids to their exact bytes (for streaming output, where a character may span tokens).
    func decodeBytes(_ ids: [Int32]) -> [UInt8]
    /// The end-of-text token, if the vocabulary has one: GPT-2's document separator `<|endoftext|>`,
    /// or the eos token a GGUF file names (SmolLM2-Instruct's `<|im_end|>`).
    var endOfText: Int32? { get }
}

extension Tokenizer {
    public var endOfText: Int32? { nil }
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int32] { encode(text) }
}

extension ByteTokenizer: Tokenizer {
    public var name: String { Self.name }

    public func decodeBytes(_ ids: [Int32]) -> [UInt8] {
        ids.compactMap { (0..<256).contains($0) ? UInt8($0) : nil }
    }
}

public enum Tokenizers {
    /// The names `load` knows; anything else is a path.
    public static let knownNames = [ByteTokenizer.name, "gpt2", "gpt2-tiktoken", "smollm2-135m"]

    /// A known tokenizer name (fetching its asset on first use) or a path to tokenizer files.
    public static func load(_ nameOrPath: String, store: AssetStore = AssetStore(),
                            log: (String) -> Void = { _ in }) throws -> any Tokenizer {
        switch nameOrPath {
        case ByteTokenizer.name:
            return ByteTokenizer()
        case "gpt2":
            let folder = try store.fetch("gpt2", log: log)
            return try BPETokenizer.load(folder: folder, name: nameOrPath)
        case "gpt2-tiktoken":
            let file = try store.fetch("gpt2-tiktoken", log: log)
            return try BPETokenizer.load(tiktoken: file, name: nameOrPath)
        case "smollm2-135m":
            let file = try store.fetch("smollm2-135m", log: log)
            return try BPETokenizer.load(gguf: file, name: nameOrPath)
        default:
            return try loadPath(nameOrPath)
        }
    }

    /// A GGUF file's tokenizer: byte-level BPE with the "gpt2" or "smollm" pre-tokenizer as
    /// BPETokenizer (special tokens in text are plain text), any other as the tokenizer.json that
    /// transformers builds from it (GGUFTokenizerJSON.swift).
    public static func loadGGUF(_ url: URL, name: String) throws -> any Tokenizer {
        let file = try GGUFFile(contentsOf: url)
        if (try? file.string("tokenizer.ggml.model")) == "gpt2", let pre = try? file.string("tokenizer.ggml.pre"),
           PreTokenizer.ggufNames[pre] != nil {
            return try BPETokenizer(gguf: file, name: name)
        }
        return try GGUFTokenizerJSON.tokenizer(file, name: name)
    }

    private static func loadPath(_ path: String) throws -> any Tokenizer {
        let expanded = (path as NSString).expandingTildeInPath
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: expanded, isDirectory: &isFolder) else {
            throw InputError.io(file: path, reason: "no such file or folder, and not a known tokenizer (known: \(knownNames.joined(separator: ", ")))")
        }
        let url = URL(fileURLWithPath: expanded)
        if isFolder.boolValue {
            let tokenizerJSON = url.appendingPathComponent("tokenizer.json")
            if FileManager.default.fileExists(atPath: tokenizerJSON.path) {
                return try HuggingFaceTokenizer.load(tokenizerJSON: tokenizerJSON, name: path)
            }
            return try BPETokenizer.load(folder: url, name: path)
        }
        if url.pathExtension == "tiktoken" { return try BPETokenizer.load(tiktoken: url, name: path) }
        if url.pathExtension.lowercased() == "gguf" { return try loadGGUF(url, name: path) }
        if url.lastPathComponent.hasSuffix("vocab.json") {
            let merges = url.deletingLastPathComponent().appendingPathComponent("merges.txt")
            return try BPETokenizer.load(vocabJSON: url, merges: merges, name: path)
        }
        if url.pathExtension.lowercased() == "json" { return try HuggingFaceTokenizer.load(tokenizerJSON: url, name: path) }
        throw InputError.unsupported(file: path, field: "tokenizer",
                                      value: "\"\(url.lastPathComponent)\" (expected a tokenizer.json, a folder with one or with vocab.json + merges.txt, a vocab.json, a .tiktoken or a .gguf file)")
    }
}
