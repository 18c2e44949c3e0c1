import ArgumentParser

struct SyntheticRecallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "recall", abstract: "Delayed recall (in progress).")
    func run() throws { throw ValidationError("synthetic recall is not built yet") }
}

struct SyntheticTableSumCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "table-sum", abstract: "Table sum (in progress).")
    func run() throws { throw ValidationError("synthetic table-sum is not built yet") }
}
