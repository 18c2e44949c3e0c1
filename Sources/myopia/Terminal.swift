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
    /// Ranks other than 0 of an MPI job: their progress, messages and warnings repeat rank 0's,
    /// so only their errors show (marked with the rank).
    nonisolated(unsafe) static var followerRank: Int?
    static let isTTY = isatty(STDERR_FILENO) == 1

    static func info(_ message: String) {
        guard !quiet, followerRank == nil else { return }
        clearLine()
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    /// Shown even with --quiet and --json (stderr): something about the result the user should know.
    static func warning(_ message: String) {
        guard followerRank == nil else { return }
        clearLine()
        FileHandle.standardError.write(Data(("warning: " + message + "\n").utf8))
    }

    static func error(_ message: String) {
        clearLine()
        let rank = followerRank.map { "rank \($0): " } ?? ""
        FileHandle.standardError.write(Data(("error: " + rank + message + "\n").utf8))
    }

    nonisolated(unsafe) private static var barShown = false

    static func clearLine() {
        if barShown {
            FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
            barShown = false
        }
    }

    /// Shows progress `done` of `total` with a status text; on a terminal the line is redrawn in place.
    /// Every line fits the terminal's width (`width`), so a redraw never wraps.
    static func progress(_ done: Int, of total: Int, started: Date, status: String) {
        guard !quiet, followerRank == nil else { return }
        let elapsed = Date().timeIntervalSince(started)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let timing = (rate: "\(String(format: "%.1f", rate)) it/s", eta: "ETA \(duration(eta))")
        if isTTY {
            // One column spare: a line as wide as the terminal wraps on some of them.
            let line = progressLine(done, of: total, status: status, rate: timing.rate, eta: timing.eta, bar: true, width: width - 1)
            FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
            barShown = true
            if done == total { clearLine() }
        } else if plainLineDue(done, of: total) {
            let line = progressLine(done, of: total, status: status, rate: timing.rate, eta: timing.eta, bar: false, width: width)
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    /// One progress line of at most `width` characters: with room, `bar done/total  status  rate, ETA`
    /// (or `[done/total] status  rate, ETA` without the bar); with less, the bar shrinks and goes,
    /// then the rate, then the status is cut short with "…". The count and ETA stay.
    static func progressLine(_ done: Int, of total: Int, status: String, rate: String, eta: String, bar: Bool, width: Int) -> String {
        let count = bar ? "\(done)/\(total)" : "[\(done)/\(total)]"
        func gauge(_ cells: Int) -> String {
            let filled = total > 0 ? min(cells, cells * done / total) : cells
            return String(repeating: "█", count: filled) + String(repeating: "░", count: cells - filled) + " "
        }
        var candidates: [String] = []
        if bar {
            for cells in [24, 16, 10] { candidates.append("\(gauge(cells))\(count)  \(status)  \(rate), \(eta)") }
        }
        candidates += ["\(count)  \(status)  \(rate), \(eta)", "\(count)  \(status)  \(eta)"]
        if let fits = candidates.first(where: { $0.count <= width }) { return fits }
        let room = width - "\(count)    \(eta)".count
        guard room >= 2 else { return String("\(count) \(eta)".prefix(max(width, 1))) }
        return "\(count)  \(status.prefix(room - 1))…  \(eta)"
    }

    /// The terminal's width in columns: the window's (TIOCGWINSZ on stderr), else $COLUMNS, else 80.
    static var width: Int {
        var size = winsize()
        if isTTY, withUnsafeMutablePointer(to: &size, { ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), $0) }) == 0, size.ws_col > 0 {
            return Int(size.ws_col)
        }
        if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), columns > 0 { return columns }
        return 80
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
