// Pre-tokenisers: they cut text into the pieces that BPE then encodes one at a time.
//
//   gpt2     GPT-2's regex (GPT-2, tiktoken's "gpt2"):
//              's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   smollm   SmolLM2's tokenizer.json:
//              Sequence[Digits(individual_digits: true), ByteLevel(add_prefix_space: false, use_regex: true)]:
//            every number character (\p{N}, and the 13 of Unicode 17.0 that Hugging Face's Digits
//            also knows: isLaterNumber) is a piece by itself, and each stretch between them is cut by
//            GPT-2's regex as if it were the whole text. llama.cpp's "smollm" does the same (the
//            regex "\p{N}", then GPT-2's on what is left). The one visible difference from GPT-2:
//            whitespace before a number stays whole ("a  1" -> "a", "  ", "1", not "a", " ", " 1").
//
// Written out as a scanner over the UTF-8 bytes rather than compiled as a regex: it is exact
// (the classes are Unicode's: \s is White_Space, \p{L} the L* general categories, \p{N} the N*
// ones, as of Unicode 16.0 like tiktoken's Rust regex; checked against tiktoken for every code
// point of planes 0–3 and 14) and fast. At each position the alternatives are tried in
// order, which comes down to:
//
//   1. `'` followed by s, t, m, d, re, ve or ll (lower case only) is a contraction piece.
//   2. A letter, number or other (not space) character starts a run of characters of its class.
//   3. A space U+0020 followed by such a character joins the run that follows.
//   4. Otherwise a run of whitespace: all of it at the end of the text; else all of it but the
//      last character, which `(?!\S)` gives back to start the next piece (" word", or a lone
//      "\n"). A run of one whitespace character before a non-space is a piece by itself.
//
// Both are one scanner; `isolatingNumbers` (a constant at each call site, so the GPT-2 loop carries
// no test for it) makes a number a piece of its own and ends a whitespace run before one.

/// Which pre-tokeniser a BPETokenizer cuts text with. GGUF files name it in `tokenizer.ggml.pre`;
/// a tokenizer.json writes it as a regex (TokenizerJSON.swift).
public enum PreTokenizer: String, Sendable, CaseIterable {
    /// GPT-2's regex.
    case gpt2
    /// Each number character alone, then GPT-2's regex on the stretches between (SmolLM2).
    case smollm
    /// Llama 3's regex, which is also OpenAI's cl100k_base (Llama3PreTokenizer.swift): numbers in
    /// runs of at most three digits.
    case llama3
    /// Qwen2's regex: Llama 3's with every number character a piece by itself.
    case qwen2

    /// The pieces of `text`, as strings (for tests and for looking at what a tokenizer does).
    public func pieces(_ text: String) -> [String] {
        var text = text
        return text.withUTF8 { bytes in
            var out: [String] = []
            forEachPiece(bytes, from: 0, to: bytes.count) { s, e in
                out.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[s..<e]), as: UTF8.self))
            }
            return out
        }
    }

    /// Calls `body` with the byte range of each piece of `text[start..<end]`, in order.
    @inline(__always)
    func forEachPiece(_ text: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int, _ body: (Int, Int) -> Void) {
        switch self {
        case .gpt2: GPT2PreTokenizer.forEachPiece(text, from: start, to: end, isolatingNumbers: false, body)
        case .smollm: GPT2PreTokenizer.forEachPiece(text, from: start, to: end, isolatingNumbers: true, body)
        case .llama3: Llama3PreTokenizer.forEachPiece(text, from: start, to: end, maxDigits: 3, body)
        case .qwen2: Llama3PreTokenizer.forEachPiece(text, from: start, to: end, maxDigits: 1, body)
        }
    }
}

enum CharacterClass: UInt8 {
    case letter, number, space, other
}

enum GPT2PreTokenizer {
    /// The class of every scalar in the Basic Multilingual Plane, computed once.
    static let bmpClasses: [CharacterClass] = (0..<0x1_0000).map { classify(UInt32($0)) }

    /// The Unicode version of tiktoken 0.14's tables (Rust regex-syntax 0.8). Characters added
    /// later are neither letters nor numbers there, so they are not here either: without this,
    /// Swift's newer tables would cut text in Unicode 17 scripts differently.
    static let unicodeVersion = (major: 16, minor: 0)

