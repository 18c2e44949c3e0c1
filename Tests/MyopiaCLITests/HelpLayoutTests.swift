import Foundation
import XCTest
import MyopiaTestSupport

/// `--help` of every command, as a person reads it in an 80-column terminal. The parser wraps
/// paragraphs and option help itself; examples and tables are written as short lines. What this
/// catches is what hand-wrapped text wrapped a second time by the parser looks like: a line past
/// 80 columns, an example or a table row split in two, a paragraph broken where the line had room,
/// and a default said twice (in the help text and by the parser).
final class HelpLayoutTests: CLITestCase {
    func testEveryCommandsHelpReadsAt80Columns() throws {
        let commands = try commandPaths()
        XCTAssertGreaterThan(commands.count, 15, "found only \(commands.map { $0.path.joined(separator: " ") })")
        for command in commands {
            let name = (["myopia"] + command.path).joined(separator: " ")
            let r = try run(command.path + ["--help"], environment: ["COLUMNS": "80"])
            XCTAssertEqual(r.status, 0, "\(name) --help: \(r.stderr)")
            XCTAssertFalse(r.stdout.isEmpty, name)
            for problem in HelpLayout.problems(in: r.stdout) {
                XCTFail("\(name) --help: \(problem)")
            }
            for argument in command.required where !HelpLayout.usage(of: r.stdout).contains(argument) {
                XCTFail("\(name) --help: the usage line does not name the required \(argument)")
            }
        }
    }

    /// The checks find what the help looked like when it was wrapped twice (before it was rewritten).
    func testTheChecksCatchTwiceWrappedHelp() {
        let twiceWrapped = """
        OVERVIEW: Train a model.

        Writes checkpoint-STEP folders (Hugging Face config.json + model.safetensors,
        plus optimizer and
        trainer state) into --out.

        Example:
          myopia train --data tinyshakespeare --out runs/shakespeare --layers 4
        --d-model 128 --steps 2000
          sine/          the synthetic pre-caching task: a vanilla and a myopic model
        (p 1, f 3) against the
                         no-pre-caching floor

        USAGE: myopia eval --model <model> --data <data> --seq-len <seq-len> [--batch <batch>] [--max-windows <max-windows>]

        OPTIONS:
          --models <models>       Training configurations to step: small, gpt2-124m
                                  (default: both). (default: small, gpt2-124m)
          --sequences <sequences> Use at most this many windows (default 16).
                                  (default: 16)
          --steps <steps>         Training steps to time. (default: 5)
          -h, --help              Show help information.
        """
        let problems = HelpLayout.problems(in: twiceWrapped)
        let expected = ["line 5 ", "line 9 ", "line 11 ", "line 14 ", "--models", "--sequences"]
        for e in expected {
            XCTAssertTrue(problems.contains { $0.hasPrefix(e) || $0.contains(e) }, "no problem reported for \(e): \(problems)")
        }
        XCTAssertEqual(problems.count, expected.count, "\(problems)")
        XCTAssertEqual(HelpLayout.problems(in: """
        OVERVIEW: Train a model.

        A paragraph that the parser wrapped, long enough to need two lines at eighty
        columns.

        Examples:
          myopia train --data tinyshakespeare --out runs/shakespeare --steps 2000 \\
              --layers 4 --d-model 128

        USAGE: myopia train [<options>] --out <out>

        OPTIONS:
          --gemm/--no-gemm        Measure GEMM. (default: --gemm)
          --training/--no-training
                                  Measure the training step. (default: --training)
          --tokenizer <tokenizer> Tokenizer: byte, gpt2 or a path (default: the one the
                                  model names).
        """), [])
    }

