import ArgumentParser

/// Parses `all`, a comma list (0,2,4) or a range (0..4), each index inside `range`; sorted, no repeats.
func parseIndexList(_ text: String, option: String, range: ClosedRange<Int>) throws -> [Int] {
    if text == "all" { return Array(range) }
    var values: [Int] = []
    for part in text.split(separator: ",", omittingEmptySubsequences: false) {
        let bounds = part.components(separatedBy: "..")
        if bounds.count == 2, let lo = Int(bounds[0].trimmingCharacters(in: .whitespaces)),
           let hi = Int(bounds[1].trimmingCharacters(in: .whitespaces)), lo <= hi {
            values += Array(lo...hi)
        } else if bounds.count == 1, let v = Int(part.trimmingCharacters(in: .whitespaces)) {
            values.append(v)
        } else {
            throw ValidationError("\(option) \(text): expected all, a list like 0,2,4 or a range like 0..4")
        }
    }
    if let bad = values.first(where: { !range.contains($0) }) {
        throw ValidationError("\(option): \(bad) is outside \(range.lowerBound)…\(range.upperBound)")
    }
    return Array(Set(values)).sorted()
}
