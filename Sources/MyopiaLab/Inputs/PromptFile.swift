import Foundation
import Myopia

/// The prompts of `generate --prompts FILE`: one per line, or, for a file named `*.jsonl`, one
/// JSON value per line, a string or an object with a string "prompt". Blank lines are skipped.
public enum PromptFile {
    public static func read(_ path: String) throws -> [String] {
        let url = URL(fileURLWithPath: (path as NSString).expandingTildeInPath)
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw InputError.io(file: path, reason: "cannot read the prompts (\(error.localizedDescription))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw InputError.invalidValue(file: path, field: "(contents)", expected: "UTF-8 text", found: "bytes that are not UTF-8")
        }
        let json = url.pathExtension.lowercased() == "jsonl"
        var prompts: [String] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.hasSuffix("\r") ? String(raw.dropLast()) : String(raw)
            guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            prompts.append(json ? try jsonPrompt(line, file: path, line: i + 1) : line)
        }
        guard !prompts.isEmpty else {
            throw InputError.invalidValue(file: path, field: "(contents)", expected: "at least one prompt", found: "none")
        }
        return prompts
    }

    private static func jsonPrompt(_ line: String, file: String, line number: Int) throws -> String {
        let value = try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed])
        if let s = value as? String, !s.isEmpty { return s }
        if let object = value as? [String: Any], let s = object["prompt"] as? String, !s.isEmpty { return s }
        throw InputError.invalidValue(file: file, field: "line \(number)", expected: #"a non-empty JSON string or {"prompt": "..."}"#,
                                      found: String(line.prefix(60)))
    }
}
