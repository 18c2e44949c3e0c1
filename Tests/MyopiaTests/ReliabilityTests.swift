import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaSupport
@testable import MyopiaTraining

/// docs/DESIGN.md §8 for training runs: exact resume from any step, checkpoints that verify their own
/// checksums, a full disk that leaves the previous checkpoint as it was, a NaN that stops the run
/// naming the step and the tensor, and impossible settings refused before any work.
final class ReliabilityTests: XCTestCase {
    func config(steps: Int) -> TrainConfig {
        var c = TrainConfig()
        c.layers = 2; c.heads = 2; c.dModel = 16; c.seqLen = 12; c.batch = 3
        c.steps = steps; c.warmup = 2; c.lr = 3e-3; c.minLR = 3e-4
        c.evalEvery = 4; c.evalWindows = 3; c.logEvery = 1; c.checkpointEvery = 4
        return c
    }

    let data = TokenDataset.split(ByteTokenizer().encode(String(repeating: "all the world's a stage, and all the men and women merely players. ", count: 12)),
                                  validationFraction: 0.2, source: "inline")

    func metrics(_ dir: URL) throws -> [TrainMetrics] {
        try String(contentsOf: dir.appendingPathComponent(Trainer.metricsFile), encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(TrainMetrics.self, from: Data($0.utf8)) }
    }

    func moments(_ store: ParameterStore) -> [Float] {
        Array(UnsafeBufferPointer(start: store.moment1!, count: store.count)) + Array(UnsafeBufferPointer(start: store.moment2!, count: store.count))
    }

    // MARK: - Exact resume

