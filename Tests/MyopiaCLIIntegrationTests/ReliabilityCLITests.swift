import Foundation
import XCTest
import MyopiaTestSupport

/// docs/DESIGN.md §8 through the command line: `myopia train` killed (SIGKILL) at random moments, many of
/// them in the middle of a save, always leaves a newest checkpoint that loads, and `--resume`
/// carries the run to the same final weights as a run never interrupted; a NaN stops the run
/// with one line and a non-zero exit; impossible settings are refused in one line before work.
final class ReliabilityCLITests: CLITestCase {
    func corpus(in dir: URL) throws -> URL {
        let url = dir.appendingPathComponent("corpus.txt")
        try Data(String(repeating: "now is the winter of our discontent made glorious summer by this sun of york. ", count: 40).utf8)
            .write(to: url)
        return url
    }

    /// A model whose save (1.5 MB of weights and moments, each file fsync'd) takes longer than a
    /// step, so that random kills often land inside a save.
    func trainArguments(corpus: URL, out: URL, steps: Int) -> [String] {
        ["train", "--data", corpus.path, "--out", out.path, "--layers", "2", "--heads", "2", "--d-model", "64", "--seq-len", "16",
         "--batch", "2", "--steps", "\(steps)", "--warmup", "2", "--lr", "0.003", "--log-every", "1", "--eval-every", "1000",
         "--eval-windows", "2", "--checkpoint-every", "1", "--quiet"]
    }

