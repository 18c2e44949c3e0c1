import Foundation
import XCTest
import MyopiaTestSupport
import Myopia
@testable import MyopiaTraining

/// The TensorBoard event writer against TensorBoard's own reader: Tests/Fixtures/tensorboard holds an
/// events file this writer made (regenerate with MYOPIA_WRITE_FIXTURES=1) and what
/// `EventAccumulator` read from it (tools/reference/tensorboard_reference.py).
final class TensorBoardTests: XCTestCase {
    let folder = fixturesURL.appendingPathComponent("tensorboard")
    static let wallTime = 1_700_000_000.0

    /// A short training log: two scalars per step, a validation loss every other step.
    static func scalars(_ step: Int) -> [(tag: String, value: Double)] {
        var s: [(tag: String, value: Double)] = [("train/loss", 5.5 / Double(step + 1) + 0.25),
                                                 ("train/lr", 1e-3 * Double(step) / 10)]
        if step % 2 == 0 { s.append(("val/loss", 3 - 0.1 * Double(step))) }
        return s
    }

    func writeLog(to dir: URL) throws -> URL {
        let writer = try TensorBoardWriter(folder: dir, wallTime: Self.wallTime, host: "fixture")
        for step in stride(from: 0, through: 40, by: 10) {
            try writer.add(step: step, scalars: Self.scalars(step), wallTime: Self.wallTime + Double(step))
        }
        return writer.url
    }

