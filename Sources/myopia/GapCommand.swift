import ArgumentParser

struct GapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gap", abstract: "The myopia gap (in progress).")
    func run() throws { throw ValidationError("gap is not built yet") }
}
