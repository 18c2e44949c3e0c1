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
        subcommands: [DemoCommand.self, TrainCommand.self, EvalCommand.self, GradientsCommand.self, HorizonCommand.self, DynamicsCommand.self, UpstreamCommand.self, GapCommand.self, GamesCommand.self, BonusCommand.self,
                      SyntheticCommand.self, GenerateCommand.self, LoopsCommand.self, TokenizeCommand.self, ProbeCommand.self, LensCommand.self,
                      ConvertCommand.self, FetchCommand.self, BenchCommand.self, RunsCommand.self, ReportCommand.self])
}

/// Runs a command body, turning Myopia's typed errors into one clear line on stderr and exit code 1,
/// and a setting that MyopiaLab refuses (FlagError) into a usage error, as a flag's own check is.
@discardableResult
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as FlagError {
        throw ValidationError(error.message)
    } catch let error as InputError {
        Terminal.error("\(error)")
        throw ExitCode.failure
    } catch let error as TrainingError {
        Terminal.error("\(error)")
        throw ExitCode.failure
    } catch let stop as Interrupted {
        Terminal.interrupted(stop)
        throw ExitCode(130)
    }
}

/// Encodes a result as one line of JSON on stdout.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
