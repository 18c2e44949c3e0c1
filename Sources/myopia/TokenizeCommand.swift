import ArgumentParser
import Foundation
import Myopia

struct TokenizeCommand: ConfigFileCommand {
    static let configExample = #"{"tokenizer": "byte"}"#
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode a text file and print its token ids.",
        usage: "myopia tokenize [<options>] <file>",
        discussion: """
        The tokenizer is a name or a path. The names are byte, gpt2 (vocab.json and merges.txt), gpt2-tiktoken (tiktoken ranks; the same ids as gpt2) and smollm2-135m (the tokenizer in SmolLM2's GGUF). Their files are fetched on first use. A path is a Hugging Face tokenizer.json, a folder with one (or with vocab.json and merges.txt), a .tiktoken file, or a .gguf file.

        The ids go to stdout, one per line, or as one JSON array with --json. The count and the encoding rate go to stderr. `<|endoftext|>` in the text is plain text unless you pass --allow-special; a tokenizer.json's special tokens are always their ids, as in Hugging Face's tokenizers. --add-special-tokens puts around the ids what a tokenizer.json's post-processor adds (Llama 3's and Gemma's BOS).

        Examples:
          printf 'Hello world' > hello.txt
          myopia tokenize --tokenizer gpt2 hello.txt --json     # [15496,995]
          myopia tokenize --tokenizer gpt2 --decode ids.txt     # ids back to text
        """)

    @Option(help: "byte, gpt2, gpt2-tiktoken, smollm2-135m, or a path to tokenizer files (a tokenizer.json, a .gguf).") var tokenizer = "gpt2"
    @Argument(help: "A UTF-8 text file (- reads stdin); with --decode, a file of ids.") var file: String
    @Flag(help: "Print one JSON array.") var json = false
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false
    @OptionGroup var configFile: ConfigFileOption<TokenizeCommand>
    @Flag(name: .customLong("allow-special"), help: "Encode special tokens written in the text (<|endoftext|>) as their ids.")
    var allowSpecial = false
    @Flag(help: "Read ids (whitespace, comma or JSON-array separated) and print the text they decode to.") var decode = false
    @Flag(name: .customLong("add-special-tokens"), help: "Add the tokens a tokenizer.json's post-processor puts around a text (a BOS).")
    var addSpecialTokens = false

    func run() throws {
        Terminal.quiet = quiet
        try reportingErrors {
            let tok = try Tokenizers.load(tokenizer, log: Terminal.info)
            let data = try read(file)
            if decode {
                FileHandle.standardOutput.write(Data(tok.decodeBytes(try parseIDs(data, vocabSize: tok.vocabSize))))
                return
            }
            let ids: [Int32], seconds: Double
            if tok is ByteTokenizer {
                (ids, seconds) = timed { ByteTokenizer().encode(data) }
            } else {
                guard let text = String(data: data, encoding: .utf8) else {
                    throw InputError.invalidValue(file: file, field: "text", expected: "UTF-8", found: "bytes that are not UTF-8")
                }
                if allowSpecial, let bpe = tok as? BPETokenizer {
                    (ids, seconds) = timed { bpe.encode(text, allowedSpecial: Set(bpe.specialTokens.keys)) }
                } else {
                    (ids, seconds) = timed { tok.encode(text, addSpecialTokens: addSpecialTokens) }
                }
            }
            let body = json ? "[" + ids.map(String.init).joined(separator: ",") + "]\n"
                            : ids.map { "\($0)\n" }.joined()
            FileHandle.standardOutput.write(Data(body.utf8))
            Terminal.info(String(format: "%d tokens from %d bytes (%.2f bytes/token) in %.3f s (%.1f MB/s), ",
                                 ids.count, data.count, Double(data.count) / Double(max(ids.count, 1)), seconds,
                                 Double(data.count) / 1e6 / max(seconds, 1e-9)) + "tokenizer \(tok.name), vocab \(tok.vocabSize)")
        }
    }

    private func timed(_ body: () -> [Int32]) -> ([Int32], Double) {
        let started = Date()
        let ids = body()
        return (ids, Date().timeIntervalSince(started))
    }

    private func read(_ path: String) throws -> Data {
        if path == "-" { return FileHandle.standardInput.readDataToEndOfFile() }
        guard FileManager.default.fileExists(atPath: path) else { throw InputError.missing(file: path, field: "file") }
        do { return try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw InputError.io(file: path, reason: "cannot read: \(error.localizedDescription)")
        }
    }

    private func parseIDs(_ data: Data, vocabSize: Int) throws -> [Int32] {
        let separators = Set(" \t\r\n,[]".utf8)
        return try data.split(whereSeparator: { separators.contains($0) }).enumerated().map { i, field in
            guard let id = Int32(String(decoding: field, as: UTF8.self)), id >= 0, Int(id) < vocabSize else {
                throw InputError.invalidValue(file: file, field: "id \(i + 1)", expected: "an integer in 0..<\(vocabSize)",
                                               found: String(decoding: field.prefix(40), as: UTF8.self))
            }
            return id
        }
    }
}
