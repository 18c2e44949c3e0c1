import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

/// The version `myopia --version` prints.
let myopiaVersion = "0.9.0"

@main
struct MyopiaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "myopia",
        abstract: "Train, measure and look inside transformers trained with and without myopic gradient flow.",
        discussion: """
        Start with `myopia demo`: it fetches tiny-shakespeare, trains a small model and shows what it learned.

        Every command takes --config FILE.json whose keys are its flags (flags on the command line win), --json where it reports numbers and --quiet where it shows progress. `myopia runs` lists what the commands wrote; `myopia report RUN...` draws it in one HTML file.
        """,
        version: myopiaVersion,
        subcommands: [DemoCommand.self, ReproduceCommand.self, TrainCommand.self, EvalCommand.self, GradientsCommand.self, HorizonCommand.self, DynamicsCommand.self, UpstreamCommand.self, GapCommand.self, GamesCommand.self, BonusCommand.self,
                      SyntheticCommand.self, GenerateCommand.self, LoopsCommand.self, TokenizeCommand.self, ProbeCommand.self, LensCommand.self,
                      ConvertCommand.self, FetchCommand.self, BenchCommand.self, RunsCommand.self, ReportCommand.self])

    /// The commands that run as an MPI job, each rank taking its share (docs/distributed.md);
    /// any other started by a launcher as several ranks refuses.
    static let distributedCommands: Set<String> = ["train", "gap", "games", "synthetic", "bonus", "eval", "gradients", "horizon", "lens",
                                                   "probe", "bench"]

    /// Before parsing (ConfigFile.swift's `main`): joins the MPI job when a launcher started this process (or refuses in one
    /// line when this binary was built without MPI), and gives each rank its share of the cores.
    static func joinTheJob() {
        let environment = ProcessInfo.processInfo.environment
        if let threads = environment["MYOPIA_THREADS"] {
            guard let n = Int(threads), n > 0 else {
                Terminal.error("MYOPIA_THREADS must be a positive number of threads, not '\(threads)'")
                Foundation.exit(1)
            }
            Parallel.threadCount = n
        }
        do { try Distributed.start(environment: environment) } catch {
            Terminal.error("\(error)")
            Foundation.exit(1)
        }
        let group = Distributed.group
        guard group.size > 1 else { return }
        if environment["MYOPIA_THREADS"] == nil, let local = Distributed.localRanks(in: environment) {
            Parallel.threadCount = max(1, ProcessInfo.processInfo.activeProcessorCount / local)
        }
        if group.rank != 0 {
            Terminal.followerRank = group.rank
            // Results on stdout are rank 0's to print.
            let null = open("/dev/null", O_WRONLY)
            if null >= 0 { dup2(null, STDOUT_FILENO); close(null) }
        }
        let command = CommandLine.arguments.dropFirst().first ?? ""
        if !distributedCommands.contains(command) && !command.hasPrefix("-") {
            Terminal.error("\(DistributedError.singleProcessOnly(command: command, ranks: group.size))")
            Foundation.exit(1)
        }
    }
}

/// Runs a command body, turning Myopia's typed errors into one clear line on stderr and exit code 1,
/// and a setting that MyopiaLab refuses (FlagError) into a usage error, as a flag's own check is.
/// In an MPI job the other ranks would wait for a failed one in their next collective: after the
/// line, the whole job ends (MPI_Abort).
@discardableResult
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        let reported = report(error)
        if Distributed.group.size > 1 && !(error is Interrupted) {
            if let usage = reported as? ValidationError { Terminal.error(usage.message) }
            else if !(reported is ExitCode) { Terminal.error("\(error)") }
            Distributed.group.abort(code: 1)
        }
        throw reported
    }
}

/// Prints a typed error's line and returns what the command throws for it.
private func report(_ error: Error) -> Error {
    switch error {
    case let error as FlagError:
        return ValidationError(error.message)
    case let error as InputError:
        Terminal.error("\(error)")
        return ExitCode.failure
    case let error as TrainingError:
        Terminal.error("\(error)")
        return ExitCode.failure
    case let error as DistributedError:
        Terminal.error("\(error)")
        return ExitCode.failure
    case let stop as Interrupted:
        Terminal.interrupted(stop)
        return ExitCode(130)
    default:
        return error
    }
}

/// Encodes a result as one line of JSON on stdout.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
