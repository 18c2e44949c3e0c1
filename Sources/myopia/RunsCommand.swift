import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct RunsCommand: ConfigFileCommand {
    static let configExample = #"{"depth": 2}"#
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "List the run folders under a directory with their key figures.",
        discussion: """
        Finds training runs (run_config.json + metrics.jsonl; the validation loss is eval.json's when the run has one, else the last logged), gap studies (gap.json: the vanilla loss and the gap myopic − vanilla with its spread over seeds), demos (summary.json), and the results that `horizon`, `probe`, `lens`, `generate` and `eval` write with --out (one key figure each), up to --depth levels down.

        Examples:
          myopia runs
          myopia runs runs/gap --json
        """)

    @Argument(help: "The folder to search.") var folder = "runs"
    @Option(help: "How many levels below the folder to look.") var depth = 3
    @Flag(help: "Print one JSON array.") var json = false
    @OptionGroup var configFile: ConfigFileOption<RunsCommand>

    func validate() throws {
        guard depth >= 0 else { throw ValidationError("--depth must be zero or more") }
    }

    func run() throws {
        try reportingErrors {
            let entries = try Runs.list(URL(fileURLWithPath: folder), maxDepth: depth)
            if json { return try printJSON(entries) }
            if entries.isEmpty {
                print("no runs under \(folder)")
            } else {
                print(Runs.format(entries))
            }
        }
    }
}
