// A JSON reader for files a user hands us (tokenizer.json): strict RFC 8259 over UTF-8 bytes, with
// each value addressed by its path so that a refusal names the field — `model.vocab["Ġthe"]`,
// `pre_tokenizer.pretokenizers[1].type`.
//
// Written here rather than taken from Foundation because a tokenizer.json is large (Llama 3's is
// 9 MB: 128k vocabulary entries and 280k merges) and untrusted: this parser keeps integers apart
// from reals and booleans on every platform, refuses duplicate keys (which JSONSerialization
// resolves silently), limits nesting depth (no stack overflow on "[[[[…"), and says where a
// syntax error is (line and column).

import Foundation
import MyopiaSupport

indirect enum JSONValue: Sendable {
    case null
    case bool(Bool)
    /// A number written without fraction or exponent that fits in Int.
    case integer(Int)
    case real(Double)
    case string(String)
    case array([JSONValue])
    /// Members in the order written (keys are unique).
    case object([(key: String, value: JSONValue)])

    /// Deeper documents are refused (a tokenizer.json is a few levels deep).
    static let maxDepth = 64

    /// Parses a whole document; `file` names it in errors.
    static func parse(_ bytes: [UInt8], file: String) throws -> JSONValue {
        try bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(bytes: buffer, file: file)
            return try parser.document()
        }
    }

    /// What the value is, for messages: "the string \"x\"", "the number 3", "an array", ...
    var summary: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "\(b)"
        case .integer(let i): return "the number \(i)"
        case .real(let d): return "the number \(d)"
        case .string(let s): return "the string \(BPETokenizer.quoted(s))"
        case .array(let a): return "an array of \(a.count)"
        case .object: return "an object"
        }
    }
}

private struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    let file: String
    var i = 0
    var depth = 0

    init(bytes: UnsafeBufferPointer<UInt8>, file: String) {
        self.bytes = bytes
        self.file = file
    }

    mutating func document() throws -> JSONValue {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { throw error("a byte-order mark before the document") }
        skipSpace()
        let value = try self.value()
        skipSpace()
        guard i == bytes.count else { throw error("text after the document") }
        return value
    }

    private func error(_ what: String) -> InputError {
        // Line and column (in characters) of byte i.
        var line = 1, column = 1, k = 0
        while k < min(i, bytes.count) {
            if bytes[k] == 0x0A { line += 1; column = 1 } else if bytes[k] & 0xC0 != 0x80 { column += 1 }
            k += 1
        }
        return .invalidHeader(file: file, field: "JSON", reason: "not valid JSON: \(what) at line \(line), column \(column)")
    }

    private mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func value() throws -> JSONValue {
        guard i < bytes.count else { throw error("the end of the file where a value was expected") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("an unexpected character where a value was expected")
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard bytes.count - i >= n, memcmp(bytes.baseAddress! + i, word.utf8Start, n) == 0 else {
            throw error("an unexpected character where a value was expected")
        }
        i += n
    }

    private mutating func enter() throws {
        depth += 1
        if depth > JSONValue.maxDepth { throw error("nesting deeper than \(JSONValue.maxDepth) levels") }
    }

    private mutating func object() throws -> JSONValue {
        try enter()
        i += 1
        var members: [(key: String, value: JSONValue)] = []
        var keys = Set<String>()
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; depth -= 1; return .object(members) }
        while true {
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("a missing key (a string) in an object") }
            let keyStart = i
            let key = try string()
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("a missing ':' after a key") }
            i += 1
            skipSpace()
            guard keys.insert(key).inserted else {
                i = keyStart
                throw error("the key \(BPETokenizer.quoted(key)) a second time in one object")
            }
            members.append((key, try value()))
            skipSpace()
            guard i < bytes.count else { throw error("the end of the file inside an object") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; break }
            throw error("a missing ',' or '}' in an object")
        }
        depth -= 1
        return .object(members)
    }

    private mutating func array() throws -> JSONValue {
        try enter()
        i += 1
        var elements: [JSONValue] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; depth -= 1; return .array(elements) }
        while true {
            skipSpace()
            elements.append(try value())
            skipSpace()
            guard i < bytes.count else { throw error("the end of the file inside an array") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; break }
            throw error("a missing ',' or ']' in an array")
        }
        depth -= 1
        return .array(elements)
    }

    private mutating func number() throws -> JSONValue {
        let start = i
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        func digits() -> Int {
            let s = i
            while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
            return i - s
        }
        let intStart = i
        let intDigits = digits()
        guard intDigits > 0 else { throw error("a malformed number") }
        if intDigits > 1 && bytes[intStart] == UInt8(ascii: "0") { i = intStart; throw error("a number with a leading zero") }
        var integral = true
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { throw error("a malformed number") }
            integral = false
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw error("a malformed number") }
            integral = false
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
        if integral, let value = Int(text) { return .integer(value) }
        guard let value = Double(text), value.isFinite else {
            i = start
            throw error("a number too large to represent")
        }
        return .real(value)
    }

    /// A string literal starting at the quote; the bytes must be valid UTF-8.
    private mutating func string() throws -> String {
        i += 1
        var out: [UInt8] = []
        var runStart = i
        while true {
            guard i < bytes.count else { throw error("the end of the file inside a string") }
            let b = bytes[i]
            if b == UInt8(ascii: "\"") { break }
            if b < 0x20 { throw error("a control character (U+\(String(format: "%04X", b))) inside a string") }
            if b != UInt8(ascii: "\\") { i += 1; continue }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
            i += 1
            guard i < bytes.count else { throw error("the end of the file inside a string") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    guard bytes.count - i >= 2, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw error("a lone surrogate \\u\(String(format: "%04X", scalar)) in a string")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw error("a lone surrogate \\u\(String(format: "%04X", scalar)) in a string") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw error("a lone surrogate \\u\(String(format: "%04X", scalar)) in a string")
                }
                out.append(contentsOf: String(Unicode.Scalar(scalar)!).utf8)
            default:
                i -= 2
                throw error("an unknown escape in a string")
            }
            runStart = i
        }
        let s: String
        if out.isEmpty {
            s = try utf8(UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
        } else {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
            s = try out.withUnsafeBufferPointer { try utf8($0) }
        }
        i += 1
        return s
    }

    private func utf8(_ b: UnsafeBufferPointer<UInt8>) throws -> String {
        guard let s = String(validating: b, as: UTF8.self) else { throw error("bytes that are not UTF-8 in a string") }
        return s
    }

    private mutating func hex4() throws -> UInt32 {
        guard bytes.count - i >= 4 else { throw error("a truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("a malformed \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }
}

/// A value with where it is: every accessor that finds the wrong thing throws an InputError
/// naming the file and `path`.
struct JSONField {
    let value: JSONValue
    /// `model.vocab["Ġthe"]`, `pre_tokenizer.pretokenizers[1]`; "" for the whole document.
    let path: String
    let file: String

    private var name: String { path.isEmpty ? "(top level)" : path }

    func wrong(_ expected: String) -> InputError {
        .invalidValue(file: file, field: name, expected: expected, found: value.summary)
    }

    var isNull: Bool { if case .null = value { return true } else { return false } }

    func string() throws -> String {
        guard case .string(let s) = value else { throw wrong("a string") }
        return s
    }

    func bool() throws -> Bool {
        guard case .bool(let b) = value else { throw wrong("true or false") }
        return b
    }

    func int(in range: ClosedRange<Int>) throws -> Int {
        guard case .integer(let v) = value, range.contains(v) else { throw wrong("an integer in \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    func array() throws -> [JSONField] {
        guard case .array(let elements) = value else { throw wrong("an array") }
        return elements.enumerated().map { JSONField(value: $0.element, path: "\(path)[\($0.offset)]", file: file) }
    }

    /// The members of an object that is a map (keys are data, like the vocabulary's tokens).
    func entries() throws -> [(key: String, field: JSONField)] {
        guard case .object(let members) = value else { throw wrong("an object") }
        return members.map { ($0.key, JSONField(value: $0.value, path: "\(path)[\(BPETokenizer.quoted($0.key))]", file: file)) }
    }

    /// The member `key` of an object (a record: keys are field names), or nil when absent.
    func member(_ key: String) throws -> JSONField? {
        guard case .object(let members) = value else { throw wrong("an object") }
        return members.first { $0.key == key }.map { JSONField(value: $0.value, path: path.isEmpty ? key : "\(path).\(key)", file: file) }
    }

    /// The member `key`, which must be there.
    func required(_ key: String) throws -> JSONField {
        guard let field = try member(key) else {
            throw InputError.missing(file: file, field: path.isEmpty ? key : "\(path).\(key)")
        }
        return field
    }

    /// The member `key` unless it is absent or null.
    func optional(_ key: String) throws -> JSONField? {
        guard let field = try member(key), !field.isNull else { return nil }
        return field
    }
}
