import Foundation
import XCTest
import MyopiaTestSupport

/// The module graph of docs/DESIGN.md §1, kept one-way: every `import` in Sources/ and every
/// target dependency in Package.swift must be an arrow the design allows. A forbidden import
/// (the model importing formats, tokenizers importing data, a library importing ArgumentParser)
/// fails here, naming the file and the line.
final class ModuleGraphTests: XCTestCase {
    /// What each target may import of this package's modules and of its dependencies; system
    /// modules (Foundation, Dispatch, the C libraries) are always allowed.
    static let allowed: [String: Set<String>] = [
        "CMyopiaKernels": [],
        "CMyopiaAllocCounter": [],
        "MyopiaKernels": ["CMyopiaKernels"],
        "MyopiaSupport": [],
        // The system MPI (a system library: pkg-config ompi-c), under the MPI trait only.
        "CMPI": [],
        "MyopiaDistributed": ["CMPI"],
        "MyopiaModel": ["MyopiaSupport", "MyopiaKernels"],
        "MyopiaAssets": ["MyopiaSupport"],
        "MyopiaFormats": ["MyopiaSupport", "MyopiaKernels", "MyopiaModel", "MyopiaAssets"],
        // The GGUF tokenizer reads its vocabulary from a container that MyopiaFormats parses.
        "MyopiaTokenizers": ["MyopiaSupport", "MyopiaAssets", "MyopiaFormats"],
        // A text corpus becomes tokens through a tokenizer.
        "MyopiaData": ["MyopiaSupport", "MyopiaModel", "MyopiaTokenizers"],
        "MyopiaTraining": ["MyopiaSupport", "MyopiaKernels", "MyopiaModel", "MyopiaFormats", "MyopiaTokenizers", "MyopiaData",
                           "MyopiaDistributed"],
        "MyopiaGeneration": ["MyopiaSupport", "MyopiaKernels", "MyopiaModel"],
        "Myopia": ["MyopiaKernels", "MyopiaSupport", "MyopiaModel", "MyopiaAssets", "MyopiaFormats", "MyopiaTokenizers",
                   "MyopiaData", "MyopiaTraining", "MyopiaGeneration", "MyopiaDistributed"],
        "MyopiaLab": ["Myopia", "MyopiaKernels", "MyopiaSupport", "MyopiaModel", "MyopiaAssets", "MyopiaFormats",
                      "MyopiaTokenizers", "MyopiaData", "MyopiaTraining", "MyopiaGeneration", "MyopiaDistributed"],
        "myopia": ["Myopia", "MyopiaLab", "MyopiaKernels", "CMyopiaAllocCounter", "ArgumentParser"],
        // Tests/MyopiaTestSupport: the test targets' shared helpers.
        "MyopiaTestSupport": ["Myopia"],
    ]
    /// Targets whose sources are not under Sources/.
    static let outsideSources: Set<String> = ["MyopiaTestSupport"]
    /// System-library targets (`.systemLibrary`, a module map over a system header): no Swift
    /// sources and no dependencies of their own.
    static let systemLibraries: Set<String> = ["CMPI"]
    static let system: Set<String> = ["Foundation", "FoundationEssentials", "Dispatch", "Glibc", "Musl", "Darwin", "Synchronization"]

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `import X`, `@testable import X`, `@_exported import X`, `import struct X.Y` → X.
    static func imports(in source: String) -> [(line: Int, module: String)] {
        var found: [(Int, String)] = []
        for (i, line) in source.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var words = line.split(separator: " ").map(String.init)
            while let first = words.first, first.hasPrefix("@") { words.removeFirst() }
            guard words.first == "import", words.count >= 2 else { continue }
            let path = words.count >= 3 && ["struct", "class", "enum", "func", "protocol", "typealias", "var", "let"].contains(words[1])
                ? words[2] : words[1]
            found.append((i + 1, String(path.split(separator: ".").first ?? "")))
        }
        return found
    }

    func testEverySourceImportIsAnAllowedArrow() throws {
        let sources = Self.packageRoot.appendingPathComponent("Sources")
        let targets = try FileManager.default.contentsOfDirectory(atPath: sources.path).filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertEqual(Set(targets), Set(Self.allowed.keys).subtracting(Self.outsideSources), "a target was added or removed: give it its arrows here and in docs/DESIGN.md §1")
        var checked = 0
        for target in targets {
            let allowed = Self.allowed[target] ?? []
            let folder = sources.appendingPathComponent(target)
            let files = FileManager.default.enumerator(atPath: folder.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
            for file in files.sorted() {
                let text = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
                for (line, module) in Self.imports(in: text) where !Self.system.contains(module) {
                    checked += 1
                    XCTAssertTrue(allowed.contains(module), "Sources/\(target)/\(file):\(line): \(target) may not import \(module) (docs/DESIGN.md §1)")
                }
            }
        }
        XCTAssertGreaterThan(checked, 50)
    }

    /// Package.swift's own dependencies follow the same arrows (a dependency the code does not
    /// import yet would still let the next change cross a layer).
    func testPackageDependenciesAreAllowedArrows() throws {
        let text = try String(contentsOf: Self.packageRoot.appendingPathComponent("Package.swift"), encoding: .utf8)
        // .target(name: "X", dependencies: [...]) and .executableTarget(...), spread over lines.
        let pattern = try NSRegularExpression(pattern: #"\.(?:target|executableTarget)\(\s*name:\s*"([^"]+)"(?:,\s*dependencies:\s*\[([^\]]*)\])?"#)
        let range = NSRange(text.startIndex..., in: text)
        var seen = 0
        for match in pattern.matches(in: text, range: range) {
            let name = String(text[Range(match.range(at: 1), in: text)!])
            let deps = match.range(at: 2).location == NSNotFound ? "" : String(text[Range(match.range(at: 2), in: text)!])
            let names = try NSRegularExpression(pattern: #""([^"]+)""#).matches(in: deps, range: NSRange(deps.startIndex..., in: deps))
                .map { String(deps[Range($0.range(at: 1), in: deps)!]) }
                .filter { $0 != "swift-argument-parser" }
            guard let allowed = Self.allowed[name] else { XCTFail("Package.swift: target \(name) has no arrows in ModuleGraphTests"); continue }
            seen += 1
            for dep in names { XCTAssertTrue(allowed.contains(dep), "Package.swift: \(name) may not depend on \(dep) (docs/DESIGN.md §1)") }
        }
        XCTAssertEqual(seen, Self.allowed.count - Self.systemLibraries.count)
        for name in Self.systemLibraries {
            XCTAssertTrue(text.contains(".systemLibrary(name: \"\(name)\""), "Package.swift: \(name) is not a system library")
        }
    }

    /// The checks themselves: they read the import forms people write, and they would catch a
    /// model file importing the formats.
    func testTheCheckSeesForbiddenImports() {
        let source = "import Foundation\n@testable import MyopiaFormats\nimport struct MyopiaData.TokenDataset\n@_exported import MyopiaKernels\n"
        XCTAssertEqual(Self.imports(in: source).map(\.module), ["Foundation", "MyopiaFormats", "MyopiaData", "MyopiaKernels"])
        let model = Self.allowed["MyopiaModel"]!
        XCTAssertFalse(model.contains("MyopiaFormats"))
        XCTAssertFalse(Self.allowed["MyopiaTokenizers"]!.contains("MyopiaData"))
        XCTAssertFalse(Self.allowed["MyopiaLab"]!.contains("ArgumentParser"))
    }
}