    /// Stopped after step s (on a checkpoint step or between them) and resumed, a run logs the same
    /// loss, learning rate, gradient norm and validation loss at every step, and ends with the same
    /// weights, AdamW moments, data position and checkpoint files, bit for bit.
    func testResumeFromAnyStepIsBitForBit() throws {
        let steps = 10
        let straightDir = try temporaryDirectory(self)
        let straight = try Trainer(config: config(steps: steps), dataset: data, out: straightDir)
        try straight.run()
        let reference = try metrics(straightDir)
        XCTAssertEqual(reference.map(\.step), Array(1...steps))

        for stop in [1, 4, 7, 9] {
            let dir = try temporaryDirectory(self)
            try Trainer(config: config(steps: steps), dataset: data, out: dir).run(stoppingAfter: stop)
            let resumed = try Trainer(config: config(steps: steps), dataset: data, out: dir, resume: true)
            XCTAssertEqual(resumed.step, stop)
            try resumed.run()
            let logged = try metrics(dir)
            XCTAssertEqual(logged.map(\.step), Array(1...steps), "stop \(stop): each step logged once")
            XCTAssertEqual(logged.map(\.trainLoss), reference.map(\.trainLoss), "stop \(stop): losses")
            XCTAssertEqual(logged.map(\.lr), reference.map(\.lr), "stop \(stop)")
            XCTAssertEqual(logged.map(\.gradNorm), reference.map(\.gradNorm), "stop \(stop)")
            XCTAssertEqual(logged.map(\.valLoss), reference.map(\.valLoss), "stop \(stop)")
            XCTAssertTrue(resumed.model.params.weightArray() == straight.model.params.weightArray(), "stop \(stop): weights")
            XCTAssertTrue(moments(resumed.model.params) == moments(straight.model.params), "stop \(stop): AdamW moments")
            XCTAssertEqual(resumed.batcher.rng.state, straight.batcher.rng.state, "stop \(stop): data position")
            XCTAssertEqual(resumed.tokensSeen, straight.tokensSeen)
            for file in [Checkpoint.modelFile, Checkpoint.optimizerFile, Checkpoint.stateFile, Checkpoint.configFile] {
                XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("checkpoint-\(steps)/\(file)")),
                               try Data(contentsOf: straightDir.appendingPathComponent("checkpoint-\(steps)/\(file)")), "stop \(stop): \(file)")
            }
        }
    }

    // MARK: - Verified checkpoints

    func testCheckpointRecordsChecksumsAndLoadVerifiesThem() throws {
        let dir = try temporaryDirectory(self)
        try Trainer(config: config(steps: 4), dataset: data, out: dir).run()
        let checkpoint = dir.appendingPathComponent("checkpoint-4")
        let files = try XCTUnwrap(TrainerState.load(from: checkpoint.appendingPathComponent(Checkpoint.stateFile)).files)
        XCTAssertEqual(Set(files.keys), [Checkpoint.configFile, Checkpoint.modelFile, Checkpoint.optimizerFile])
        for (name, recorded) in files {
            let url = checkpoint.appendingPathComponent(name)
            XCTAssertEqual(recorded.sha256, try SHA256.hash(fileAt: url), name)
            XCTAssertEqual(recorded.bytes, try Data(contentsOf: url).count, name)
        }
        XCTAssertNoThrow(try Checkpoint.loadModel(from: checkpoint))

        // One flipped bit in the weights, or in the moments, and the load names the file.
        for name in [Checkpoint.modelFile, Checkpoint.optimizerFile] {
            let url = checkpoint.appendingPathComponent(name)
            let good = try Data(contentsOf: url)
            var bad = good
            bad[bad.count - 3] ^= 0x10
            try bad.write(to: url)
            XCTAssertThrowsError(try Trainer(config: config(steps: 8), dataset: data, out: dir, resume: true)) {
                guard case .checksumMismatch(let file, let expected, _) = $0 as? InputError else { return XCTFail("\($0)") }
                XCTAssertEqual(file, url.path)
                XCTAssertEqual(expected, files[name]?.sha256)
            }
            if name == Checkpoint.modelFile {
                XCTAssertThrowsError(try Checkpoint.loadModel(from: checkpoint)) {
                    XCTAssertEqual(($0 as? InputError)?.file, url.path, "\($0)")
                }
            }
            // Cut short: refused by size before hashing.
            try good.prefix(good.count - 8).write(to: url)
            XCTAssertThrowsError(try Trainer(config: config(steps: 8), dataset: data, out: dir, resume: true)) {
                guard case .checksumMismatch(let file, _, let found) = $0 as? InputError else { return XCTFail("\($0)") }
                XCTAssertEqual(file, url.path)
                XCTAssertTrue(found.contains("bytes"), found)
            }
            try good.write(to: url)
        }
        XCTAssertNoThrow(try Trainer(config: config(steps: 8), dataset: data, out: dir, resume: true))
    }

    /// What a killed save leaves (a partial folder, temporary files) is never taken for a
    /// checkpoint, and the next run clears it away.
    func testInterruptedSaveLeftoversAreIgnoredAndRemoved() throws {
        let dir = try temporaryDirectory(self)
        try Trainer(config: config(steps: 4), dataset: data, out: dir).run()
        let partial = dir.appendingPathComponent(".checkpoint-8.partial")
        try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: true)
        try Data("half a file".utf8).write(to: partial.appendingPathComponent(Checkpoint.modelFile))
        try Data("{".utf8).write(to: dir.appendingPathComponent(".metrics.jsonl.tmp-99-1234"))
        try Data("{\"step\": 5, \"train_lo".utf8).append(to: dir.appendingPathComponent(Trainer.metricsFile))
        XCTAssertEqual(try Checkpoint.latestCheckpoint(in: dir)?.lastPathComponent, "checkpoint-4")
        let resumed = try Trainer(config: config(steps: 8), dataset: data, out: dir, resume: true)
        XCTAssertEqual(resumed.step, 4)
        try resumed.run()
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertFalse(names.contains { $0.hasPrefix(".") }, "\(names)")
        XCTAssertEqual(try metrics(dir).map(\.step), Array(1...8))
    }

    // MARK: - A full disk

    /// A write that fails (ENOSPC) anywhere in a save — the weights, the moments, the state —
    /// leaves the previous checkpoint loadable and untouched, no partial folder or temporary file,
    /// and a typed error naming the file; the run then resumes from that checkpoint exactly.
    func testFullDiskDuringSaveKeepsThePreviousCheckpoint() throws {
        defer { AtomicFile.faultInjector = nil }
        let straight = try Trainer(config: config(steps: 8), dataset: data, out: try temporaryDirectory(self))
        try straight.run()

        for failing in [Checkpoint.modelFile, Checkpoint.optimizerFile, Checkpoint.stateFile] {
            let dir = try temporaryDirectory(self)
            try Trainer(config: config(steps: 8), dataset: data, out: dir).run(stoppingAfter: 4)
            let previous = dir.appendingPathComponent("checkpoint-4")
            let before = try FileManager.default.contentsOfDirectory(atPath: previous.path).sorted()
                .map { try Data(contentsOf: previous.appendingPathComponent($0)) }

            // Writing the failing file reports a full disk.
            AtomicFile.faultInjector = { path, _ in path.hasSuffix(".partial/\(failing)") ? ENOSPC : nil }
            let trainer = try Trainer(config: config(steps: 8), dataset: data, out: dir, resume: true)
            XCTAssertThrowsError(try trainer.run(), failing) {
                guard case .io(let file, let reason) = $0 as? InputError else { return XCTFail("\($0)") }
                XCTAssertTrue(file.hasSuffix(failing), file)
                XCTAssertTrue(reason.contains("No space left on device"), reason)
            }
            AtomicFile.faultInjector = nil

            let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            XCTAssertEqual(names.filter { $0.hasPrefix("checkpoint-") }, ["checkpoint-4"], failing)
            XCTAssertFalse(names.contains { $0.hasPrefix(".") }, "\(failing): \(names)")
            let after = try FileManager.default.contentsOfDirectory(atPath: previous.path).sorted()
                .map { try Data(contentsOf: previous.appendingPathComponent($0)) }
            XCTAssertEqual(before, after, failing)
            let resumed = try Trainer(config: config(steps: 8), dataset: data, out: dir, resume: true)
            XCTAssertEqual(resumed.step, 4)
            try resumed.run()
            XCTAssertTrue(resumed.model.params.weightArray() == straight.model.params.weightArray(), failing)
        }
    }

    func testAtomicWriteFailureKeepsTheOldFile() throws {
        defer { AtomicFile.faultInjector = nil }
        let url = try temporaryDirectory(self).appendingPathComponent("file.bin")
        let old = Data("the old contents".utf8)
        XCTAssertEqual(try AtomicFile.write(old, to: url, hashing: true), SHA256.hash(old))
        AtomicFile.faultInjector = { _, _ in EIO }
        XCTAssertThrowsError(try AtomicFile.write(Data(count: 3 << 20), to: url)) {
            XCTAssertTrue(($0 as? InputError)?.description.contains("write failed") == true, "\($0)")
        }
        AtomicFile.faultInjector = nil
        XCTAssertEqual(try Data(contentsOf: url), old)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path), ["file.bin"])
    }

    // MARK: - Numerical faults

    /// A NaN planted in one gradient stops the run at that step, naming the parameter; the newest
    /// checkpoint is the last one before it, and it loads.
    func testNonFiniteGradientStopsNamingTheTensor() throws {
        let dir = try temporaryDirectory(self)
        var c = config(steps: 10)
        c.checkpointEvery = 2
        let trainer = try Trainer(config: c, dataset: data, out: dir)
        trainer.faultHook = { step, model in
            if step == 5 { model.params.grad("h.1.mlp.c_fc.weight")[7] = .nan }
        }
        XCTAssertThrowsError(try trainer.run()) {
            guard case .nonFinite(let step, let what, let last) = $0 as? TrainingError else { return XCTFail("\($0)") }
            XCTAssertEqual(step, 5)
            XCTAssertTrue(what.hasPrefix("the gradient of h.1.mlp.c_fc.weight (nan at element 7"), what)
            XCTAssertEqual(last, dir.appendingPathComponent("checkpoint-4").path)
            XCTAssertTrue("\($0)".contains("training stopped at step 5"), "\($0)")
        }
        XCTAssertEqual(try Checkpoint.checkpointSteps(in: dir), [2, 4])
        let saved = try Checkpoint.loadModel(from: dir.appendingPathComponent("checkpoint-4"))
        XCTAssertTrue(saved.params.weightArray().allSatisfy(\.isFinite))
        XCTAssertEqual(try metrics(dir).map(\.step), [1, 2, 3, 4])
    }

    /// An infinite weight (here planted; in practice an update that overflows) is caught after the
    /// update that made it, before any checkpoint could save it.
    func testInfiniteWeightIsCaughtBeforeItIsSaved() throws {
        let dir = try temporaryDirectory(self)
        let trainer = try Trainer(config: config(steps: 6), dataset: data, out: dir)
        trainer.faultHook = { step, model in
            if step == 4 { model.params.weight("ln_f.weight")[2] = .infinity }
        }
        XCTAssertThrowsError(try trainer.run()) {
            guard case .nonFinite(4, let what, let last) = $0 as? TrainingError else { return XCTFail("\($0)") }
            XCTAssertTrue(what.hasPrefix("the weight of ln_f.weight"), what)
            XCTAssertNil(last)
            XCTAssertTrue("\($0)".contains("last good checkpoint: none"), "\($0)")
        }
        XCTAssertEqual(try Checkpoint.checkpointSteps(in: dir), [])
    }

    /// A learning rate that blows the weights up: the loss goes non-finite and the run stops there.
    func testDivergingRunStopsOnTheLoss() throws {
        let dir = try temporaryDirectory(self)
        var c = config(steps: 10)
        c.lr = 1e30; c.minLR = 1e29; c.warmup = 0; c.clip = 1e30; c.checkpointEvery = 1
        XCTAssertThrowsError(try Trainer(config: c, dataset: data, out: dir).run()) {
            guard case .nonFinite(let step, let what, let last) = $0 as? TrainingError else { return XCTFail("\($0)") }
            XCTAssertTrue(what.contains("loss") || what.contains("gradient") || what.contains("weight"), what)
            XCTAssertEqual(last, step > 1 ? dir.appendingPathComponent("checkpoint-\(step - 1)").path : nil)
        }
    }

    // MARK: - Impossible settings

    func testImpossibleSettingsNameTheSetting() {
        func refused(_ change: (inout TrainConfig) -> Void, _ field: String, file: StaticString = #filePath, line: UInt = #line) {
            var c = config(steps: 10)
            change(&c)
            XCTAssertThrowsError(try c.validate(), file: file, line: line) {
                XCTAssertEqual(($0 as? InputError)?.field, field, "\($0)", file: file, line: line)
            }
        }
        refused({ $0.heads = 3 }, "heads")             // 16 is not a multiple of 3
        refused({ $0.batch = 0 }, "batch")
        refused({ $0.lr = -1e-3 }, "lr")
        refused({ $0.lr = .nan }, "lr")
        refused({ $0.seqLen = 0 }, "seq_len")
        refused({ $0.steps = -1 }, "steps")
        refused({ $0.minLR = 1 }, "min_lr")
        refused({ $0.family = .llama; $0.kvHeads = 3 }, "kv_heads")
        refused({ $0.dModel = 1 << 22 }, "d_model")
        refused({ $0.batch = Int.max }, "batch")
    }

    /// A run too big for the machine is refused before anything is allocated, naming the sizes.
    func testRunTooBigForMemoryIsRefused() throws {
        var c = config(steps: 10)
        XCTAssertNoThrow(try c.checkMemory(vocabSize: 256))
        c.layers = 48; c.dModel = 8192; c.heads = 64; c.seqLen = 4096; c.batch = 64
        XCTAssertThrowsError(try c.checkMemory(vocabSize: 50257, available: 64e9)) {
            XCTAssertEqual(($0 as? InputError)?.field, "layers, d_model, seq_len, batch", "\($0)")
            XCTAssertTrue("\($0)".contains("64.0 GB"), "\($0)")
        }
        XCTAssertThrowsError(try Trainer(config: { var d = c; d.layers = 100_000; return d }(), dataset: data, out: try temporaryDirectory(self)))
        // The estimate is in the right range: this run's model is 12·L·C² + V·C weights.
        let small = config(steps: 1)
        let params = Double(12 * small.layers * small.dModel * small.dModel + 256 * small.dModel)
        XCTAssertGreaterThan(small.estimatedMemoryBytes(vocabSize: 256), 16 * params)
        XCTAssertLessThan(small.estimatedMemoryBytes(vocabSize: 256), 16 * params + 4e6)
    }

    func testUnwritableOutputIsRefusedBeforeWork() throws {
        let dir = try temporaryDirectory(self)
        let file = dir.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        for out in [file, file.appendingPathComponent("run")] {
            XCTAssertThrowsError(try Trainer.prepareOutput(out)) {
                XCTAssertEqual(($0 as? InputError)?.file, out.path, "\($0)")
            }
        }
        if getuid() != 0 {   // root writes anywhere
            let locked = dir.appendingPathComponent("locked")
            try FileManager.default.createDirectory(at: locked, withIntermediateDirectories: true)
            try FileManager.default.setAttributes([.posixPermissions: 0o500], ofItemAtPath: locked.path)
            defer { try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: locked.path) }
            XCTAssertThrowsError(try Trainer.prepareOutput(locked.appendingPathComponent("run")))
        }
        let fine = dir.appendingPathComponent("new/run")
        XCTAssertNoThrow(try Trainer.prepareOutput(fine))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: fine.path), [])
    }

    /// A trainer_state.json is a user file like any other: every problem names it and the field.
    func testTrainerStateErrorsNameTheField() throws {
        let dir = try temporaryDirectory(self)
        try Trainer(config: config(steps: 4), dataset: data, out: dir).run()
        let url = dir.appendingPathComponent("checkpoint-4/\(Checkpoint.stateFile)")
        let good = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        func refused(_ change: (inout [String: Any]) -> Void, _ field: String, file: StaticString = #filePath, line: UInt = #line) throws {
            var state = good
            change(&state)
            try JSONSerialization.data(withJSONObject: state).write(to: url)
            XCTAssertThrowsError(try TrainerState.load(from: url), file: file, line: line) {
                XCTAssertEqual(($0 as? InputError)?.file, url.path, "\($0)", file: file, line: line)
                XCTAssertEqual(($0 as? InputError)?.field, field, "\($0)", file: file, line: line)
            }
        }
        try refused({ $0["step"] = -3 }, "step")
        try refused({ $0["rng"] = [0, 0, 0, 0] }, "rng")
        try refused({ $0["rng"] = [1, 2] }, "rng")
        try refused({ $0["step"] = "four" }, "step")
        try refused({ $0["files"] = ["model.safetensors": ["sha256": "xyz", "bytes": 3]] }, "files.model.safetensors.sha256")
        try refused({ var c = $0["config"] as! [String: Any]; c["heads"] = 5; $0["config"] = c }, "config.heads")
        try refused({ var c = $0["config"] as! [String: Any]; c["flow"] = "sideways"; $0["config"] = c }, "flow")
    }
}

private extension Data {
    func append(to url: URL) throws {
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: self)
    }
}
