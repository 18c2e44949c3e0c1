// The pre-tokenizer regex of Llama 3 (also OpenAI's cl100k_base and OLMo 2), and Qwen2's, which
// differs only in taking every number character alone (`\p{N}` for `\p{N}{1,3}`):
//
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// tokenizer.json files write it as a Split pre-tokenizer (behavior Isolated) before ByteLevel.
// As with GPT-2's (PreTokenizer.swift) it is written out as a scanner over the UTF-8 bytes, with
// the same character classes (Unicode 16.0, which is also what Oniguruma in tokenizers 0.23
// knows). At each position the alternatives are tried in order:
//
//   1. `'` then s, t, m, d, re, ve or ll in either case (and ſ, U+017F, which case-folds to s:
//      the regex is case-insensitive there) is a contraction piece.
//   2. An optional character that is not a letter, a number, CR or LF, then a run of letters:
//      " word", "\tword", "(word", "'tis" -> "'tis" only when not a contraction.
//   3. One to `maxDigits` number characters.
//   4. An optional space, a run of characters that are neither letters, numbers nor whitespace,
//      then any CR and LF: " ...", "!\n\n".
//   5. A whitespace run that holds a CR or LF, up to and including its last CR or LF.
//   6. Otherwise a whitespace run: all of it at the end of the text; else all of it but the last
//      character, which `(?!\S)` gives back to start the next piece; a run of one character
//      before a non-space is a piece by itself.

enum Llama3PreTokenizer {
    /// Calls `body` with the byte range of each piece of `text[start..<end]`, in order. The bytes
    /// must be valid UTF-8. `maxDigits`: 3 for Llama 3, 1 for Qwen2.
    @inline(__always)
    static func forEachPiece(_ text: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int, maxDigits: Int,
                             _ body: (Int, Int) -> Void) {
        GPT2PreTokenizer.bmpClasses.withUnsafeBufferPointer { table in
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
                return (GPT2PreTokenizer.classify(v), 4)
            }
            @inline(__always) func runEnd(_ i: Int, _ cls: CharacterClass) -> Int {
                var j = i
                while j < end {
                    let (c, n) = scalar(j)
                    if c != cls { break }
                    j += n
                }
                return j
            }
            @inline(__always) func isNewline(_ b: UInt8) -> Bool { b == 0x0A || b == 0x0D }
            @inline(__always) func lower(_ b: UInt8) -> UInt8 { b | 0x20 }   // for ASCII letters only

            var i = start
            while i < end {
                let b = text[i]
                if b == 0x27, i + 1 < end {   // 1. '
                    let c = lower(text[i + 1])
                    if c == 0x73 || c == 0x74 || c == 0x6D || c == 0x64 {   // s t m d
                        body(i, i + 2); i += 2; continue
                    }
                    if i + 2 < end {
                        if text[i + 1] == 0xC5 && text[i + 2] == 0xBF { body(i, i + 3); i += 3; continue }   // ſ
                        let d = lower(text[i + 2])
                        if (c == 0x72 && d == 0x65) || (c == 0x76 && d == 0x65) || (c == 0x6C && d == 0x6C) {   // re ve ll
                            body(i, i + 3); i += 3; continue
                        }
                    }
                }
                let (cls, n) = scalar(i)
                if cls == .letter {   // 2., without the optional character
                    let j = runEnd(i + n, .letter)
                    body(i, j); i = j; continue
                }
                if cls != .number && !isNewline(b) && i + n < end {   // 2., with it
                    let (next, m) = scalar(i + n)
                    if next == .letter {
                        let j = runEnd(i + n + m, .letter)
                        body(i, j); i = j; continue
                    }
                }
                if cls == .number {   // 3.
                    var j = i + n, count = 1
                    while count < maxDigits && j < end {
                        let (c, m) = scalar(j)
                        if c != .number { break }
                        j += m
                        count += 1
                    }
                    body(i, j); i = j; continue
                }
                // 4. An optional space, then a run of "other" characters, then CR/LF.
                var k = i
                if b == 0x20 && i + 1 < end { k = i + 1 }
                if k < end, scalar(k).0 == .other {
                    var j = runEnd(k, .other)
                    while j < end && isNewline(text[j]) { j += 1 }
                    body(i, j); i = j; continue
                }
                // A whitespace run [i, j); `last` is where its last character starts, `lastNewline`
                // where its last CR or LF does.
                var j = i + n, last = i, lastNewline = isNewline(b) ? i : -1
                while j < end {
                    let (c, m) = scalar(j)
                    if c != .space { break }
                    if isNewline(text[j]) { lastNewline = j }
                    last = j
                    j += m
                }
                let pieceEnd: Int
                if lastNewline >= 0 {
                    pieceEnd = lastNewline + 1   // 5.
                } else if j == end || last == i {
                    pieceEnd = j   // 6. all of it
                } else {
                    pieceEnd = last   // 6. all but the last character
                }
                body(i, pieceEnd)
                i = pieceEnd
            }
        }
    }
}
