// GPT-2's byte-to-unicode table ("ByteLevel" in Hugging Face's tokenizers): byte-level BPE
// vocabularies write every token as characters, one per byte, so that a vocabulary file is text.
// Bytes 33–126, 161–172 and 174–255 are written as the character with that code point, the other
// 68 bytes, in order, as U+0100 + n (so the space 0x20 is "Ġ" and the newline 0x0A is "Ċ").

/// The table, both ways, and token strings to and from bytes.
enum ByteLevel {
    static let scalarOfByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = 256 + n
                n += 1
            }
        }
        return table
    }()

    /// Code point -> byte for code points below 0x144; -1 where no byte is written so.
    static let byteOfScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in scalarOfByte.enumerated() { table[Int(s)] = Int16(b) }
        return table
    }()

    /// The UTF-8 of each byte's character ("Ġ" for 0x20 is C4 A0): what `tokenizers`' byte
    /// fallback and unknown-token rules see when a byte-level vocabulary lacks that byte's token.
    static let utf8OfByteCharacter: [[UInt8]] = scalarOfByte.map { Array(String(Unicode.Scalar($0)!).utf8) }

    /// The bytes a byte-level token string stands for; nil if a character is not in the table
    /// (or the UTF-8 is malformed, or the string is empty).
    static func bytes<S: Collection>(utf8 s: S) -> [UInt8]? where S.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var it = s.makeIterator()
        while let b0 = it.next() {
            var v: UInt32
            if b0 < 0x80 { v = UInt32(b0) }
            else if b0 & 0xE0 == 0xC0, let b1 = it.next() { v = UInt32(b0 & 0x1F) << 6 | UInt32(b1 & 0x3F) }
            else { return nil }   // three- and four-byte characters are never in the table
            guard v < byteOfScalar.count, byteOfScalar[Int(v)] >= 0 else { return nil }
            out.append(UInt8(byteOfScalar[Int(v)]))
        }
        return out.isEmpty ? nil : out
    }

    static func bytes(_ token: String) -> [UInt8]? { bytes(utf8: token.utf8) }

    static func string(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(scalarOfByte[Int(b)])!) }
        return String(s)
    }
}
