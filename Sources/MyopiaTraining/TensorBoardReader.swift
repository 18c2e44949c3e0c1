import Foundation
import MyopiaSupport

// Reads back the events files TensorBoardWriter writes (the format is described there): every
// record's framing and both CRCs are checked, and the Event messages are decoded far enough to give
// each step's scalars. Used to check a run's events against its metrics.jsonl, and to drop the steps
// a resumed run logs again.

/// One decoded event: the header (file_version set, no scalars) or one step's scalars.
public struct TensorBoardEvent: Equatable, Sendable {
    public var wallTime: Double
    public var step: Int
    public var fileVersion: String?
    /// tag -> simple_value, in the order written.
    public var scalars: [(tag: String, value: Float)]

    public static func == (a: Self, b: Self) -> Bool {
        a.wallTime == b.wallTime && a.step == b.step && a.fileVersion == b.fileVersion
            && a.scalars.map(\.tag) == b.scalars.map(\.tag) && a.scalars.map(\.value) == b.scalars.map(\.value)
    }
}

public enum TensorBoardReader {
    /// The events files in `folder`, in the order TensorBoard reads them (by name).
    public static func eventFiles(in folder: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { $0.hasPrefix(TensorBoardWriter.filePrefix) }.sorted().map { folder.appendingPathComponent($0) }
    }

    /// Every event of one file. A damaged record (bad CRC, impossible length, malformed message) or
    /// a file that ends inside a record is an InputError naming the file and the record.
    public static func read(_ url: URL) throws -> [TensorBoardEvent] {
        try records(url, toleratingCutTail: false).enumerated().map { i, record in
            try decode(record, file: url.path, field: "record \(i)")
        }
    }

    /// Every scalar of every events file in `folder`, merged in file order: tag -> [(step, value)].
    public static func scalars(in folder: URL) throws -> [String: [(step: Int, value: Float)]] {
        var out: [String: [(step: Int, value: Float)]] = [:]
        for file in eventFiles(in: folder) {
            for event in try read(file) {
                for s in event.scalars { out[s.tag, default: []].append((event.step, s.value)) }
            }
        }
        return out
    }

    /// Rewrites each events file in `folder` without the events of steps after `step` (the header
    /// records stay), so that a run resumed at `step` logs those steps once. A record cut or damaged
    /// by a kill ends the file there; files with nothing to drop are left untouched.
    public static func truncate(in folder: URL, after step: Int) throws {
        for file in eventFiles(in: folder) {
            let all = try records(file, toleratingCutTail: true)
            var kept: [[UInt8]] = []
            for (i, record) in all.enumerated() {
                guard let event = try? decode(record, file: file.path, field: "record \(i)") else { break }
                if event.fileVersion != nil || event.step <= step { kept.append(record) }
            }
            let complete = (try? Data(contentsOf: file).count) ?? 0
            let rewritten = kept.flatMap(TensorBoardWriter.frame)
            if kept.count != all.count || rewritten.count != complete {
                try AtomicFile.write(Data(rewritten), to: file)
            }
        }
    }

    /// The data of each record, framing and CRCs checked. `toleratingCutTail`: the records before the
    /// first cut or damaged one, instead of an error.
    static func records(_ url: URL, toleratingCutTail: Bool) throws -> [[UInt8]] {
        let bytes: [UInt8]
        do { bytes = [UInt8](try Data(contentsOf: url)) } catch {
            throw InputError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        var out: [[UInt8]] = [], at = 0
        func le(_ start: Int, _ count: Int) -> UInt64 {
            (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[start + $1]) << (8 * UInt64($1)) }
        }
        while at < bytes.count {
            let field = "record \(out.count)"
            guard bytes.count - at >= 12 else {
                if toleratingCutTail { break }
                throw InputError.truncated(file: url.path, field: field, expected: "12 header bytes", found: "\(bytes.count - at)")
            }
            let length = le(at, 8)
            guard UInt32(le(at + 8, 4)) == CRC32C.masked(Array(bytes[at..<at + 8])) else {
                if toleratingCutTail { break }
                throw InputError.checksumMismatch(file: url.path, expected: "masked CRC-32C of \(field)'s length", found: String(le(at + 8, 4), radix: 16))
            }
            guard length <= UInt64(bytes.count - at - 12), UInt64(bytes.count - at - 12) - length >= 4 else {
                if toleratingCutTail { break }
                throw InputError.truncated(file: url.path, field: field, expected: "\(length) data bytes and a CRC",
                                            found: "\(bytes.count - at - 12) bytes left")
            }
            let data = Array(bytes[(at + 12)..<(at + 12 + Int(length))])
            let crc = UInt32(le(at + 12 + Int(length), 4))
            guard crc == CRC32C.masked(data) else {
                if toleratingCutTail { break }
                throw InputError.checksumMismatch(file: url.path, expected: "masked CRC-32C of \(field)'s data", found: String(crc, radix: 16))
            }
            out.append(data)
            at += 16 + Int(length)
        }
        return out
    }

