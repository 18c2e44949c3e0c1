// A tokenizer.json's decoder: token strings back to text, step by step over the list of tokens
// as `tokenizers` runs it (each step maps the list to a new list; the result is joined).
//
//   ByteLevel      each token's byte-level characters to bytes (a token with another character
//                  stays its UTF-8), all joined into one text; bytes that are not UTF-8 become U+FFFD
//   Replace        a literal string replaced in each token ("▁" -> " ")
//   ByteFallback   runs of `<0xNN>` tokens to the text their bytes spell; bytes that are not
//                  UTF-8 become one U+FFFD each
//   Fuse           all tokens joined into one
//   Strip          up to `start` leading and `stop` trailing `content` characters cut from each token
//   Metaspace      "▁" to a space, except in the first token (unless prepend_scheme is never),
//                  where it is dropped
// Without a decoder the tokens are joined with spaces.

struct TokenDecoder: Sendable {
    /// nil: the file has no decoder.
    let steps: [TokenizerJSON.Decoder]?

    func decode(_ tokens: [String]) -> String {
        guard let steps else { return tokens.joined(separator: " ") }
        var tokens = tokens
        for step in steps { tokens = Self.apply(step, tokens) }
        return tokens.joined()
    }

    /// What one token stands for on its own, as bytes: the steps that act on each token alone
    /// (ByteLevel, ByteFallback, Replace, Metaspace's "▁" -> " ", a Strip before any joining step),
    /// without those that look at the whole text. Concatenated, these stream a decode.
    func bytes(of token: String) -> [UInt8] {
        guard let steps else { return Array(token.utf8) }
        var text = token
        var joined = false
        for step in steps {
            switch step {
            case .byteLevel:
                return ByteLevel.bytes(text) ?? Array(text.utf8)
            case .byteFallback:
                if let byte = Self.fallbackByte(text) { return [byte] }
            case .replace(let pattern, let content):
                text = Self.replace(text, pattern, content)
            case .metaspace(let replacement, _):
                text = String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == replacement ? " " : $0 }))
            case .strip(let content, let start, let stop):
                if !joined { text = Self.strip(text, content, start, stop) }
            case .fuse:
                joined = true
            }
        }
        return Array(text.utf8)
    }

    private static func apply(_ step: TokenizerJSON.Decoder, _ tokens: [String]) -> [String] {
        switch step {
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens { bytes += ByteLevel.bytes(t) ?? Array(t.utf8) }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let pattern, let content):
            return tokens.map { replace($0, pattern, content) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let text = String(validating: pending, as: UTF8.self) {
                    out.append(text)
                } else {
                    out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for t in tokens {
                if let byte = fallbackByte(t) { pending.append(byte) } else { flush(); out.append(t) }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { strip($0, content, start, stop) }
        case .metaspace(let replacement, let scheme):
            return tokens.enumerated().map { i, t in
                var out = String.UnicodeScalarView()
                for c in t.unicodeScalars {
                    if c != replacement { out.append(c) } else if i > 0 || scheme == .never { out.append(" ") }
                }
                return String(out)
            }
        }
    }

    /// The byte a `<0xNN>` token stands for, read as Rust's u8::from_str_radix(_, 16) reads the two
    /// characters (either case, and "+N").
    static func fallbackByte(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        if u[3] == 0x2B { return hex(u[4]) }
        guard let high = hex(u[3]), let low = hex(u[4]) else { return nil }
        return high << 4 | low
    }

    private static func replace(_ text: String, _ pattern: String, _ content: String) -> String {
        String(decoding: TextNormalizer.replace(Array(text.utf8), Array(pattern.utf8), with: Array(content.utf8)).0, as: UTF8.self)
    }

    private static func strip(_ text: String, _ content: Unicode.Scalar, _ start: Int, _ stop: Int) -> String {
        let scalars = Array(text.unicodeScalars)
        var lo = 0
        while lo < min(start, scalars.count) && scalars[lo] == content { lo += 1 }
        var hi = scalars.count
        // Rust's loop indexes from the end without a bound; a token shorter than `stop` would panic there.
        while scalars.count - hi < stop && hi > lo && scalars[hi - 1] == content { hi -= 1 }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[lo..<hi])
        return String(out)
    }
}
