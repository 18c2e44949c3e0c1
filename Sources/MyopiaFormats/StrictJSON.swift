// A small strict JSON parser for the JSON that decides what is read from a weights file: safetensors
// headers and model.safetensors.index.json (docs/DESIGN.md §6, §8). JSONSerialization would
// silently keep one of two members with the same name and turn 1.5 into a number that looks like
// an integer.

/// A string quoted for an error message, with control characters escaped.
func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += "\\u{\(String(scalar.value, radix: 16))}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// Keeps object members in order with duplicates (so they can be reported), keeps numbers as text
/// (so 64-bit offsets are exact and 1.5 is not silently an integer), and limits nesting depth so a
/// hostile file cannot exhaust the stack. Strings must be checked as UTF-8 by the caller.
enum StrictJSON {
    indirect enum Value {
        case null, bool(Bool), number(String), string(String)
        case array([Value]), object([(String, Value)])

        var kind: String {
            switch self {
            case .null: return "null"
            case .bool: return "a boolean"
            case .number: return "a number"
            case .string: return "a string"
            case .array: return "an array"
            case .object: return "an object"
            }
        }

        /// Short rendering for messages.
        var summary: String {
            switch self {
            case .null: return "null"
            case .bool(let b): return "\(b)"
            case .number(let t): return t
            case .string(let s): return quoted(s.count > 40 ? String(s.prefix(40)) + "…" : s)
            case .array(let a): return "[" + a.prefix(8).map(\.summary).joined(separator: ", ") + (a.count > 8 ? ", …]" : "]")
            case .object(let o): return "{" + o.prefix(4).map { quoted($0.0) + ": …" }.joined(separator: ", ") + (o.count > 4 ? ", …}" : "}")
            }
        }
    }

    struct ParseError: Error { let offset: Int; let message: String }

    struct Parser {
        let bytes: UnsafeRawBufferPointer
        var pos = 0
        let maxDepth = 64

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func parseDocument() throws -> Value {
            skipWhitespace()
            let value = try parseValue(depth: 0)
            skipWhitespace()   // trailing space padding
            guard pos == bytes.count else { throw fail("unexpected \(describe(pos)) after the end of the JSON value") }
            return value
        }

        private func fail(_ message: String) -> ParseError { ParseError(offset: pos, message: message) }

        private func describe(_ i: Int) -> String {
            guard i < bytes.count else { return "end of the JSON" }
            let b = bytes[i]
            return (0x21...0x7E).contains(b) ? "'\(Character(UnicodeScalar(b)))'" : "byte 0x\(String(b, radix: 16))"
        }

        private mutating func skipWhitespace() {
            while pos < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[pos]) { pos += 1 }
        }

        private mutating func parseValue(depth: Int) throws -> Value {
            guard depth < maxDepth else { throw fail("nested deeper than \(maxDepth) levels") }
            guard pos < bytes.count else { throw fail("unexpected end of the JSON, expected a value") }
            switch bytes[pos] {
            case UInt8(ascii: "{"): return try parseObject(depth: depth)
            case UInt8(ascii: "["): return try parseArray(depth: depth)
            case UInt8(ascii: "\""): return .string(try parseString())
            case UInt8(ascii: "t"): try expectWord("true"); return .bool(true)
            case UInt8(ascii: "f"): try expectWord("false"); return .bool(false)
            case UInt8(ascii: "n"): try expectWord("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
            default: throw fail("unexpected \(describe(pos)), expected a value")
            }
        }

        private mutating func expectWord(_ word: String) throws {
            for c in word.utf8 {
                guard pos < bytes.count, bytes[pos] == c else { throw fail("invalid literal, expected \(word)") }
                pos += 1
            }
        }

        private mutating func parseObject(depth: Int) throws -> Value {
            pos += 1
            var members: [(String, Value)] = []
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("unexpected \(describe(pos)), expected a quoted key") }
                let key = try parseString()
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("unexpected \(describe(pos)), expected ':'") }
                pos += 1
                skipWhitespace()
                members.append((key, try parseValue(depth: depth + 1)))
                skipWhitespace()
                guard pos < bytes.count else { throw fail("unexpected end of the JSON inside an object") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
                throw fail("unexpected \(describe(pos)), expected ',' or '}'")
            }
        }

        private mutating func parseArray(depth: Int) throws -> Value {
            pos += 1
            var items: [Value] = []
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try parseValue(depth: depth + 1))
                skipWhitespace()
                guard pos < bytes.count else { throw fail("unexpected end of the JSON inside an array") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
                throw fail("unexpected \(describe(pos)), expected ',' or ']'")
            }
        }

        /// Returns the number's text; the grammar is checked here, the value by the caller.
        private mutating func parseNumber() throws -> String {
            let start = pos
            func digits() -> Int {
                let s = pos
                while pos < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[pos]) { pos += 1 }
                return pos - s
            }
            if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            let intStart = pos
            let intDigits = digits()
            guard intDigits > 0 else { throw fail("invalid number") }
            if intDigits > 1, bytes[intStart] == UInt8(ascii: "0") { throw ParseError(offset: intStart, message: "invalid number (leading zero)") }
            if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
                pos += 1
                guard digits() > 0 else { throw fail("invalid number (no digits after '.')") }
            }
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
                pos += 1
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
                guard digits() > 0 else { throw fail("invalid number (no digits in exponent)") }
            }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        }

        private mutating func parseString() throws -> String {
            pos += 1   // opening quote
            var out = [UInt8]()
            while true {
                guard pos < bytes.count else { throw fail("unterminated string") }
                let b = bytes[pos]
                if b == UInt8(ascii: "\"") { pos += 1; break }
                if b < 0x20 { throw fail("control character 0x\(String(b, radix: 16)) in string") }
                if b != UInt8(ascii: "\\") { out.append(b); pos += 1; continue }
                pos += 1
                guard pos < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate in \\u escape")
                        }
                        pos += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid low surrogate in \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw fail("unpaired surrogate in \\u escape")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default:
                    throw fail("invalid escape '\\\(Character(UnicodeScalar(e)))'")
                }
            }
            return String(decoding: out, as: UTF8.self)
        }

        private mutating func hex4() throws -> UInt32 {
            guard pos + 4 <= bytes.count else { throw fail("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[pos]
                let d: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
                default: throw fail("invalid hex digit in \\u escape")
                }
                v = v << 4 | d
                pos += 1
            }
            return v
        }
    }
}
