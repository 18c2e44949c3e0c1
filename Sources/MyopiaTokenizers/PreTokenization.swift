// A tokenizer.json's pre-tokenizer as stages that each cut the pieces of the stage before (the
// `tokenizers` Sequence), down to the pieces the BPE model encodes one at a time. Empty pieces are
// dropped at every stage, as there.
//
//   scan         GPT-2's, SmolLM's, Llama 3's or Qwen2's regex (PreTokenizer.swift): a Split with
//                that regex, or ByteLevel with use_regex
//   digits       numbers apart: each number character alone (individual_digits), or runs of them
//   literal      a Split on a literal string, with its behavior (below)
//   metaspace    spaces to "▁", "▁" put first (prepend_scheme), then a cut before each "▁"
//   prefixSpace  ByteLevel's add_prefix_space: a space before a piece that does not start with one
//
// Split behaviors, for the occurrences of the pattern (matches) and the text between them:
//   Removed             the matches are dropped
//   Isolated            every match and every stretch between is a piece
//   MergedWithPrevious  a match joins the stretch before it
//   MergedWithNext      a match joins the stretch after it
//   Contiguous          adjacent matches form one piece

struct PreTokenization: Sendable {
    enum Stage: Sendable {
        case scan(PreTokenizer)
        case digits(individual: Bool)
        case literal([UInt8], TokenizerJSON.SplitBehavior)
        case metaspace(replacement: [UInt8], scheme: TokenizerJSON.PrependScheme, split: Bool)
        case prefixSpace
    }

    let stages: [Stage]
    /// The pieces are encoded byte-level: the pre-tokenizer ends with ByteLevel.
    let byteLevel: Bool

    init(_ steps: [TokenizerJSON.PreTokenizerStep]) {
        var stages: [Stage] = []
        var byteLevel = false
        for step in steps {
            switch step {
            case .byteLevel(let addPrefixSpace, let useRegex):
                byteLevel = true
                if addPrefixSpace { stages.append(.prefixSpace) }
                if useRegex { stages.append(.scan(.gpt2)) }
            case .regex(let regex): stages.append(.scan(regex))
            case .split(let pattern, let behavior): stages.append(.literal(Array(pattern.utf8), behavior))
            case .digits(let individual): stages.append(.digits(individual: individual))
            case .metaspace(let replacement, let scheme, let split):
                stages.append(.metaspace(replacement: Array(replacement.utf8), scheme: scheme, split: split))
            }
        }
        // Digits(individual) then GPT-2's regex is SmolLM2's pre-tokenizer, which one scan does.
        for k in stages.indices.dropLast().reversed() {
            if case .digits(true) = stages[k], case .scan(.gpt2) = stages[k + 1] {
                stages[k] = .scan(.smollm)
                stages.remove(at: k + 1)
            }
        }
        self.stages = stages
        self.byteLevel = byteLevel
    }

    /// Calls `body` with each piece of `text`. `atStart`: the text begins the input (Metaspace's
    /// `first` puts its "▁" only there).
    func forEachPiece(_ text: UnsafeBufferPointer<UInt8>, atStart: Bool, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        run(0, text, atStart, body)
    }