    func testCRC32CKnownValue() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([]), 0)
    }

    func testFileEqualsTheFixtureTensorBoardRead() throws {
        let dir = try temporaryDirectory(self)
        let url = try writeLog(to: dir)
        XCTAssertEqual(url.lastPathComponent, "events.out.tfevents.1700000000.fixture")
        let fixture = folder.appendingPathComponent(url.lastPathComponent)
        if ProcessInfo.processInfo.environment["MYOPIA_WRITE_FIXTURES"] == "1" {
            try? FileManager.default.removeItem(at: fixture)
            try FileManager.default.copyItem(at: url, to: fixture)
        }
        XCTAssertEqual(try Data(contentsOf: url), try Data(contentsOf: fixture))

        // What TensorBoard read back from that file: every tag, step and value we wrote.
        struct Read: Decodable {
            let file_version: Double            // EventAccumulator's reading of "brain.Event:2"
            let scalars: [String: [[Double]]]   // tag -> [[step, value, wall_time]]
        }
        let read = try JSONDecoder().decode(Read.self, from: Data(contentsOf: folder.appendingPathComponent("tensorboard_read.json")))
        XCTAssertEqual(read.file_version, 2)
        var expected: [String: [[Double]]] = [:]
        for step in stride(from: 0, through: 40, by: 10) {
            for (tag, value) in Self.scalars(step) {
                expected[tag, default: []].append([Double(step), Double(Float(value)), Self.wallTime + Double(step)])
            }
        }
        XCTAssertEqual(Set(read.scalars.keys), Set(expected.keys))
        for (tag, rows) in expected {
            XCTAssertEqual(read.scalars[tag], rows, tag)
        }
    }

    func testVarintsAndNegativeSteps() {
        var p = Protobuf()
        p.varint(2, 300)
        XCTAssertEqual(p.bytes, [0x10, 0xAC, 0x02])
        var q = Protobuf()
        q.varint(2, UInt64(bitPattern: -1))
        XCTAssertEqual(q.bytes.count, 11)   // key + ten bytes, as protobuf encodes negative int64
    }

    /// The reader against TensorBoard's own reading of the fixture: the same tags, steps, values and times.
    func testReaderAgreesWithTensorBoardOnTheFixture() throws {
        let events = try TensorBoardReader.read(folder.appendingPathComponent("events.out.tfevents.1700000000.fixture"))
        XCTAssertEqual(events.first?.fileVersion, "brain.Event:2")
        XCTAssertEqual(events.first?.wallTime, Self.wallTime)
        XCTAssertEqual(events.count, 6)
        for (event, step) in zip(events.dropFirst(), stride(from: 0, through: 40, by: 10)) {
            XCTAssertEqual(event.step, step)
            XCTAssertEqual(event.wallTime, Self.wallTime + Double(step))
            XCTAssertEqual(event.scalars.map(\.tag), Self.scalars(step).map(\.tag))
            XCTAssertEqual(event.scalars.map(\.value), Self.scalars(step).map { Float($0.value) })
        }
    }

    func testDamagedEventsFilesAreTypedErrors() throws {
        let dir = try temporaryDirectory(self)
        let url = try writeLog(to: dir)
        var bytes = [UInt8](try Data(contentsOf: url))
        try Data(bytes.dropLast(3)).write(to: url)
        XCTAssertThrowsError(try TensorBoardReader.read(url)) { error in
            guard case .truncated(let file, let field, _, _)? = error as? InputError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, url.path)
            XCTAssertEqual(field, "record 5")
        }
        bytes[40] ^= 0x10   // inside the first step's event
        try Data(bytes).write(to: url)
        XCTAssertThrowsError(try TensorBoardReader.read(url)) { error in
            guard case .checksumMismatch(let file, _, _)? = error as? InputError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, url.path)
        }
    }

    /// A training run writes one event per logged step holding exactly what metrics.jsonl holds;
    /// a run resumed from an earlier checkpoint (the steps after it logged once already) continues
    /// in a second file and the folder still reads as the log, each step once.
    func testTrainingWritesTheMetricsAsScalarsAndResumesInANewFile() throws {
        var config = TrainConfig()
        config.layers = 1; config.heads = 2; config.dModel = 16; config.seqLen = 8; config.batch = 2
        config.steps = 10; config.warmup = 2; config.evalEvery = 5; config.evalWindows = 2; config.logEvery = 2
        config.checkpointEvery = 5; config.logGradientSplit = 4
        let text = TokenDataset.split(ByteTokenizer().encode(String(repeating: "a rose by any other name. ", count: 30)),
                                      validationFraction: 0.2, source: "inline")
        let dir = try temporaryDirectory(self)
        try Trainer(config: config, dataset: text, out: dir).run()

        func metrics() throws -> [TrainMetrics] {
            try String(contentsOf: dir.appendingPathComponent(Trainer.metricsFile), encoding: .utf8).split(separator: "\n")
                .map { try JSONDecoder().decode(TrainMetrics.self, from: Data($0.utf8)) }
        }
        func checkEventsMatchMetrics(files: Int) throws {
            let logged = try metrics()
            XCTAssertEqual(TensorBoardReader.eventFiles(in: dir).count, files)
            let events = try TensorBoardReader.eventFiles(in: dir).flatMap { try TensorBoardReader.read($0) }
            XCTAssertEqual(events.filter { $0.fileVersion == "brain.Event:2" }.count, files)
            let steps = events.filter { $0.fileVersion == nil }
            XCTAssertEqual(steps.map(\.step), logged.map(\.step))
            for (event, m) in zip(steps, logged) {
                let byTag = Dictionary(uniqueKeysWithValues: event.scalars.map { ($0.tag, $0.value) })
                XCTAssertEqual(byTag["train/loss"], Float(m.trainLoss))
                XCTAssertEqual(byTag["val/loss"], m.valLoss.map(Float.init))
                XCTAssertEqual(byTag["train/lr"], Float(m.lr))
                XCTAssertEqual(byTag["train/grad_norm"], Float(m.gradNorm))
                XCTAssertEqual(byTag["perf/tokens_per_s"], Float(m.tokensPerSecond))
                let split = m.gradientSplit?["h.0.attn"]
                XCTAssertEqual(byTag["gradient_split/h.0.attn/future_norm"], split.map { Float($0.futureNorm) })
                XCTAssertEqual(byTag["gradient_split/h.0.attn/future_share"], split.map { Float($0.futureNorm / $0.vanillaNorm) })
                XCTAssertEqual(event.scalars.count, m.tensorBoardScalars.count)
            }
        }
        XCTAssertEqual(try metrics().map(\.step), [2, 4, 5, 6, 8, 10])
        XCTAssertEqual(try metrics().filter { $0.gradientSplit != nil }.map(\.step), [4, 8])
        try checkEventsMatchMetrics(files: 1)
        XCTAssertEqual(try TensorBoardReader.scalars(in: dir)["val/loss"]?.map(\.step), [5, 10])

        // As if killed after step 8's log but before the checkpoint at 10 was complete.
        try FileManager.default.removeItem(at: dir.appendingPathComponent("checkpoint-10"))
        let resumed = try Trainer(config: config, dataset: text, out: dir, resume: true)
        XCTAssertEqual(resumed.step, 5)
        XCTAssertEqual(try TensorBoardReader.scalars(in: dir)["train/loss"]?.map(\.step), [2, 4, 5])
        try resumed.run()
        try checkEventsMatchMetrics(files: 2)

        // A fresh run in the same folder starts the log over.
        try Trainer(config: config, dataset: text, out: dir).run()
        try checkEventsMatchMetrics(files: 1)
    }
}
