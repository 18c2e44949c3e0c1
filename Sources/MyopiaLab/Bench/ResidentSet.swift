// ResidentSet: the process's resident memory (VmRSS) and its peak (VmHWM), read from /proc.

import Foundation
import Myopia
import MyopiaKernels

/// The process's resident set, from /proc/self/status (Linux; nil elsewhere).
public enum ResidentSet {
    /// A field of /proc/self/status in kB ("VmRSS", "VmHWM"), as MiB.
    static func statusMiB(_ field: String) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let kb = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Double($0) }
            return kb.map { $0 / 1024 }
        }
        return nil
    }

    /// Resets the peak (VmHWM) to the current resident set (writing 5 to /proc/self/clear_refs);
    /// returns the current resident set, MiB.
    @discardableResult
    public static func resetPeak() -> Double? {
        if let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") {
            try? handle.write(contentsOf: Data("5".utf8))
            try? handle.close()
        }
        return statusMiB("VmRSS")
    }

    /// The peak resident set since the process started or the last `resetPeak`, MiB.
    public static func peakMiB() -> Double? { statusMiB("VmHWM") }
}
