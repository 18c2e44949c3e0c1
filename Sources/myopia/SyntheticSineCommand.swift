import ArgumentParser

struct SyntheticSineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sine", abstract: "The synthetic pre-caching task (in progress).")
    func run() throws { throw ValidationError("synthetic sine is not built yet") }
}
