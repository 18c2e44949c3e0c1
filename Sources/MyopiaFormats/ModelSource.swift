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

    /// How a model is named to a reader: a .gguf by its file name with the quantisation apart
    /// ("SmolLM2-135M-Instruct.Q4_1.gguf" → "SmolLM2-135M-Instruct Q4_1"), so that "Instruct" and the
    /// quantisation show wherever the model is named; a checkpoint by its folder's path.
    public static func label(_ location: Location) -> String {
        switch location {
        case .checkpoint(let url): return url.path
        case .gguf(let url, _): return ggufLabel(fileName: url.lastPathComponent)
        }
    }

    /// "NAME.QUANT.gguf" or "NAME-QUANT.gguf" (llama.cpp's names: Q4_1, Q4_K_M, IQ2_XS, F16, BF16…)
    /// → "NAME QUANT"; another name without its extension.
    public static func ggufLabel(fileName: String) -> String {
        let stem = fileName.lowercased().hasSuffix(".gguf") ? String(fileName.dropLast(5)) : fileName
        func isQuantisation(_ s: Substring) -> Bool {
            s.range(of: #"^(I?Q[1-8](_[0-9A-Z]+)*|F16|F32|BF16)$"#, options: [.regularExpression, .caseInsensitive]) != nil
        }
        for separator in [".", "-"] {
            if let cut = stem.range(of: separator, options: .backwards), isQuantisation(stem[cut.upperBound...]) {
                return stem[..<cut.lowerBound] + " " + stem[cut.upperBound...].uppercased()
            }
        }
        return stem
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
