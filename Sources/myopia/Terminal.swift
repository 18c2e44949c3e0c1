import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Progress and messages on stderr: a redrawn bar with rate and ETA on a terminal, plain periodic
/// lines otherwise (CI, pipes, logs: the first update, one per tenth of the work or per 30 s, and
/// the last). Results go to stdout.
enum Terminal {
    nonisolated(unsafe) static var quiet = false
    static let isTTY = isatty(STDERR_FILENO) == 1

    static func info(_ message: String) {
        guard !quiet else { return }
        clearLine()
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    /// Shown even with --quiet and --json (stderr): something about the result the user should know.
    static func warning(_ message: String) {
        clearLine()
        FileHandle.standardError.write(Data(("warning: " + message + "\n").utf8))
    }

    static func error(_ message: String) {
        clearLine()
        FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
    }

    nonisolated(unsafe) private static var barShown = false

    static func clearLine() {
        if barShown {
            FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
            barShown = false
        }
    }

    /// Shows progress `done` of `total` with a status text; on a terminal the line is redrawn in place.
    static func progress(_ done: Int, of total: Int, started: Date, status: String) {
        guard !quiet else { return }
        let elapsed = Date().timeIntervalSince(started)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let timing = "\(String(format: "%.1f", rate)) it/s, ETA \(duration(eta))"
        if isTTY {
            let width = 24
            let filled = total > 0 ? min(width, width * done / total) : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            FileHandle.standardError.write(Data("\r\u{1B}[2K\(bar) \(done)/\(total)  \(status)  \(timing)".utf8))
            barShown = true
            if done == total { clearLine() }
        } else if plainLineDue(done, of: total) {
            FileHandle.standardError.write(Data("[\(done)/\(total)] \(status)  \(timing)\n".utf8))
        }
    }

    nonisolated(unsafe) private static var lastLine: (done: Int, total: Int, tenth: Int, time: Date)?

    /// Whether a plain progress line is due: a new task (first update), a new tenth of the work,
    /// 30 s since the last line, or the end.
    static func plainLineDue(_ done: Int, of total: Int, now: Date = Date()) -> Bool {
        let tenth = total > 0 ? 10 * done / total : 10
        var due = true
        if let l = lastLine, l.total == total, l.done <= done {
            due = done == total || tenth != l.tenth || now.timeIntervalSince(l.time) >= 30
        }
        if due { lastLine = (done, total, tenth, now) }
        return due
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}
