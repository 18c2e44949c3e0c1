import ArgumentParser

struct SyntheticCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synthetic",
        abstract: "Tasks that tell pre-caching from breadcrumbs: train vanilla and myopic models on them.",
        subcommands: [SyntheticSineCommand.self, SyntheticRecallCommand.self, SyntheticTableSumCommand.self])
}
