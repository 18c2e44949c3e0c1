import Foundation
import XCTest

/// The built `myopia` beside the test bundle (on Linux the bundle is the runner itself).
public var myopiaBinary: URL {
    #if os(macOS)
    let bundle = Bundle.allBundles.first { $0.bundlePath.hasSuffix(".xctest") }!.bundleURL
    return bundle.deletingLastPathComponent().appendingPathComponent("myopia")
    #else
    return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("myopia")
    #endif
}

/// What a run of `myopia` printed and returned.
public struct CLIResult { public let status: Int32; public let stdout: String; public let stderr: String }

/// Runs the built `myopia` with `arguments`; `environment` is added to this process's own.
public func runMyopia(_ arguments: [String], environment: [String: String] = [:]) throws -> CLIResult {
    let process = Process()
    process.executableURL = myopiaBinary
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CLIResult(status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                     stderr: String(decoding: e, as: UTF8.self))
}

/// A test case that runs the built `myopia`: its results, a temporary folder removed after the
/// test, the committed fixtures, and the JSON a command printed.
open class CLITestCase: XCTestCase {
    public typealias Result = CLIResult

    /// Where the committed reference fixtures live (Tests/Fixtures).
    public let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    public func run(_ arguments: [String], environment: [String: String] = [:]) throws -> CLIResult {
        try runMyopia(arguments, environment: environment)
    }

    public func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Starts `myopia arguments`, waits until `ready()` holds (polling every 5 ms, at most 120 s),
    /// sends SIGINT (Ctrl-C) and returns the exit status and stderr.
    public func interrupt(_ arguments: [String], when ready: () -> Bool) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = myopiaBinary
        process.arguments = arguments
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        var waited = 0
        while !ready() && process.isRunning && waited < 120_000 {
            usleep(5_000)
            waited += 5
        }
        XCTAssertTrue(process.isRunning, "the command ended before it was interrupted")
        kill(process.processIdentifier, SIGINT)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, stderr)
    }

    /// The JSON object a successful run printed on stdout.
    public func json(_ r: CLIResult, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout,
                             file: file, line: line)
    }
}
