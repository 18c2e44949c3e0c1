import ArgumentParser
import Foundation
import Myopia

// `--config FILE.json` for every command: a JSON object whose keys are the command's flags
// ("seq_len" or "seq-len" for --seq-len) is expanded into `--key value` arguments placed before the
// command line's own, so a flag given on the command line wins (the parser keeps an option's last
// value). `true` turns a flag on, `false` leaves it off (or gives --no-KEY where the flag has one),
// an array repeats a repeatable option. A key the command has no flag for is refused in one line
// naming the file and the key. `train`, `gap` and `bonus` read their --config themselves, as a
// training configuration (TrainConfig), and are left alone.

/// A command whose `--config` is expanded into its flags before parsing.
protocol ConfigFileCommand: ParsableCommand {
    /// The example in the help of its `--config`: a key that is one of its flags.
    static var configExample: String { get }
}

extension ConfigFileCommand {
    static var configExample: String { #"{"seq_len": 128}"# }
}

/// The `--config` option of a ConfigFileCommand, for its help (the file is read before parsing).
struct ConfigFileOption<Command: ConfigFileCommand>: ParsableArguments {
    @Option(help: ArgumentHelp("A JSON file of settings whose keys are this command's flags, e.g. \(Command.configExample); flags on the command line win."))
    var config: String?
}

enum ConfigFile {
    /// `arguments` (after `myopia`) with the --config file of a ConfigFileCommand expanded.
    static func expand(_ arguments: [String], root: ParsableCommand.Type) throws -> [String] {
        // The subcommand path: leading words that name subcommands.
        var command: ParsableCommand.Type = root, depth = 0
        while depth < arguments.count,
              let sub = command.configuration.subcommands.first(where: { $0.configuration.commandName == arguments[depth] }) {
            command = sub
            depth += 1
        }
        guard command is ConfigFileCommand.Type else { return arguments }
        var rest = Array(arguments[depth...]), file: String?
        if let i = rest.firstIndex(of: "--config"), i + 1 < rest.count {
            file = rest[i + 1]
        } else if let arg = rest.first(where: { $0.hasPrefix("--config=") }) {
            file = String(arg.dropFirst("--config=".count))
            rest.removeAll { $0 == arg }
            rest += ["--config", file!]
        }
        guard let file else { return arguments }
        let expanded = try flags(from: file, for: command)
        return Array(arguments[..<depth]) + expanded + rest
    }

    /// The `--key value` arguments that `file` stands for, checked against `command`'s flags.
    static func flags(from file: String, for command: ParsableCommand.Type) throws -> [String] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: (file as NSString).expandingTildeInPath)) } catch {
            throw InputError.io(file: file, reason: "cannot read the config file: \(error.localizedDescription)")
        }
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw InputError.invalidValue(file: file, field: "(top level)", expected: "a JSON object of flag names and values", found: "another JSON value")
            }
            object = parsed
        } catch let error as InputError { throw error } catch {
            throw InputError.invalidHeader(file: file, field: "(json)", reason: "not valid JSON: \(error.localizedDescription)")
        }
        let known = try arguments(of: command)
        let name = command.configuration.commandName ?? "this command"
        var out: [String] = []
        for key in object.keys.sorted() {
            let flag = key.replacingOccurrences(of: "_", with: "-")
            guard flag != "config" else {
                throw InputError.invalidValue(file: file, field: key, expected: "a flag of `myopia \(name)`", found: "config (a config file cannot name another)")
            }
            guard let argument = known[flag] else {
                throw InputError.invalidValue(file: file, field: key, expected: "a flag of `myopia \(name)` (see --help)", found: "no flag --\(flag)")
            }
            let value = object[key]!
            if argument.isFlag {
                guard let on = value as? Bool else {
                    throw InputError.invalidValue(file: file, field: key, expected: "true or false (--\(flag) is a flag)", found: "\(value)")
                }
                if on { out.append("--\(flag)") } else if known["no-\(flag)"] != nil { out.append("--no-\(flag)") }
                continue
            }
            let values: [Any]
            if let list = value as? [Any] {
                guard argument.isRepeating else {
                    throw InputError.invalidValue(file: file, field: key, expected: "one value (--\(flag) takes one)", found: "a list")
                }
                values = list
            } else {
                values = [value]
            }
            for v in values {
                out.append("--\(flag)=" + (try text(v, file: file, key: key)))   // = form: a value may start with "-"
            }
        }
        return out
    }

    static func text(_ value: Any, file: String, key: String) throws -> String {
        switch value {
        case let s as String: return s
        case let n as NSNumber where String(cString: n.objCType) != "c": return n.stringValue   // "c": a JSON true/false
        default:
            throw InputError.invalidValue(file: file, field: key, expected: "a string or a number", found: "\(value)")
        }
    }

    struct Argument { var isFlag: Bool; var isRepeating: Bool }

    /// The long names of `command`'s options and flags, from swift-argument-parser's description of it.
    static func arguments(of command: ParsableCommand.Type) throws -> [String: Argument] {
        guard let info = try JSONSerialization.jsonObject(with: Data(command._dumpHelp().utf8)) as? [String: Any],
              let described = info["command"] as? [String: Any] else { return [:] }
        var out: [String: Argument] = [:]
        for argument in described["arguments"] as? [[String: Any]] ?? [] {
            let kind = argument["kind"] as? String
            guard kind == "option" || kind == "flag" else { continue }
            for name in argument["names"] as? [[String: Any]] ?? [] where name["kind"] as? String == "long" {
                if let long = name["name"] as? String {
                    out[long] = Argument(isFlag: kind == "flag", isRepeating: argument["isRepeating"] as? Bool ?? false)
                }
            }
        }
        return out
    }
}

extension MyopiaCommand {
    /// Parses the command line (with any --config file expanded) and runs the command. Every error
    /// is one `error: …` line on stderr; a mistake in the command line adds the usage of the command
    /// it was for, an error while the command runs adds nothing (not the tool's generic usage).
    /// A MYOPIA_KERNEL this CPU cannot run is refused first, in one line naming the missing feature
    /// (GEMM itself would fall back rather than execute an illegal instruction). Then, started by an
    /// MPI launcher, the process joins the job (or refuses: `joinTheJob`).
    static func main() {
        do {
            try GEMM.checkEnvironment()
        } catch {
            Terminal.error("\(error)")
            Foundation.exit(1)
        }
        joinTheJob()
        let arguments: [String]
        do {
            arguments = try ConfigFile.expand(Array(CommandLine.arguments.dropFirst()), root: MyopiaCommand.self)
        } catch {
            Terminal.error("\(error)")
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        var command: ParsableCommand
        do { command = try parseAsRoot(arguments) } catch { fail(error, withUsage: true) }
        do { try command.run() } catch { fail(error, withUsage: false) }
    }

    /// Prints what `error` says (help and --version on stdout) and exits with its code.
    static func fail(_ error: Error, withUsage: Bool) -> Never {
        let code = exitCode(for: error)
        if code == .success {
            print(fullMessage(for: error))
            Foundation.exit(0)
        }
        let text = withUsage ? fullMessage(for: error) : message(for: error)
        if !text.isEmpty { Terminal.error(errorText(text)) }
        Foundation.exit(code.rawValue)
    }

    /// `text` with the parser's "Error: " as "error: " (Terminal.error adds it back).
    static func errorText(_ text: String) -> String {
        text.hasPrefix("Error: ") ? String(text.dropFirst("Error: ".count)) : text
    }
}
