import Foundation
import XCTest
import MyopiaTestSupport

/// Ctrl-C (SIGINT) loses no work: the command finishes the step, saves a checkpoint, says where
/// and what finished, and exits 130; `--resume` then continues bit for bit. And work is not wasted:
/// an unwritable --out is refused before anything is computed, `--resume` needs a checkpoint and
/// `--steps 0` is refused before a folder is made.
final class InterruptCLITests: CLITestCase {
    func corpus(in dir: URL) throws -> URL {
        let url = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "now is the winter of our discontent made glorious summer by this sun of york. ", count: 40).utf8)
            .write(to: url)
        return url
    }

    func loggedSteps(_ run: URL) -> Int {
        let text = (try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").count
    }

    func trainArguments(_ corpus: URL, _ out: URL, steps: Int) -> [String] {
        ["train", "--data", corpus.path, "--out", out.path, "--layers", "2", "--heads", "2", "--d-model", "32", "--seq-len", "16",
         "--batch", "4", "--steps", "\(steps)", "--warmup", "2", "--lr", "0.003", "--log-every", "1", "--eval-every", "1000",
         "--eval-windows", "2"]
    }

    func testCtrlCDuringTrainSavesACheckpointThatResumesBitForBit() throws {
        let dir = try temporaryDirectory()
        let text = try corpus(in: dir)
        let steps = 400
        let reference = dir.appendingPathComponent("reference")
        let straight = try run(trainArguments(text, reference, steps: steps) + ["--quiet"])
        XCTAssertEqual(straight.status, 0, straight.stderr)

        let stopped = dir.appendingPathComponent("stopped")
        let r = try interrupt(trainArguments(text, stopped, steps: steps)) { loggedSteps(stopped) >= 3 }
        XCTAssertEqual(r.status, 130, r.stderr)
        let saved = try FileManager.default.contentsOfDirectory(atPath: stopped.path)
            .compactMap { $0.hasPrefix("checkpoint-") ? Int($0.dropFirst("checkpoint-".count)) : nil }
        let step = try XCTUnwrap(saved.max(), "no checkpoint after Ctrl-C: \(r.stderr)")
        XCTAssertLessThan(step, steps, "the run finished before the interrupt")
        XCTAssertGreaterThanOrEqual(step, 3)
        XCTAssertTrue(r.stderr.contains("interrupted: stopped after step \(step) of \(steps); checkpoint saved in "
                                        + stopped.appendingPathComponent("checkpoint-\(step)").path), r.stderr)
        XCTAssertTrue(r.stderr.contains("--resume"), r.stderr)

        let resumed = try run(trainArguments(text, stopped, steps: steps) + ["--resume", "--quiet"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        for file in ["model.safetensors", "optimizer.safetensors", "trainer_state.json"] {
            XCTAssertEqual(try Data(contentsOf: stopped.appendingPathComponent("checkpoint-\(steps)/\(file)")),
                           try Data(contentsOf: reference.appendingPathComponent("checkpoint-\(steps)/\(file)")), file)
        }
    }

    /// A second Ctrl-C does not wait for the step: a model whose step takes a good fraction of a
    /// second gets two signals 20 ms apart, and exits 130 without finishing the step (no "stopped
    /// after step" line, no new checkpoint).
    func testSecondCtrlCExitsAtOnce() throws {
        let dir = try temporaryDirectory()
        let text = try corpus(in: dir)
        let out = dir.appendingPathComponent("run")
        let process = Process()
        process.executableURL = myopiaBinary
        process.arguments = ["train", "--data", text.path, "--out", out.path, "--layers", "4", "--heads", "4", "--d-model", "256",
                             "--seq-len", "256", "--batch", "8", "--steps", "1000", "--log-every", "1", "--eval-every", "1000"]
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        var waited = 0
        while loggedSteps(out) < 1 && process.isRunning && waited < 120_000 {
            usleep(5_000)
            waited += 5
        }
        XCTAssertTrue(process.isRunning)
        kill(process.processIdentifier, SIGINT)
        usleep(20_000)
        kill(process.processIdentifier, SIGINT)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 130, stderr)
        XCTAssertTrue(stderr.contains("Ctrl-C again to quit at once"), stderr)
        XCTAssertFalse(stderr.contains("stopped after step"), stderr)
        let saved = ((try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []).filter { $0.hasPrefix("checkpoint-") }
        XCTAssertEqual(saved, [], "the step was finished and saved")
    }

    /// In a study of several runs, Ctrl-C checkpoints the run in progress and says which finished;
    /// `--resume` completes the study.
    func testCtrlCDuringGapSaysWhatFinishedAndResumes() throws {
        let dir = try temporaryDirectory()
        let text = try corpus(in: dir)
        let out = dir.appendingPathComponent("gap")
        let args = ["gap", "--data", text.path, "--out", out.path, "--seeds", "1", "--layers", "1", "--heads", "2", "--d-model", "16",
                    "--seq-len", "16", "--batch", "4", "--steps", "300", "--log-every", "1", "--eval-every", "1000", "--eval-windows", "2"]
        let myopic = out.appendingPathComponent("myopic-seed1")
        let r = try interrupt(args) { loggedSteps(myopic) >= 2 }
        XCTAssertEqual(r.status, 130, r.stderr)
        XCTAssertTrue(r.stderr.contains("interrupted: myopic seed 1: stopped after step "), r.stderr)
        XCTAssertTrue(r.stderr.contains("checkpoint saved in \(myopic.path)/checkpoint-"), r.stderr)
        XCTAssertTrue(r.stderr.contains("finished: vanilla seed 1; not finished: myopic seed 1"), r.stderr)
        let resumed = try run(args + ["--resume", "--json"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("gap.json").path))
    }

    /// Every command with --out checks it can write there before it works: the model named does
    /// not exist, and the error is about --out. (Run as root, so "cannot write" is a path under a
    /// file, and /proc/self, a folder no one can write in.)
    func testEveryOutIsCheckedBeforeWork() throws {
        let dir = try temporaryDirectory()
        let file = dir.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        let text = try corpus(in: dir)
        let model = "/nonexistent/model"
        for bad in [file.appendingPathComponent("out").path, "/proc/self"] {
            let commands: [[String]] = [
                ["eval", "--model", model, "--data", text.path, "--seq-len", "8", "--out", bad],
                ["horizon", "--model", model, "--data", text.path, "--seq-len", "8", "--out", bad],
                ["probe", "--model", model, "--data", text.path, "--seq-len", "8", "--out", bad],
                ["lens", "--model", model, "--data", text.path, "--seq-len", "8", "--out", bad],
                ["generate", "--model", model, "--prompt", "x", "--out", bad],
                ["upstream", "--model", model, "--data", text.path, "--seq-len", "8", "--out", bad],
                ["gradients", "--model", model, "--data", text.path, "--seq-len", "8", "--out", bad + "/g.safetensors"],
                ["train", "--data", "/nonexistent/corpus.txt", "--out", bad],
                ["gap", "--data", "/nonexistent/corpus.txt", "--out", bad],
                ["bonus", "--reference", model, "--data", "/nonexistent/corpus.txt", "--out", bad],
                ["games", "--data", "/nonexistent/corpus.txt", "--out", bad],
                ["synthetic", "sine", "--steps", "2", "--out", bad],
                ["synthetic", "recall", "--steps", "2", "--out", bad],
                ["demo", "--quick", "--offline", "--out", bad],
                ["report", dir.path, "--out", bad + "/report.html"],
            ]
            for args in commands {
                let r = try run(args)
                XCTAssertNotEqual(r.status, 0, "\(args)")
                XCTAssertTrue(r.stderr.hasPrefix("error: "), "\(args): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains(bad.hasPrefix("/proc") ? "cannot write" : "cannot create"), "\(args): \(r.stderr)")
                XCTAssertFalse(r.stderr.contains("/nonexistent"), "\(args): worked before checking --out: \(r.stderr)")
            }
        }
    }

    func testResumeNeedsACheckpointAndZeroStepsIsRefused() throws {
        let dir = try temporaryDirectory()
        let text = try corpus(in: dir)
        let out = dir.appendingPathComponent("run")
        let zero = try run(trainArguments(text, out, steps: 0))
        XCTAssertEqual(zero.status, 1, zero.stderr)
        XCTAssertTrue(zero.stderr.contains("steps") && zero.stderr.contains("at least 1"), zero.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "--steps 0 made a folder")

        let nothing = try run(trainArguments(text, out, steps: 4) + ["--resume"])
        XCTAssertEqual(nothing.status, 1, nothing.stderr)
        XCTAssertTrue(nothing.stderr.contains("--resume: no checkpoint-STEP folder"), nothing.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "--resume with nothing to resume made a folder")
    }
}
