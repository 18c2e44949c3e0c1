import Foundation
import XCTest
import MyopiaTestSupport
import MyopiaDistributed

/// A binary built without MPI (the default build) that an MPI launcher starts refuses in one line
/// that says how to build with MPI, before it reads a flag or writes a file; --shards reaches the
/// run's recorded settings. (The MPI runs themselves: tools/ci/mpi-test.sh, under mpirun.)
final class DistributedCLITests: CLITestCase {
    func testALauncherStartingABinaryWithoutMPIIsRefusedInOneLine() throws {
        try XCTSkipIf(Distributed.isBuiltWithMPI, "this build links MPI: the launcher's variables start a job")
        let folder = try temporaryDirectory()
        for variable in Distributed.launcherVariables {
            let out = folder.appendingPathComponent(variable)
            let r = try run(["train", "--data", "tinyshakespeare", "--out", out.path, "--steps", "1"], environment: [variable: "2"])
            XCTAssertEqual(r.status, 1, r.stderr)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(variable) && r.stderr.contains("swift build -c release --traits MPI"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "\(variable): the run folder was created")
        }
    }

    /// The gradient exchange's variables: read as MiB and 0/1, refused in one line naming the variable.
    func testExchangeVariablesAreReadAndBadValuesRefused() throws {
        XCTAssertEqual(try Distributed.Exchange(environment: [:]), .standard)
        let set = try Distributed.Exchange(environment: ["MYOPIA_BUCKET_MB": "0.5", "MYOPIA_OVERLAP": "0"])
        XCTAssertEqual(set, Distributed.Exchange(bucketFloats: 131_072, overlap: false))
        XCTAssertEqual(try Distributed.Exchange(environment: ["MYOPIA_OVERLAP": "1"]).overlap, true)
        for (name, value) in [("MYOPIA_BUCKET_MB", "0"), ("MYOPIA_BUCKET_MB", "-3"), ("MYOPIA_BUCKET_MB", "lots"),
                              ("MYOPIA_BUCKET_MB", "nan"), ("MYOPIA_OVERLAP", "yes")] {
            XCTAssertThrowsError(try Distributed.Exchange(environment: [name: value])) {
                XCTAssertTrue("\($0)".contains(name) && "\($0)".contains(value), "\($0)")
            }
            let r = try run(["eval", "--help"], environment: [name: value])
            XCTAssertEqual(r.status, 1, "\(name)=\(value)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(name), r.stderr)
        }
    }

    func testShardsAreRecordedAndMustDivideTheBatch() throws {
        let folder = try temporaryDirectory()
        let text = folder.appendingPathComponent("text.txt")
        try String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 30).write(to: text, atomically: true, encoding: .utf8)
        let out = folder.appendingPathComponent("run")
        let flags = ["train", "--data", text.path, "--out", out.path, "--steps", "2", "--layers", "1", "--d-model", "16",
                     "--heads", "2", "--seq-len", "8", "--batch", "4", "--eval-windows", "2", "--quiet"]
        let ok = try run(flags + ["--shards", "2"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let recorded = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("run_config.json"))) as? [String: Any]
        XCTAssertEqual(recorded?["shards"] as? Int, 2)
        let refused = try run(flags + ["--shards", "3"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("shards") && refused.stderr.contains("divisor of batch (4)"), refused.stderr)
    }

    /// `synthetic` takes --shards too: recorded in results.json (token tasks) and run_config.json (sine).
    func testSyntheticRecordsShardsAndRefusesOneThatDoesNotDivideTheBatch() throws {
        let folder = try temporaryDirectory()
        let small = ["--layers", "1", "--heads", "2", "--d-model", "16", "--batch", "4", "--steps", "2", "--quiet"]
        let recall = ["synthetic", "recall", "--seq-len", "16", "--names", "4", "--fillers", "4", "--cues", "2", "--eval-episodes", "4",
                      "--flow", "vanilla", "--game", "scheduled-sampling", "--out", folder.appendingPathComponent("recall").path] + small
        let sine = ["synthetic", "sine", "--window", "3", "--seq-len", "8", "--val-sequences", "4",
                    "--out", folder.appendingPathComponent("sine").path] + small
        for (flags, file) in [(recall, "recall/results.json"), (sine, "sine/run_config.json")] {
            let ok = try run(flags + ["--shards", "2"])
            XCTAssertEqual(ok.status, 0, ok.stderr)
            let recorded = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent(file))) as? [String: Any]
            let settings = (recorded?["settings"] as? [String: Any]) ?? recorded
            XCTAssertEqual(settings?["shards"] as? Int, 2, file)
            let refused = try run(flags + ["--shards", "3"])
            XCTAssertEqual(refused.status, 1)
            XCTAssertTrue(refused.stderr.contains("shards") && refused.stderr.contains("divisor of batch (4)"), refused.stderr)
        }
    }
}
