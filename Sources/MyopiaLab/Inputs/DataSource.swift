import Foundation
import Myopia

/// Turns what a user typed after `--data` into a token dataset: a known asset name
/// (`tinyshakespeare`, fetched on first use) or a path to a text file.
public enum DataSource {
    /// `warn` receives a line when the file does not look like text (see `binaryWarning`).
    public static func load(_ nameOrPath: String, tokenizer: any Tokenizer = ByteTokenizer(), validationFraction: Double = 0.1,
                            log: (String) -> Void = { _ in }, warn: (String) -> Void = { _ in }) throws -> TokenDataset {
        let url = try resolveTextFile(nameOrPath, log: log)
        if let data = try? Data(contentsOf: url, options: .mappedIfSafe), let warning = binaryWarning(data, file: url.path) { warn(warning) }
        return try TokenDataset.load(textFile: url, tokenizer: tokenizer, validationFraction: validationFraction)
    }

    /// A warning when `data` does not look like text: not UTF-8, or more than 1% NUL bytes (a model,
    /// an archive or an executable given by mistake). Training on it works, and learns nothing useful.
    public static func binaryWarning(_ data: Data, file: String) -> String? {
        guard !data.isEmpty else { return nil }
        let nuls = data.reduce(0) { $1 == 0 ? $0 + 1 : $0 }
        if nuls * 100 > data.count {
            return "\(file) looks binary, not text (\(nuls) of its \(data.count) bytes are NUL); training on it anyway"
        }
        if String(data: data, encoding: .utf8) == nil {
            return "\(file) is not UTF-8 text (a binary file?); training on its bytes anyway"
        }
        return nil
    }

    /// The whole file as tokens, checked to hold at least one window of `seqLen + 1` tokens.
    public static func tokens(_ nameOrPath: String, seqLen: Int, tokenizer: any Tokenizer = ByteTokenizer(),
                              log: (String) -> Void = { _ in }) throws -> (url: URL, tokens: [Int32]) {
        let url = try resolveTextFile(nameOrPath, log: log)
        let text: Data
        do { text = try Data(contentsOf: url) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        let tokens = tokenizer is ByteTokenizer ? ByteTokenizer().encode(text) : tokenizer.encode(String(decoding: text, as: UTF8.self))
        guard tokens.count >= seqLen + 1 else {
            throw InputError.invalidValue(file: url.path, field: "(contents)", expected: "at least one window of \(seqLen + 1) tokens", found: "\(tokens.count) tokens")
        }
        return (url, tokens)
    }

    public static func resolveTextFile(_ nameOrPath: String, log: (String) -> Void = { _ in }) throws -> URL {
        try AssetStore.resolveDataPath(nameOrPath, log: log)
    }
}