    func metricsLosses(_ run: URL) throws -> [Int: Double] {
        var out: [Int: Double] = [:]
        for line in try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n") {
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let step = try XCTUnwrap(object["step"] as? Int)
            XCTAssertNil(out[step], "step \(step) logged twice")
            out[step] = try XCTUnwrap(object["train_loss"] as? Double)
        }
        return out
    }

    func testKilledAtRandomMomentsTheNewestCheckpointLoadsAndResumeIsExact() throws {
        let dir = try temporaryDirectory()
        let text = try corpus(in: dir)
        let steps = 40
        let reference = dir.appendingPathComponent("reference")
        let started = Date()
        let straight = try run(trainArguments(corpus: text, out: reference, steps: steps))
        XCTAssertEqual(straight.status, 0, straight.stderr)
        // Kills fall within the first quarter of a whole run's time, so each attempt gets a little
        // further and there are many kills whatever the speed of the machine.
        let whole = Date().timeIntervalSince(started)

        let killed = dir.appendingPathComponent("killed")
        var rng = SystemRandomNumberGeneratorSeeded(seed: 2024)
        var kills = 0, midSave = 0, loadsChecked = 0
        var lastStep = 0
        while kills < 30 {
            let process = Process()
            process.executableURL = myopiaBinary
            // --resume once there is a checkpoint to continue from (before that, a new run).
            let resumable = (try? FileManager.default.contentsOfDirectory(atPath: killed.path))?.contains { $0.hasPrefix("checkpoint-") } ?? false
            process.arguments = trainArguments(corpus: text, out: killed, steps: steps) + (resumable ? ["--resume"] : [])
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(UInt32(whole * 1e6 * (0.02 + 0.23 * Double(rng.next() % 1000) / 1000)))
            guard process.isRunning else {
                process.waitUntilExit()
                XCTAssertEqual(process.terminationStatus, 0)
                break
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            // `isRunning` is updated asynchronously: a run that finished just before the kill
            // reads as running, and the kill then finds it already gone.
            if process.terminationReason == .exit {
                XCTAssertEqual(process.terminationStatus, 0, "after \(kills) kills the resumed run failed")
                break
            }
            kills += 1

            let names = (try? FileManager.default.contentsOfDirectory(atPath: killed.path)) ?? []
            let partial = names.filter { $0.hasPrefix(".checkpoint-") }
            let temporary = names.filter { $0.contains(".tmp-") }
                + partial.flatMap { (try? FileManager.default.contentsOfDirectory(atPath: killed.appendingPathComponent($0).path)) ?? [] }
            if !partial.isEmpty || !temporary.isEmpty { midSave += 1 }

            // The newest complete checkpoint loads (eval verifies its checksums and reads it).
            let checkpoints = names.compactMap { $0.hasPrefix("checkpoint-") ? Int($0.dropFirst("checkpoint-".count)) : nil }
            guard let newest = checkpoints.max() else { continue }
            XCTAssertGreaterThanOrEqual(newest, lastStep, "the newest checkpoint went back")
            lastStep = newest
            let eval = try run(["eval", "--checkpoint", killed.path, "--data", text.path, "--seq-len", "16", "--json"])
            XCTAssertEqual(eval.status, 0, "after kill \(kills), checkpoint-\(newest): \(eval.stderr)")
            loadsChecked += 1
        }
        print("\(kills) kills, \(midSave) of them in the middle of a save; the newest checkpoint loaded after \(loadsChecked)")
        XCTAssertGreaterThanOrEqual(kills, 4)
        XCTAssertGreaterThan(midSave, 0, "no kill landed inside a save")

        let finish = try run(trainArguments(corpus: text, out: killed, steps: steps) + ["--resume"])
        XCTAssertEqual(finish.status, 0, finish.stderr)
        for file in ["model.safetensors", "optimizer.safetensors", "trainer_state.json"] {
            XCTAssertEqual(try Data(contentsOf: killed.appendingPathComponent("checkpoint-\(steps)/\(file)")),
                           try Data(contentsOf: reference.appendingPathComponent("checkpoint-\(steps)/\(file)")), file)
        }
        XCTAssertEqual(try metricsLosses(killed), try metricsLosses(reference))
    }

    func testNonFiniteLossStopsWithOneLineAndKeepsTheLastCheckpoint() throws {
        let dir = try temporaryDirectory()
        let out = dir.appendingPathComponent("run")
        let r = try run(["train", "--data", try corpus(in: dir).path, "--out", out.path, "--layers", "1", "--heads", "2",
                             "--d-model", "16", "--seq-len", "16", "--batch", "2", "--steps", "20", "--lr", "1e30", "--min-lr", "1e29",
                             "--warmup", "0", "--clip", "1e30", "--checkpoint-every", "1", "--quiet"])
        XCTAssertEqual(r.status, 1, r.stderr)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.stderr)
        let line = String(lines.first ?? "")
        XCTAssertTrue(line.contains("training stopped at step") && line.contains("is not finite") && line.contains("last good checkpoint"), line)
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path)
        let saved = names.compactMap { $0.hasPrefix("checkpoint-") ? Int($0.dropFirst("checkpoint-".count)) : nil }
        let newest = try XCTUnwrap(saved.max())
        XCTAssertTrue(line.contains("checkpoint-\(newest)"), line)
        XCTAssertTrue(line.contains("step \(newest + 1):"), line)
    }

    /// Each is refused with one line naming the setting, before the data is read (the data path
    /// does not exist) and before --out is created.
    func testImpossibleSettingsAreRefusedInOneLineBeforeWork() throws {
        let dir = try temporaryDirectory()
        let file = dir.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        let out = dir.appendingPathComponent("run").path
        let cases: [(args: [String], mentions: String)] = [
            (["--heads", "3", "--d-model", "32"], "heads"),
            (["--batch", "0"], "batch"),
            (["--lr", "-1"], "lr"),
            (["--lr=-0.5"], "lr"),
            (["--seq-len", "0"], "seq_len"),
            (["--steps", "-5"], "steps"),
            (["--min-lr", "0.5", "--lr", "0.1"], "min_lr"),
            (["--family", "llama", "--heads", "4", "--kv-heads", "3"], "kv_heads"),
            (["--layers", "0"], "layers"),
            (["--d-model", "4194304"], "d_model"),
            (["--layers", "2000", "--d-model", "65536", "--heads", "16"], "memory"),
        ]
        for (args, mentions) in cases {
            let r = try run(["train", "--data", "/nonexistent/corpus.txt", "--out", out] + args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(mentions), "\(args): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("/nonexistent"), "\(args): the data was read first: \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(args): --out was created")
        }
        // An unwritable --out (here: under a file) is refused before the data is read.
        for bad in [file.path, file.appendingPathComponent("run").path] {
            let r = try run(["train", "--data", "/nonexistent/corpus.txt", "--out", bad])
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(bad) && !r.stderr.contains("/nonexistent"), r.stderr)
        }
        // A context longer than the model's positions.
        let text = try corpus(in: dir)
        let trained = try run(["train", "--data", text.path, "--out", out, "--layers", "1", "--heads", "2", "--d-model", "16",
                                   "--seq-len", "8", "--batch", "2", "--steps", "2", "--quiet"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let long = try run(["eval", "--checkpoint", out, "--data", text.path, "--seq-len", "64"])
        XCTAssertNotEqual(long.status, 0)
        XCTAssertTrue(long.stderr.contains("seq-len") && long.stderr.contains("positions"), long.stderr)
        // Resuming with another shape.
        let resume = try run(["train", "--data", text.path, "--out", out, "--layers", "1", "--heads", "2", "--d-model", "16",
                                  "--seq-len", "12", "--batch", "2", "--steps", "4", "--resume"])
        XCTAssertEqual(resume.status, 1, resume.stderr)
        XCTAssertEqual(resume.stderr.split(separator: "\n").count, 1, resume.stderr)
        XCTAssertTrue(resume.stderr.contains("cannot resume: seq_len was 8 in the saved run, 12 now"), resume.stderr)
    }
}

/// A small seeded generator (the kill times are the same on every run of the test).
struct SystemRandomNumberGeneratorSeeded {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