    private func run(_ k: Int, _ text: UnsafeBufferPointer<UInt8>, _ atStart: Bool, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        guard !text.isEmpty else { return }
        guard k < stages.count else { return body(text) }
        func next(_ range: Range<Int>) { run(k + 1, UnsafeBufferPointer(rebasing: text[range]), atStart, body) }
        switch stages[k] {
        case .scan(let regex):
            regex.forEachPiece(text, from: 0, to: text.count) { s, e in next(s..<e) }
        case .digits(let individual):
            Self.cut(text, Self.numbers(text), individual ? .isolated : .contiguous, next)
        case .literal(let pattern, let behavior):
            Self.cut(text, Self.occurrences(of: pattern, in: text), behavior, next)
        case .metaspace(let replacement, let scheme, let split):
            var spaced = TextNormalizer.replace(Array(text), [0x20], with: replacement).0
            let prepend = scheme == .always || (scheme == .first && atStart)
            if prepend && !spaced.starts(with: replacement) { spaced = replacement + spaced }
            spaced.withUnsafeBufferPointer { spaced in
                if split {
                    Self.cut(spaced, Self.occurrences(of: replacement, in: spaced), .mergedWithNext) {
                        run(k + 1, UnsafeBufferPointer(rebasing: spaced[$0]), atStart, body)
                    }
                } else {
                    run(k + 1, spaced, atStart, body)
                }
            }
        case .prefixSpace:
            if text[0] == 0x20 { return run(k + 1, text, atStart, body) }
            ([0x20] + Array(text)).withUnsafeBufferPointer { run(k + 1, $0, atStart, body) }
        }
    }

    /// The non-overlapping occurrences of `pattern`, left to right.
    private static func occurrences(of pattern: [UInt8], in text: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        guard !pattern.isEmpty else { return [] }
        var found: [Range<Int>] = []
        var i = 0
        while i + pattern.count <= text.count {
            if text[i] == pattern[0] && text[i..<i + pattern.count].elementsEqual(pattern) {
                found.append(i..<i + pattern.count)
                i += pattern.count
            } else {
                i += 1
            }
        }
        return found
    }

    /// Each number character (Rust's char::is_numeric), as its own match.
    private static func numbers(_ text: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        var found: [Range<Int>] = []
        var i = 0
        while i < text.count {
            let c = text.scalar(at: i)
            let n = UTF8.width(c)
            if GPT2PreTokenizer.classify(c.value) == .number || GPT2PreTokenizer.isLaterNumber(c.value) { found.append(i..<i + n) }
            i += n
        }
        return found
    }

    /// Cuts `text` at `matches` (sorted, not overlapping) under `behavior` (tokenizers'
    /// NormalizedString.split), calling `emit` with each non-empty piece.
    private static func cut(_ text: UnsafeBufferPointer<UInt8>, _ matches: [Range<Int>], _ behavior: TokenizerJSON.SplitBehavior,
                            _ emit: (Range<Int>) -> Void) {
        guard !matches.isEmpty else { return emit(0..<text.count) }
        // The text as alternating stretches and matches.
        var events: [(range: Range<Int>, isMatch: Bool)] = []
        var previous = 0
        for m in matches {
            if previous < m.lowerBound { events.append((previous..<m.lowerBound, false)) }
            events.append((m, true))
            previous = m.upperBound
        }
        if previous < text.count { events.append((previous..<text.count, false)) }

        var pieces: [Range<Int>] = []
        switch behavior {
        case .isolated:
            pieces = events.map(\.range)
        case .removed:
            pieces = events.filter { !$0.isMatch }.map(\.range)
        case .contiguous:
            var previousMatch = false
            for e in events {
                if e.isMatch == previousMatch, let last = pieces.last {
                    pieces[pieces.count - 1] = last.lowerBound..<e.range.upperBound
                } else {
                    pieces.append(e.range)
                }
                previousMatch = e.isMatch
            }
        case .mergedWithPrevious:
            var previousMatch = false
            for e in events {
                if e.isMatch && !previousMatch, let last = pieces.last {
                    pieces[pieces.count - 1] = last.lowerBound..<e.range.upperBound
                } else {
                    pieces.append(e.range)
                }
                previousMatch = e.isMatch
            }
        case .mergedWithNext:
            var previousMatch = false
            for e in events.reversed() {
                if e.isMatch && !previousMatch, let last = pieces.last {
                    pieces[pieces.count - 1] = e.range.lowerBound..<last.upperBound
                } else {
                    pieces.append(e.range)
                }
                previousMatch = e.isMatch
            }
            pieces.reverse()
        }
        for piece in pieces where !piece.isEmpty { emit(piece) }
    }
}