    static func classify(_ value: UInt32) -> CharacterClass {
        guard let scalar = Unicode.Scalar(value) else { return .other }   // surrogate code points
        let properties = scalar.properties
        if properties.isWhitespace { return .space }
        guard let age = properties.age, (age.major, age.minor) <= unicodeVersion else { return .other }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// Numbers of Unicode 17.0 that Hugging Face's Digits step isolates (it asks Rust's
    /// `char::is_numeric`, whose tables are 17.0 in tokenizers 0.23) although GPT-2's regex, at
    /// 16.0, calls them "other". Only `isolatingNumbers` sees them; the reference fixture lists
    /// them (`digits_beyond_regex_numbers`).
    static func isLaterNumber(_ value: UInt32) -> Bool {
        (0x11DE0...0x11DE9).contains(value) || (0x16FF4...0x16FF6).contains(value)
    }

    /// Calls `body` with the byte range of each piece of `text[start..<end]`, in order. The bytes
    /// must be valid UTF-8 (as a Swift String's are). `isolatingNumbers`: SmolLM's digit split
    /// first (PreTokenizer.smollm).
    @inline(__always)
    static func forEachPiece(_ text: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int,
                             isolatingNumbers: Bool = false, _ body: (Int, Int) -> Void) {
        let classes = bmpClasses
        classes.withUnsafeBufferPointer { table in
            // The scalar at i: its class and its length in bytes.
            @inline(__always) func scalar(_ i: Int) -> (CharacterClass, Int) {
                let b0 = UInt32(text[i])
                if b0 < 0x80 { return (table[Int(b0)], 1) }
                if b0 < 0xE0 { return (table[Int((b0 & 0x1F) << 6 | UInt32(text[i + 1]) & 0x3F)], 2) }
                if b0 < 0xF0 {
                    let v = (b0 & 0x0F) << 12 | (UInt32(text[i + 1]) & 0x3F) << 6 | UInt32(text[i + 2]) & 0x3F
                    return (table[Int(v)], 3)
                }
                let v = (b0 & 0x07) << 18 | (UInt32(text[i + 1]) & 0x3F) << 12 | (UInt32(text[i + 2]) & 0x3F) << 6
                    | UInt32(text[i + 3]) & 0x3F
                if isolatingNumbers && isLaterNumber(v) { return (.number, 4) }
                return (classify(v), 4)
            }
            // The end of the run of `cls` characters that starts at i.
            @inline(__always) func runEnd(_ i: Int, _ cls: CharacterClass) -> Int {
                var j = i
                while j < end {
                    let (c, n) = scalar(j)
                    if c != cls { break }
                    j += n
                }
                return j
            }

            var i = start
            while i < end {
                let b = text[i]
                if b == 0x27, i + 1 < end {   // '
                    let c = text[i + 1]
                    if c == 0x73 || c == 0x74 || c == 0x6D || c == 0x64 {   // s t m d
                        body(i, i + 2); i += 2; continue
                    }
                    if i + 2 < end {
                        let d = text[i + 2]
                        if (c == 0x72 && d == 0x65) || (c == 0x76 && d == 0x65) || (c == 0x6C && d == 0x6C) {   // re ve ll
                            body(i, i + 3); i += 3; continue
                        }
                    }
                }
                let (cls, n) = scalar(i)
                if cls != .space {
                    if isolatingNumbers && cls == .number { body(i, i + n); i += n; continue }
                    let j = runEnd(i + n, cls)
                    body(i, j); i = j; continue
                }
                if b == 0x20, i + 1 < end {
                    let (next, m) = scalar(i + 1)
                    if next != .space && !(isolatingNumbers && next == .number) {
                        let j = runEnd(i + 1 + m, next)
                        body(i, j); i = j; continue
                    }
                }
                // A whitespace run [i, j); `last` is where its last character starts. Before a
                // number (when isolating numbers) the run ends a stretch, so it is kept whole.
                var j = i + n, last = i, beforeNumber = false
                while j < end {
                    let (c, m) = scalar(j)
                    if c != .space { beforeNumber = isolatingNumbers && c == .number; break }
                    last = j
                    j += m
                }
                let pieceEnd = (j == end || last == i || beforeNumber) ? j : last
                body(i, pieceEnd)
                i = pieceEnd
            }
        }
    }

    /// The pieces of `text` under GPT-2's regex, as strings.
    static func pieces(_ text: String) -> [String] { PreTokenizer.gpt2.pieces(text) }
}
