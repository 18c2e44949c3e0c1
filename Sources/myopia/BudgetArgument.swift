import ArgumentParser
import Foundation

/// A wall-time budget on the command line: bare seconds (`1800`) or with a unit, `30m`, `2h`
/// (`s` also accepted). `demo --budget` and `reproduce --budget` read it alike.
struct BudgetArgument: ExpressibleByArgument, Equatable {
    var seconds: Double

    init(seconds: Double) { self.seconds = seconds }

    init?(argument: String) {
        guard let seconds = Self.seconds(argument) else { return nil }
        self.seconds = seconds
    }

    /// `text` in seconds; nil unless it is a positive number with an optional s, m or h.
    static func seconds(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
        var number = Substring(trimmed), scale = 1.0
        if let last = trimmed.last, let unit = units[last] {
            number = trimmed.dropLast()
            scale = unit
        }
        guard let value = Double(number), value.isFinite, value > 0 else { return nil }
        return value * scale
    }
}
