// Reading characters out of UTF-8 bytes that are known to be valid (they come from Swift strings,
// or are cut from them at character boundaries): what the tokenizer.json stages need to step
// through text without making Strings of it.

extension UnsafeBufferPointer where Element == UInt8 {
    /// The scalar whose UTF-8 starts at i.
    func scalar(at i: Int) -> Unicode.Scalar {
        var iterator = UnsafeBufferPointer(rebasing: self[i...]).makeIterator()
        var decoder = UTF8()
        if case .scalarValue(let s) = decoder.decode(&iterator) { return s }
        return "\u{FFFD}"
    }

    /// The scalar whose UTF-8 ends just before i (i > 0).
    func scalar(endingAt i: Int) -> Unicode.Scalar {
        var s = i - 1
        while s > 0 && self[s] & 0xC0 == 0x80 { s -= 1 }
        return scalar(at: s)
    }
}

extension UTF8 {
    /// The length of the UTF-8 sequence that starts with `lead` (1 for a stray continuation byte).
    @inline(__always)
    static func width(startingWith lead: UInt8) -> Int {
        lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
    }
}
