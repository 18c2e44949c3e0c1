// Added tokens (a tokenizer.json's `added_tokens`): cut out of the text before it is normalized and
// pre-tokenized, as `tokenizers`' AddedVocabulary does.
//
// Matching is leftmost-longest and never overlapping: the earliest position where any token
// starts, the longest token there; then on from its end. A match is then kept or dropped, and
// widened, by the token's options:
//   single_word   dropped when a word character (\w: letters, marks, decimal digits, connector
//                 punctuation) touches it on either side;
//   lstrip        widened over the whitespace before it (not past the previous match);
//   rstrip        widened over the whitespace after it.
// A dropped match still uses up its bytes: the next search starts at its end, as there.

struct AddedTokenMatcher: Sendable {
    struct Token: Sendable {
        let id: Int32
        let lstrip: Bool
        let rstrip: Bool
        let singleWord: Bool
    }

    private let tokens: [Token]
    private let startsToken: [Bool]        // [256] whether some token starts with the byte
    private let root: [Int32]              // [256] the node after one byte, -1: none
    private let children: [Int: Int32]     // node << 8 | byte -> node, below the root
    private let terminal: [Int32]          // per node: the token that ends there, or -1

    var isEmpty: Bool { tokens.isEmpty }

    /// Each token with the text it is matched as (UTF-8, non-empty, all different).
    init(_ entries: [(pattern: [UInt8], token: Token)]) {
        var root = [Int32](repeating: -1, count: 256)
        var children: [Int: Int32] = [:]
        var terminal: [Int32] = [-1]   // node 0 is the root
        for (index, entry) in entries.enumerated() {
            var node = 0
            for (depth, b) in entry.pattern.enumerated() {
                let next: Int32?
                if depth == 0 { next = root[Int(b)] >= 0 ? root[Int(b)] : nil } else { next = children[node << 8 | Int(b)] }
                if let next {
                    node = Int(next)
                } else {
                    let new = Int32(terminal.count)
                    terminal.append(-1)
                    if depth == 0 { root[Int(b)] = new } else { children[node << 8 | Int(b)] = new }
                    node = Int(new)
                }
            }
            terminal[node] = Int32(index)
        }
        self.tokens = entries.map(\.token)
        self.root = root
        self.children = children
        self.terminal = terminal
        self.startsToken = root.map { $0 >= 0 }
    }

    /// Cuts `text` into stretches of text (id nil) and tokens, calling `body` with each in order.
    /// The stretches may be empty where two tokens meet.
    func split(_ text: UnsafeBufferPointer<UInt8>, _ body: (_ range: Range<Int>, _ id: Int32?) -> Void) {
        guard !tokens.isEmpty else {
            body(0..<text.count, nil)
            return
        }
        var stretchStart = 0   // tokenizers' start_offset
        var i = 0
        while i < text.count {
            guard startsToken[Int(text[i])], let (token, end) = longestMatch(text, at: i) else { i += 1; continue }
            var start = i, stop = end
            i = end
            if token.singleWord {
                let wordBefore = start > 0 && Self.isWordCharacter(text.scalar(endingAt: start))
                let wordAfter = stop < text.count && Self.isWordCharacter(text.scalar(at: stop))
                if wordBefore || wordAfter { continue }
            }
            if token.lstrip {
                var s = start
                while s > 0 {
                    let c = text.scalar(endingAt: s)
                    guard c.properties.isWhitespace else { break }
                    s -= UTF8.width(c)
                }
                start = max(s, stretchStart)
            }
            if token.rstrip {
                while stop < text.count {
                    let c = text.scalar(at: stop)
                    guard c.properties.isWhitespace else { break }
                    stop += UTF8.width(c)
                }
            }
            if stretchStart < start { body(stretchStart..<start, nil) }
            body(start..<stop, token.id)
            stretchStart = stop
        }
        if stretchStart < text.count { body(stretchStart..<text.count, nil) }
    }

    /// The longest token that starts at i, and where it ends.
    @inline(__always)
    private func longestMatch(_ text: UnsafeBufferPointer<UInt8>, at i: Int) -> (Token, Int)? {
        var node = Int(root[Int(text[i])])
        var best: (Token, Int)?
        var j = i + 1
        while true {
            if terminal[node] >= 0 { best = (tokens[Int(terminal[node])], j) }
            guard j < text.count, let next = children[node << 8 | Int(text[j])] else { return best }
            node = Int(next)
            j += 1
        }
    }

    /// Rust regex's Unicode \w: Alphabetic, marks, decimal numbers, connector punctuation, Join_Control.
    static func isWordCharacter(_ c: Unicode.Scalar) -> Bool {
        let p = c.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}
