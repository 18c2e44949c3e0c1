import Foundation
import MyopiaSupport

// TensorBoard scalars without TensorFlow: an `events.out.tfevents.*` file is a sequence of records
//
//   uint64 length (little-endian) · uint32 masked CRC-32C of those 8 bytes · data · uint32 masked CRC-32C of data
//
// where data is a serialised `tensorflow.Event` protocol buffer and masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8.
// The messages used, with their field numbers:
//
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; }
//
// The first record carries file_version "brain.Event:2"; each later one a step's scalars.

/// Writes TensorBoard scalar events into a run folder, one record per logged step, flushed as written.
public final class TensorBoardWriter {
    /// Every events file's name starts with this.
    public static let filePrefix = "events.out.tfevents."
    public let url: URL
    private let handle: FileHandle

    /// Creates `events.out.tfevents.SECONDS.HOST` in `folder` (which must exist). `wallTime` (seconds
    /// since 1970) names the file and stamps the header; a test passes a fixed value.
    /// An existing file of that name is never overwritten: the new one takes a `.1`, `.2`, …
    /// suffix, which sorts after it, as TensorBoard reads a folder's files in name order.
    public init(folder: URL, wallTime: Double = Date().timeIntervalSince1970, host: String = ProcessInfo.processInfo.hostName) throws {
        let safeHost = host.isEmpty ? "localhost" : host.replacingOccurrences(of: "/", with: "_")
        let base = "\(Self.filePrefix)\(Int(wallTime)).\(safeHost)"
        var name = base, n = 0
        while FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path) {
            n += 1
            name = "\(base).\(n)"
        }
        url = folder.appendingPathComponent(name)
        guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
            throw InputError.io(file: url.path, reason: "cannot create the TensorBoard event file")
        }
        do { handle = try FileHandle(forWritingTo: url) } catch {
            throw InputError.io(file: url.path, reason: "cannot open: \(error.localizedDescription)")
        }
        var header = Protobuf()
        header.double(1, wallTime)
        header.string(3, "brain.Event:2")
        try write(record: header.bytes)
    }

    deinit { try? handle.close() }

    /// One event holding every (tag, value) scalar of `step`. Non-finite values are written as they
    /// are (TensorBoard shows them as NaN/inf).
    public func add(step: Int, scalars: [(tag: String, value: Double)], wallTime: Double = Date().timeIntervalSince1970) throws {
        var summary = Protobuf()
        for (tag, value) in scalars {
            var v = Protobuf()
            v.string(1, tag)
            v.float(2, Float(value))
            summary.message(1, v)
        }
        var event = Protobuf()
        event.double(1, wallTime)
        event.varint(2, UInt64(bitPattern: Int64(step)))
        event.message(5, summary)
        try write(record: event.bytes)
    }

    private func write(record data: [UInt8]) throws {
        do { try handle.write(contentsOf: Self.frame(data)) } catch {
            throw InputError.io(file: url.path, reason: "cannot write: \(error.localizedDescription)")
        }
    }

    /// One TFRecord: length, its masked CRC, the data, its masked CRC.
    static func frame(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(data.count + 16)
        let length = UInt64(data.count)
        let lengthBytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) }
        out += lengthBytes
        out += Self.littleEndian(CRC32C.masked(lengthBytes))
        out += data
        out += Self.littleEndian(CRC32C.masked(data))
        return out
    }

    private static func littleEndian(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}

/// The few protocol-buffer encodings an Event needs.
struct Protobuf {
    private(set) var bytes: [UInt8] = []

    mutating func key(_ field: Int, _ wireType: UInt64) { appendVarint(UInt64(field) << 3 | wireType) }

    mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func varint(_ field: Int, _ value: UInt64) {
        key(field, 0)
        appendVarint(value)
    }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        let bits = value.bitPattern
        bytes += (0..<8).map { UInt8(truncatingIfNeeded: bits >> (8 * $0)) }
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        let bits = value.bitPattern
        bytes += (0..<4).map { UInt8(truncatingIfNeeded: bits >> (8 * $0)) }
    }

    mutating func string(_ field: Int, _ value: String) { lengthDelimited(field, Array(value.utf8)) }

    mutating func message(_ field: Int, _ value: Protobuf) { lengthDelimited(field, value.bytes) }

    private mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        key(field, 2)
        appendVarint(UInt64(payload.count))
        bytes += payload
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord files use it.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func checksum(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in data { c = table[Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// TFRecord's masked form, so that a CRC stored inside data does not look like one.
    static func masked(_ data: [UInt8]) -> UInt32 {
        let c = checksum(data)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}

extension TrainMetrics {
    /// This step's scalars as the Trainer writes them to TensorBoard: `train/loss`, `val/loss` (when
    /// evaluated), `train/lr`, `train/grad_norm`, `perf/tokens_per_s`, `perf/ms_per_step`, and at
    /// gradient-split steps `gradient_split/GROUP/{vanilla_norm,myopic_norm,future_norm,cosine,future_share}`
    /// (future_share = ‖g_future‖ / ‖g_vanilla‖, 0 when g_vanilla is zero).
    public var tensorBoardScalars: [(tag: String, value: Double)] {
        var s: [(tag: String, value: Double)] = [("train/loss", trainLoss)]
        if let valLoss { s.append(("val/loss", valLoss)) }
        s += [("train/lr", lr), ("train/grad_norm", gradNorm), ("perf/tokens_per_s", tokensPerSecond), ("perf/ms_per_step", msPerStep)]
        for (group, g) in (gradientSplit ?? [:]).sorted(by: { $0.key < $1.key }) {
            let prefix = "gradient_split/\(group)/"
            s += [(prefix + "vanilla_norm", g.vanillaNorm), (prefix + "myopic_norm", g.myopicNorm),
                  (prefix + "future_norm", g.futureNorm), (prefix + "cosine", g.cosine),
                  (prefix + "future_share", g.vanillaNorm > 0 ? g.futureNorm / g.vanillaNorm : 0)]
        }
        for (key, value) in (game ?? [:]).sorted(by: { $0.key < $1.key }) { s.append(("game/" + key, value)) }
        return s
    }
}
