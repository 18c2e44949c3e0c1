import Foundation
import MyopiaSupport
import MyopiaModel
import MyopiaAssets

/// What a user may name after `--model` / `--checkpoint`: a known model asset (fetched on first
/// use), a llama.cpp `.gguf` file, or a Hugging Face folder — a checkpoint, or a run folder whose
/// newest checkpoint is taken.
public enum ModelSource {
    /// Known model assets and the tokenizer each uses (a name `Tokenizers.load` knows).
    public static let known: [String: String] = ["smollm2-135m": "smollm2-135m"]

    /// Where a model lives once resolved.
    public enum Location: Sendable {
        case checkpoint(URL)
        case gguf(URL, tokenizer: String)

        /// The file or folder, for messages and JSON output.
        public var url: URL {
            switch self {
            case .checkpoint(let url), .gguf(let url, _): return url
            }
        }
    }

    /// Resolves `nameOrPath` without reading the weights (known names are fetched).
    public static func locate(_ nameOrPath: String, store: AssetStore = AssetStore(),
                              log: (String) -> Void = { _ in }) throws -> Location {
        if let tokenizer = known[nameOrPath] {
            return .gguf(try store.fetch(nameOrPath, log: log), tokenizer: tokenizer)
        }
        let url = URL(fileURLWithPath: (nameOrPath as NSString).expandingTildeInPath)
        if url.pathExtension.lowercased() == "gguf" {
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw InputError.io(file: url.path, reason: "no such file")
            }
            return .gguf(url, tokenizer: url.path)
        }
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw InputError.io(file: nameOrPath, reason: "no such checkpoint folder or .gguf file, and not a known model (known: \(known.keys.sorted().joined(separator: ", ")))")
        }
        return .checkpoint(try Checkpoint.resolve(url))
    }

    /// The model's config without its weights (a checkpoint's config.json; a GGUF's metadata).
    public static func config(at location: Location) throws -> ModelConfig {
        switch location {
        case .checkpoint(let dir):
            return try ModelConfig.load(from: dir.appendingPathComponent(Checkpoint.configFile))
        case .gguf(let url, let tokenizer):
            return try GGUFModel.config(try GGUFFile(contentsOf: url), tokenizer: tokenizer)
        }
    }

    /// Reads the model's weights.
    public static func load(_ location: Location) throws -> Transformer {
        switch location {
        case .checkpoint(let dir): return try Checkpoint.loadModel(from: dir)
        case .gguf(let url, let tokenizer): return try GGUFModel.load(from: url, tokenizer: tokenizer)
        }
    }

    /// `locate` then `load`.
    public static func load(_ nameOrPath: String, store: AssetStore = AssetStore(),
                            log: (String) -> Void = { _ in }) throws -> (location: Location, model: Transformer) {
        let location = try locate(nameOrPath, store: store, log: log)
        return (location, try load(location))
    }
}
