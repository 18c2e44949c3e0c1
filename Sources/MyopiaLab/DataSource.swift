import Foundation
import Myopia

/// Turns what a user typed after `--data` into a token dataset: a known asset name
/// (`tinyshakespeare`, fetched on first use) or a path to a text file.
public enum DataSource {
    public static func load(_ nameOrPath: String, validationFraction: Double = 0.1,
                            log: (String) -> Void = { _ in }) throws -> TokenDataset {
        let url = try resolveTextFile(nameOrPath, log: log)
        return try TokenDataset.load(textFile: url, validationFraction: validationFraction)
    }

    public static func resolveTextFile(_ nameOrPath: String, log: (String) -> Void = { _ in }) throws -> URL {
        try AssetStore.resolveDataPath(nameOrPath, log: log)
    }
}