    /// Decodes an Event message (fields 1 wall_time, 2 step, 3 file_version, 5 summary; others skipped).
    static func decode(_ data: [UInt8], file: String, field: String) throws -> TensorBoardEvent {
        var event = TensorBoardEvent(wallTime: 0, step: 0, fileVersion: nil, scalars: [])
        var reader = ProtobufReader(bytes: data[...], file: file, field: field)
        while let (number, value) = try reader.next() {
            switch (number, value) {
            case (1, .fixed64(let bits)): event.wallTime = Double(bitPattern: bits)
            case (2, .varint(let v)): event.step = Int(Int64(bitPattern: v))
            case (3, .bytes(let b)): event.fileVersion = String(decoding: b, as: UTF8.self)
            case (5, .bytes(let summary)):
                var values = ProtobufReader(bytes: summary, file: file, field: "\(field).summary")
                while let (n, v) = try values.next() {
                    guard n == 1, case .bytes(let valueBytes) = v else { continue }
                    var tag = "", simple: Float?
                    var fields = ProtobufReader(bytes: valueBytes, file: file, field: "\(field).summary.value")
                    while let (vn, vv) = try fields.next() {
                        switch (vn, vv) {
                        case (1, .bytes(let t)): tag = String(decoding: t, as: UTF8.self)
                        case (2, .fixed32(let bits)): simple = Float(bitPattern: bits)
                        default: continue
                        }
                    }
                    if let simple { event.scalars.append((tag, simple)) }
                }
            default: continue
            }
        }
        return event
    }
}

/// Walks the fields of one protocol-buffer message, checking every length against what is left.
struct ProtobufReader {
    enum Value { case varint(UInt64), fixed64(UInt64), bytes(ArraySlice<UInt8>), fixed32(UInt32) }
    var bytes: ArraySlice<UInt8>
    let file: String, field: String

    mutating func varint() throws -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while let b = bytes.popFirst() {
            guard shift < 64 else { break }
            v |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return v }
            shift += 7
        }
        throw InputError.invalidHeader(file: file, field: field, reason: "a varint runs past the message or beyond 64 bits")
    }

    mutating func take(_ n: UInt64) throws -> ArraySlice<UInt8> {
        guard n <= UInt64(bytes.count) else {
            throw InputError.truncated(file: file, field: field, expected: "\(n) bytes", found: "\(bytes.count)")
        }
        let out = bytes.prefix(Int(n))
        bytes = bytes.dropFirst(Int(n))
        return out
    }

    /// The next (field number, value), or nil at the end of the message.
    mutating func next() throws -> (Int, Value)? {
        guard !bytes.isEmpty else { return nil }
        let key = try varint()
        let number = Int(truncatingIfNeeded: key >> 3)
        func little(_ b: ArraySlice<UInt8>) -> UInt64 { b.reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        switch key & 7 {
        case 0: return (number, .varint(try varint()))
        case 1: return (number, .fixed64(little(try take(8))))
        case 2: return (number, .bytes(try take(try varint())))
        case 5: return (number, .fixed32(UInt32(little(try take(4)))))
        default:
            throw InputError.unsupported(file: file, field: field, value: "protobuf wire type \(key & 7)")
        }
    }
}