    /// Every command and subcommand (path after `myopia`) with the required options and arguments
    /// its usage line must name, from the parser's own description of the tool.
    func commandPaths() throws -> [(path: [String], required: [String])] {
        let r = try run(["--experimental-dump-help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let root = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["command"]
            as? [String: Any])
        var out: [(path: [String], required: [String])] = []
        func walk(_ command: [String: Any], _ path: [String]) {
            var required: [String] = []
            for argument in command["arguments"] as? [[String: Any]] ?? [] where argument["isOptional"] as? Bool == false {
                let value = "<\(argument["valueName"] as? String ?? "")>"
                let long = (argument["names"] as? [[String: Any]] ?? []).first { $0["kind"] as? String == "long" }?["name"] as? String
                required.append(argument["kind"] as? String == "positional" ? value : "--\(long ?? "") \(value)")
            }
            out.append((path, required))
            for sub in command["subcommands"] as? [[String: Any]] ?? [] {
                guard let name = sub["commandName"] as? String, name != "help" else { continue }   // the parser's own
                walk(sub, path + [name])
            }
        }
        walk(root, [])
        return out
    }
}

/// The layout rules, over the text of one `--help` at 80 columns.
enum HelpLayout {
    static let columns = 80

    /// The USAGE block (its first line and the indented lines after it).
    static func usage(of help: String) -> String {
        let lines = help.components(separatedBy: "\n")
        guard let start = lines.firstIndex(where: { $0.hasPrefix("USAGE:") }) else { return "" }
        var block = [lines[start]]
        for line in lines[(start + 1)...] {
            guard line.hasPrefix(" ") else { break }
            block.append(line)
        }
        return block.joined(separator: "\n")
    }

    static func problems(in help: String) -> [String] {
        let lines = help.components(separatedBy: "\n")
        var problems: [String] = []
        for (i, line) in lines.enumerated() where line.count > columns {
            problems.append("line \(i + 1) is \(line.count) columns wide: \(line.prefix(50))…")
        }
        // The discussion: after the overview paragraph, up to the usage line. The parser wraps it
        // with no indentation, so a line it had to break continues at column 0.
        let usage = lines.firstIndex { $0.hasPrefix("USAGE:") } ?? lines.count
        let start = lines[..<usage].firstIndex { $0.trimmingCharacters(in: .whitespaces).isEmpty } ?? usage
        if start + 1 < usage {
            for i in (start + 1)..<usage {
                let above = lines[i - 1], line = lines[i]
                guard !blank(above), !blank(line) else { continue }
                let word = line.split(separator: " ").first.map(String.init) ?? ""
                // Could the parser have broken the line above here? Only if the next word did not fit.
                let full = above.count + 1 + word.count >= columns - 1
                let continued = above.hasSuffix("\\")
                if word.hasPrefix("--"), !continued, isExample(above) {
                    problems.append("line \(i + 1) continues the example above it: \(line.trimmingCharacters(in: .whitespaces))")
                } else if indent(above) >= 2, indent(line) == 0, full, !continued {
                    problems.append("line \(i + 1) continues the example or table row above it: \(line.prefix(50))")
                } else if indent(above) == 0, indent(line) == 0, !full {
                    problems.append("line \(i + 1) breaks a paragraph where the line above had room: \(line.prefix(50))")
                }
            }
        }
        // Options: an entry is a line indented two spaces and its continuation lines.
        var entries: [String] = []
        if let options = lines.firstIndex(where: { $0 == "OPTIONS:" || $0 == "ARGUMENTS:" }) {
            for line in lines[(options + 1)...] {
                if line.hasPrefix("  "), !line.hasPrefix("   ") {
                    entries.append(line)
                } else if !entries.isEmpty, !blank(line), !line.hasSuffix(":") {
                    entries[entries.count - 1] += " " + line.trimmingCharacters(in: .whitespaces)
                }
            }
        }
        for entry in entries {
            let parserDefaults = entry.components(separatedBy: "(default: ").count - 1
            let defaults = entry.lowercased().components(separatedBy: "default").count - 1
            if parserDefaults >= 2 || (parserDefaults == 1 && defaults >= 2) {
                problems.append("a default said twice: \(entry.trimmingCharacters(in: .whitespaces))")
            }
        }
        return problems
    }

    static func blank(_ line: String) -> Bool { line.trimmingCharacters(in: .whitespaces).isEmpty }

    static func indent(_ line: String) -> Int { line.prefix { $0 == " " }.count }

    /// A command line of an example: `myopia …` (or another command) indented under "Examples:".
    static func isExample(_ line: String) -> Bool {
        let text = line.trimmingCharacters(in: .whitespaces)
        return indent(line) >= 2 && !text.hasPrefix("#") && (text.hasPrefix("myopia ") || text.hasPrefix("$ "))
    }
}
