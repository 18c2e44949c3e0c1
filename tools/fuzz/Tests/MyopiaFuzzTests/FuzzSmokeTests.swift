import Foundation
import XCTest
@testable import MyopiaFuzz
import Myopia

/// The short version of tools/fuzz/fuzz.sh: a few hundred fixed inputs per parser, in this process.
/// Every input must be accepted or refused with an InputError naming its file and a field, within
/// the time limit; a trap would end the test run (the driver, tested below, is what isolates those).
final class FuzzSmokeTests: XCTestCase {
    /// The repository (this file is tools/fuzz/Tests/MyopiaFuzzTests/…).
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let corpus = repository.appendingPathComponent("tools/fuzz/corpus")
    static let inputsPerTarget = 200
    static let timeLimit = 5.0

    override class func tearDown() {
        FuzzTarget.removeCompanions()
        super.tearDown()
    }

    func testEveryParserRefusesMutatedFilesWithTypedErrors() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-fuzz-smoke-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        var lines: [String] = []
        for target in FuzzTarget.all {
            let campaign = try Campaign(target: target, corpus: Self.corpus, runSeed: 0x5EED, scratch: scratch)
            XCTAssertGreaterThan(campaign.seedCount, 0, target.name)
            var tally = FuzzTally(target: target.name)
            for i in 0..<Self.inputsPerTarget {
                let (outcome, seconds) = campaign.run(i)
                tally.record(i, outcome, seconds: seconds)
                // The committed seeds are good files.
                if i < campaign.seedCount { XCTAssertEqual(outcome, .accepted, "\(target.name) seed \(i)") }
                XCTAssertLessThan(seconds, Self.timeLimit, "\(target.name) input \(i) took \(seconds) s")
            }
            XCTAssertEqual(tally.badRejections, 0, "\(target.name):\n" + tally.badExamples.joined(separator: "\n"))
            // The mutations reach the checks (a corpus is any text, so only a too-short one is refused).
            XCTAssertGreaterThan(tally.rejected, target.name == "corpus" ? 0 : Self.inputsPerTarget / 5, target.name)
            lines.append("\(target.name): \(tally.accepted) accepted, \(tally.rejected) refused (\(tally.errorKinds.count) kinds), slowest \(String(format: "%.3f", tally.slowestSeconds)) s")
        }
        print(lines.joined(separator: "\n"))
    }

    /// Headers that claim a huge model or huge arrays are refused by name before anything is
    /// sized by them: resident memory barely moves.
    func testHeadersClaimingHugeSizesAreRefusedBeforeAllocation() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-fuzz-huge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let before = residentMB()

        // config.json claiming a model far larger than its weights file.
        try Checkpoint.saveModel(Seeds.tinyGPT2(), to: dir)
        let config = dir.appendingPathComponent("config.json")
        let gpt2 = try String(contentsOf: config, encoding: .utf8)
        for (key, value, field) in [("n_layer", "1000000", "n_layer"), ("n_embd", "9223372036854775807", "n_embd"),
                                    ("n_embd", "262144", "wte.weight"), ("n_positions", "1048576", "wpe.weight")] {
            let text = gpt2.replacingOccurrences(of: #""\#(key)" : [0-9]+"#, with: "\"\(key)\" : \(value)", options: .regularExpression)
            XCTAssertNotEqual(text, gpt2, key)
            try Data(text.utf8).write(to: config)
            XCTAssertThrowsError(try Checkpoint.loadModel(from: dir), key) {
                XCTAssertEqual(($0 as? InputError)?.field, field, "\($0)")
            }
        }
        try Checkpoint.saveModel(Seeds.tinyLlama(), to: dir)
        let llama = try String(contentsOf: config, encoding: .utf8)
        let long = llama.replacingOccurrences(of: #""max_position_embeddings" : [0-9]+"#, with: "\"max_position_embeddings\" : 1048576",
                                              options: .regularExpression).replacingOccurrences(of: #""head_dim" : [0-9]+"#, with: "\"head_dim\" : 4096", options: .regularExpression)
        try Data(long.utf8).write(to: config)
        XCTAssertThrowsError(try Checkpoint.loadModel(from: dir)) { XCTAssertNotNil($0 as? InputError, "\($0)") }

        // A GGUF whose metadata claims a huge model, and one whose array counts add up past the bound.
        var gguf = Seeds.llamaGGUF(withTokenizer: false)
        let key = Array("llama.block_count".utf8)
        let at = try XCTUnwrap((0..<(gguf.count - key.count)).first { Array(gguf[$0..<($0 + key.count)]) == key }) + key.count + 4
        for (k, v) in [1_000_000, 0, 0, 0].enumerated() { _ = v; gguf[at + k] = UInt8(truncatingIfNeeded: 1_000_000 >> (8 * k)) }
        XCTAssertThrowsError(try GGUFModel.load(GGUFFile(data: Data(gguf), source: "huge.gguf"), tokenizer: nil)) {
            XCTAssertEqual(($0 as? InputError)?.field, "metadata \"llama.block_count\"", "\($0)")
        }
        var arrays = Array("GGUF".utf8) + le(3, 4) + le(0, 8) + le(1, 8) + le(1, 8) + [UInt8(ascii: "a")] + le(9, 4) + le(0, 4)
        arrays += le(UInt64(GGUFFile.maxMetadataValues + 1), 8) + [UInt8](repeating: 0, count: GGUFFile.maxMetadataValues + 1)
        XCTAssertThrowsError(try GGUFFile(data: Data(arrays), source: "arrays.gguf")) {
            XCTAssertEqual(($0 as? InputError)?.field, "metadata \"a\" array count", "\($0)")
        }
        XCTAssertLessThan(residentMB() - before, 200, "memory grew while refusing")
    }

    private func le(_ v: UInt64, _ width: Int) -> [UInt8] { (0..<width).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }

    private func residentMB() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return Double(line.split(separator: " ")[1]).map { $0 / 1024 } ?? 0
    }

    /// Inputs are a function of (seed, target, index) alone, so a finding can be replayed.
    func testInputsAreDeterministic() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-fuzz-smoke-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        for target in [FuzzTarget.named("gguf")!, FuzzTarget.named("config-json")!] {
            let a = try Campaign(target: target, corpus: Self.corpus, runSeed: 9, scratch: scratch)
            let b = try Campaign(target: target, corpus: Self.corpus, runSeed: 9, scratch: scratch)
            let c = try Campaign(target: target, corpus: Self.corpus, runSeed: 10, scratch: scratch)
            XCTAssertEqual((0..<50).map { a.input($0) }, (0..<50).map { b.input($0) })
            XCTAssertNotEqual((20..<50).map { a.input($0) }, (20..<50).map { c.input($0) })
        }
    }

    /// The committed corpus is what `myopia-fuzz seeds` makes (so it can be regenerated).
    func testCommittedCorpusMatchesTheSeedBuilder() throws {
        for target in FuzzTarget.all {
            for (name, bytes) in try Seeds.make(target.name, fixtures: Self.repository.appendingPathComponent("Tests/Fixtures")) {
                let committed = try Data(contentsOf: Self.corpus.appendingPathComponent(target.name).appendingPathComponent(name))
                XCTAssertEqual([UInt8](committed), bytes, "\(target.name)/\(name)")
            }
        }
    }

    /// The driver itself: a trap, a hang and an oversized allocation in a child process are each
    /// attributed to their input, a refusal that is not an InputError is a bad one, and the run
    /// goes on past all of them.
    func testDriverCatchesCrashesHangsAndBadRefusals() throws {
        let binary = productsDirectory.appendingPathComponent("myopia-fuzz")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("myopia-fuzz-driver-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let process = Process()
        process.executableURL = binary
        process.arguments = ["run", "--targets", "selftest", "--inputs", "5", "--timeout", "1", "--memory-mb", "2048",
                             "--corpus", out.appendingPathComponent("no-corpus").path, "--out", out.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1, output)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [[String: Any]]
        let selftest = try XCTUnwrap(summary?.first, output)
        XCTAssertEqual(selftest["inputs"] as? Int, 5, output)
        XCTAssertEqual(selftest["crashes"] as? [Int], [1, 3], output)   // the trap and the 32 TB allocation
        XCTAssertEqual(selftest["hangs"] as? [Int], [2], output)
        XCTAssertEqual(selftest["badRejections"] as? Int, 1, output)
        for finding in ["crashes/selftest-1.bin", "crashes/selftest-3.bin", "hangs/selftest-2.bin", "bad/selftest-4.bin"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(finding).path), finding)
        }
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("crashes/selftest-1.bin"), encoding: .utf8), "CRASH")
    }

    var productsDirectory: URL {
        #if os(macOS)
        return Bundle.allBundles.first { $0.bundlePath.hasSuffix(".xctest") }!.bundleURL.deletingLastPathComponent()
        #else
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        #endif
    }
}
