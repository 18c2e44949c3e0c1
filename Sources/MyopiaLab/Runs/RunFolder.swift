import Foundation
import Myopia

/// What an analysis command (`horizon`, `probe`, `lens`, `generate`, `eval` with `--out RUN`)
/// leaves in a run folder beside its result file: which command made it, on which model and data,
/// with which settings. A folder may hold several results (a training run with its horizon and
/// probes), so the records live together in `commands.json`, keyed by result file name.
public struct AnalysisRecord: Codable, Equatable, Sendable {
    /// The subcommand: "horizon", "probe", …
    public var command: String
    /// The command line after `myopia`, as given.
    public var arguments: [String]
    /// The model it read (resolved: the checkpoint folder or file) and the data (resolved path), if any.
    public var model: String?
    public var data: String?
    /// The settings in force after defaults and --config, by flag name ("seq_len": "128").
    public var settings: [String: String]
    /// ISO 8601, when the result was written.
    public var created: String
    public var seconds: Double?

    public init(command: String, arguments: [String] = Array(CommandLine.arguments.dropFirst()), model: String?, data: String?,
                settings: [String: String], seconds: Double? = nil, created: Date = Date()) {
        self.command = command
        self.arguments = arguments
        self.model = model
        self.data = data
        self.settings = settings
        self.seconds = seconds
        self.created = ISO8601DateFormatter().string(from: created)
    }
}

public enum RunFolder {
    public static let recordsFile = "commands.json"

    /// Pretty, sorted keys; non-finite numbers as "inf" / "-inf" / "nan" (as `Report` reads them).
    public static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }

    public static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }

    /// Writes `result` as `folder/fileName` (atomically; the folder is created) and records how it
    /// was made in `folder/commands.json`. Returns the result file.
    @discardableResult
    public static func write<T: Encodable>(_ result: T, as fileName: String, record: AnalysisRecord, to folder: URL) throws -> URL {
        try Trainer.prepareOutput(folder)
        let file = folder.appendingPathComponent(fileName)
        try AtomicFile.write(try encoder.encode(result), to: file)
        var all = try records(in: folder)
        all[fileName] = record
        try AtomicFile.write(try encoder.encode(all), to: folder.appendingPathComponent(recordsFile))
        return file
    }

    /// The records of `folder` (empty when it has none); a damaged commands.json is a typed error.
    public static func records(in folder: URL) throws -> [String: AnalysisRecord] {
        let url = folder.appendingPathComponent(recordsFile)
        guard let data = try? Data(contentsOf: url) else { return [:] }
        do { return try decoder.decode([String: AnalysisRecord].self, from: data) } catch let error as DecodingError {
            throw InputError.decoding(error, data: data, file: url.path)
        }
    }

    /// Decodes `folder/fileName` if it exists: nil when absent, a typed error naming the file and the
    /// field when it is there but malformed.
    public static func load<T: Decodable>(_ type: T.Type, _ fileName: String, in folder: URL) throws -> T? {
        let url = folder.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        do { return try decoder.decode(T.self, from: data) } catch let error as DecodingError {
            throw InputError.decoding(error, data: data, file: url.path)
        } catch {
            throw InputError.invalidHeader(file: url.path, field: "(json)", reason: "\(error)")
        }
    }
}

/// `myopia eval --out RUN` keeps its result as `eval.json`, the figure `myopia runs` shows for a
/// training run.
extension EvaluationResult {
    public static let fileName = "eval.json"
}
