// Atomic file replacement (docs/DESIGN.md §8): an interrupted save leaves the previous file intact.
//
// Bytes go to `.NAME.tmp-PID-RANDOM` in the target's own folder (same file system, so the rename
// is atomic), the file is fsync'd, renamed over the target, and the folder is fsync'd so the
// rename itself survives a crash. Any failure removes the temporary file. A whole folder (a
// checkpoint) is replaced the same way by `commitFolder`: its files are written inside a hidden
// temporary folder, which is fsync'd and renamed into place.
//
// A writer can hash what it writes (sha256), so a checkpoint records its own checksums without
// reading its files back. Tests simulate a full disk through `faultInjector`.

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum AtomicFile {
    /// Test hook: called before every write(2) with the target path and the bytes about to be
    /// written; a non-nil errno makes that write fail as the system call would (ENOSPC: a full
    /// disk). Never set outside tests.
    nonisolated(unsafe) static var faultInjector: ((_ path: String, _ count: Int) -> Int32?)?

    /// Replaces the file at `url` with `data`; with `hashing`, returns the sha256 of `data`.
    @discardableResult
    public static func write(_ data: Data, to url: URL, hashing: Bool = false) throws -> String? {
        try write(to: url, hashing: hashing) { try $0.write(data) }
    }

    /// Streams the new contents through `body`, then atomically replaces `url`.
    /// I/O failures throw `InputError.io` naming `url`; errors thrown by `body` propagate
    /// unchanged (after the temporary file is removed), and the old file is left untouched.
    /// With `hashing`, returns the lowercase hex sha256 of the bytes written.
    @discardableResult
    public static func write(to url: URL, hashing: Bool = false, _ body: (AtomicFileWriter) throws -> Void) throws -> String? {
        let target = url.standardizedFileURL
        let folder = target.deletingLastPathComponent()
        let tempName = ".\(target.lastPathComponent).tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF)"
        let tempPath = folder.appendingPathComponent(tempName).path

        let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 {
            let code = errno
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDir) || !isDir.boolValue {
                throw InputError.io(file: target.path, reason: "folder \(folder.path) does not exist")
            }
            throw InputError.posix(target.path, "creating temporary file \(tempPath)", errno: code)
        }
        let writer = AtomicFileWriter(fd: fd, file: target.path, hashing: hashing)
        var committed = false
        defer {
            if !writer.isClosed { _ = close(fd) }
            if !committed { _ = unlink(tempPath) }
        }
        try body(writer)
        try writer.flush()
        if fsync(fd) != 0 { throw InputError.posix(target.path, "fsync", errno: errno) }
        writer.isClosed = true
        if close(fd) != 0 { throw InputError.posix(target.path, "close", errno: errno) }
        if rename(tempPath, target.path) != 0 {
            throw InputError.posix(target.path, "rename from \(tempName)", errno: errno)
        }
        committed = true
        syncFolder(folder)
        return writer.digest?.hexDigest()
    }

    /// Moves the finished folder `temporary` to `final` in one rename, after syncing its contents'
    /// names to disk, then syncs the parent so the rename survives a crash. An existing `final`
    /// (a checkpoint of the same step from an earlier attempt) is removed first. Failures throw
    /// `InputError.io` naming `final`.
    public static func commitFolder(_ temporary: URL, to final: URL) throws {
        syncFolder(temporary)
        let fm = FileManager.default
        if fm.fileExists(atPath: final.path) {
            do { try fm.removeItem(at: final) } catch {
                throw InputError.io(file: final.path, reason: "cannot replace the existing folder: \(error.localizedDescription)")
            }
        }
        if rename(temporary.path, final.path) != 0 {
            throw InputError.posix(final.path, "rename from \(temporary.lastPathComponent)", errno: errno)
        }
        syncFolder(final.deletingLastPathComponent())
    }

    /// Persists a folder's entries (creations, renames). Some file systems refuse fsync on a
    /// folder; the files themselves are already synced, so that is not an error.
    static func syncFolder(_ folder: URL) {
        let dirFD = open(folder.path, O_RDONLY | O_CLOEXEC)
        if dirFD >= 0 {
            _ = fsync(dirFD)
            _ = close(dirFD)
        }
    }

    /// True for the names of temporary files this type creates (left behind by a killed process).
    public static func isTemporaryName(_ name: String) -> Bool {
        name.hasPrefix(".") && name.contains(".tmp-")
    }
}

/// Buffered writer handed to `AtomicFile.write(to:_:)`. Small writes are gathered into a 1 MiB
/// buffer; large ones go straight to the file, so a multi-hundred-MB tensor is never copied.
public final class AtomicFileWriter {
    private let fd: Int32
    private let file: String
    private var buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    fileprivate var isClosed = false
    /// Bytes accepted so far (buffered or written).
    public private(set) var bytesWritten = 0
    /// sha256 of the bytes accepted so far, when the file is being hashed.
    fileprivate var digest: SHA256?

    fileprivate init(fd: Int32, file: String, hashing: Bool) {
        self.fd = fd
        self.file = file
        self.buffer = .allocate(byteCount: 1 << 20, alignment: 16)
        if hashing { digest = SHA256() }
    }

    deinit { buffer.deallocate() }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        bytesWritten += bytes.count
        digest?.update(bytes)
        if buffered + bytes.count <= buffer.count {
            (buffer.baseAddress! + buffered).copyMemory(from: base, byteCount: bytes.count)
            buffered += bytes.count
            return
        }
        try flush()
        if bytes.count < buffer.count / 2 {
            buffer.baseAddress!.copyMemory(from: base, byteCount: bytes.count)
            buffered = bytes.count
        } else {
            try writeFully(UnsafeRawBufferPointer(start: base, count: bytes.count))
        }
    }

    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func write(_ string: String) throws {
        try write(Array(string.utf8))
    }

    /// Writes an integer in little-endian byte order.
    public func writeLittleEndian<T: FixedWidthInteger>(_ value: T) throws {
        var le = value.littleEndian
        try withUnsafeBytes(of: &le) { try write($0) }
    }

    /// Writes floats as little-endian fp32 without an intermediate copy on little-endian hosts.
    public func write(_ floats: UnsafeBufferPointer<Float>) throws {
        #if _endian(little)
        try write(UnsafeRawBufferPointer(floats))
        #else
        var chunk = [UInt32](); chunk.reserveCapacity(4096)
        var i = floats.startIndex
        while i < floats.endIndex {
            let end = min(i + 4096, floats.endIndex)
            chunk.removeAll(keepingCapacity: true)
            for j in i..<end { chunk.append(floats[j].bitPattern.littleEndian) }
            try chunk.withUnsafeBytes { try write($0) }
            i = end
        }
        #endif
    }

    func flush() throws {
        guard buffered > 0 else { return }
        let n = buffered
        buffered = 0
        try writeFully(UnsafeRawBufferPointer(start: buffer.baseAddress, count: n))
    }

    private func writeFully(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            if let injected = AtomicFile.faultInjector?(file, left) {
                throw InputError.posix(file, "write", errno: injected)
            }
            let n = systemWrite(fd, p, min(left, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw InputError.posix(file, "write", errno: errno)
            }
            if n == 0 { throw InputError.io(file: file, reason: "write made no progress (disk full?)") }
            p += n
            left -= n
        }
    }
}

@inline(__always)
private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #elseif canImport(Musl)
    return Musl.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}
