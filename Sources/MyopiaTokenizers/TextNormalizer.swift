// A tokenizer.json's normalizer: applied to each stretch of text between added tokens (and to the
// content of added tokens marked `normalized`), in the order the file lists the steps.
//
//   NFC NFD NFKC NFKD   Unicode normalization forms, as of Unicode 11.0 (below)
//   Lowercase           each character's full lowercase mapping (İ -> i̇), as Rust's char::to_lowercase
//   Replace             every occurrence of a literal string, left to right, without overlaps
//   Prepend             a string put in front of a non-empty text
//   Strip               whitespace (White_Space) removed at the start and/or the end

import Foundation

struct TextNormalizer: Sendable {
    let steps: [TokenizerJSON.Normalizer]

    var isEmpty: Bool { steps.isEmpty }

    /// The normalized bytes, and whether their first character still stands where the text began:
    /// false once a step removed the text's first characters (a Strip, a Replace with ""), which
    /// Metaspace's `prepend_scheme: first` looks at.
    func normalize(_ text: [UInt8]) -> (bytes: [UInt8], keepsStart: Bool) {
        var bytes = text, keepsStart = true
        for step in steps {
            switch step {
            case .nfc: bytes = Self.unicode(bytes) { $0.precomposedStringWithCanonicalMapping }
            case .nfd: bytes = Self.unicode(bytes) { $0.decomposedStringWithCanonicalMapping }
            case .nfkc: bytes = Self.unicode(bytes) { $0.precomposedStringWithCompatibilityMapping }
            case .nfkd: bytes = Self.unicode(bytes) { $0.decomposedStringWithCompatibilityMapping }
            case .lowercase: bytes = Self.lowercase(bytes)
            case .replace(let pattern, let content):
                let (replaced, atStart) = Self.replace(bytes, Array(pattern.utf8), with: Array(content.utf8))
                if atStart && content.isEmpty { keepsStart = false }
                bytes = replaced
            case .prepend(let prefix):
                if !bytes.isEmpty { bytes = Array(prefix.utf8) + bytes }
            case .strip(let left, let right):
                let (stripped, removedAtStart) = Self.strip(bytes, left: left, right: right)
                if removedAtStart { keepsStart = false }
                bytes = stripped
            }
        }
        return (bytes, keepsStart)
    }

    /// The Unicode version of `tokenizers`' normalization tables (its unicode-normalization-
    /// alignments crate): it leaves characters added since as they are, so NFKC keeps U+32FF
    /// (Unicode 12.1) where Foundation's newer tables give "令和". Normalizing the stretches
    /// between such characters with Foundation and keeping them gives its results exactly: all
    /// four forms agree with tokenizers 0.23 on every code point and on every canonical
    /// decomposition (Unicode 14.0's).
    static let unicodeVersion = (major: 11, minor: 0)

    private static func unicode(_ bytes: [UInt8], _ form: (String) -> String) -> [UInt8] {
        if bytes.allSatisfy({ $0 < 0x80 }) { return bytes }   // ASCII is the same in every form
        let text = String(decoding: bytes, as: UTF8.self)
        func isNewer(_ c: Unicode.Scalar) -> Bool {
            guard c.value >= 0x300, let age = c.properties.age else { return false }
            return (age.major, age.minor) > unicodeVersion
        }
        guard text.unicodeScalars.contains(where: isNewer) else { return Array(form(text).utf8) }
        var out: [UInt8] = [], run = String.UnicodeScalarView()
        for c in text.unicodeScalars {
            guard isNewer(c) else { run.append(c); continue }
            out += form(String(run)).utf8
            out += String(c).utf8
            run = String.UnicodeScalarView()
        }
        return out + form(String(run)).utf8
    }

    private static func lowercase(_ bytes: [UInt8]) -> [UInt8] {
        if bytes.allSatisfy({ $0 < 0x80 }) {
            return bytes.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }
        }
        var out = String.UnicodeScalarView()
        for c in String(decoding: bytes, as: UTF8.self).unicodeScalars {
            out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
        }
        return Array(String(out).utf8)
    }

    /// Every occurrence of `pattern` (non-empty), left to right, replaced; and whether one was at
    /// the start.
    static func replace(_ bytes: [UInt8], _ pattern: [UInt8], with content: [UInt8]) -> ([UInt8], Bool) {
        guard !pattern.isEmpty, bytes.count >= pattern.count else { return (bytes, false) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0, atStart = false
        while i < bytes.count {
            if bytes[i] == pattern[0], bytes.count - i >= pattern.count, bytes[i..<i + pattern.count].elementsEqual(pattern) {
                if i == 0 { atStart = true }
                out.append(contentsOf: content)
                i += pattern.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return (out, atStart)
    }

    private static func strip(_ bytes: [UInt8], left: Bool, right: Bool) -> ([UInt8], Bool) {
        let scalars = Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)
        var lo = 0, hi = scalars.count
        if left { while lo < hi && scalars[lo].properties.isWhitespace { lo += 1 } }
        if right { while hi > lo && scalars[hi - 1].properties.isWhitespace { hi -= 1 } }
        var kept = String.UnicodeScalarView()
        kept.append(contentsOf: scalars[lo..<hi])
        return (Array(String(kept).utf8), lo > 0)
    }
}
