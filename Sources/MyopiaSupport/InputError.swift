// InputError: the one typed error for untrusted input (docs/DESIGN.md §8): files, flags, names.
//
// Every case names its source (a path, a caller-given name such as an asset, or "flags" / the
// flag itself for command-line input) and, where there is one, the field, so that the message
// alone tells a person what to fix:
//
//   model.safetensors: tensor "h.0.attn.c_attn.weight" data_offsets [0, 100]:
//     expected 442368 bytes (F32 × [96, 288]), found 100
//
// It is shared by safetensors, GGUF, config.json, tokenizer files, corpora, assets, training
// settings and activation names. It lives at the bottom of the module graph so that every layer
// can throw it without depending on the file formats.

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum InputError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The input ends before `field` is complete.
    case truncated(file: String, field: String, expected: String, found: String)
    /// The header / structure cannot be parsed at all (bad JSON, not an object, duplicate key...).
    case invalidHeader(file: String, field: String, reason: String)
    /// A field parses but holds a value that is not allowed.
    case invalidValue(file: String, field: String, expected: String, found: String)
    /// A required field is absent.
    case missing(file: String, field: String)
    /// A well-formed value this code does not handle (e.g. converting I64 to floats, a new dtype).
    case unsupported(file: String, field: String, value: String)
    /// Content does not hash to the recorded / pinned sha256.
    case checksumMismatch(file: String, expected: String, found: String)
    /// Reading, writing, renaming or creating a file or folder failed.
    case io(file: String, reason: String)
    /// An external tool (python3, pip, tar) needed to produce `file` is not available.
    case toolUnavailable(file: String, tool: String, hint: String)
    /// Fetching `file` (an asset) from a package registry failed.
    case fetchFailed(file: String, reason: String)

    /// The file or source name the error is about.
    public var file: String {
        switch self {
        case .truncated(let f, _, _, _), .invalidHeader(let f, _, _), .invalidValue(let f, _, _, _),
             .missing(let f, _), .unsupported(let f, _, _), .checksumMismatch(let f, _, _),
             .io(let f, _), .toolUnavailable(let f, _, _), .fetchFailed(let f, _):
            return f
        }
    }

    /// The field the error is about, where the case has one.
    public var field: String? {
        switch self {
        case .truncated(_, let f, _, _), .invalidHeader(_, let f, _), .invalidValue(_, let f, _, _),
             .missing(_, let f), .unsupported(_, let f, _):
            return f
        case .checksumMismatch, .io, .toolUnavailable, .fetchFailed:
            return nil
        }
    }

    public var description: String {
        switch self {
        case .truncated(let file, let field, let expected, let found):
            return "\(file): \(field): truncated: expected \(expected), found \(found)"
        case .invalidHeader(let file, let field, let reason):
            return "\(file): \(field): \(reason)"
        case .invalidValue(let file, let field, let expected, let found):
            return "\(file): \(field): expected \(expected), found \(found)"
        case .missing(let file, let field):
            return "\(file): \(field): missing"
        case .unsupported(let file, let field, let value):
            return "\(file): \(field): unsupported value \(value)"
        case .checksumMismatch(let file, let expected, let found):
            return "\(file): sha256 mismatch: expected \(expected), found \(found)"
        case .io(let file, let reason):
            return "\(file): \(reason)"
        case .toolUnavailable(let file, let tool, let hint):
            return "\(file): needs \(tool), which is not available: \(hint)"
        case .fetchFailed(let file, let reason):
            return "\(file): fetch failed: \(reason)"
        }
    }
}

extension InputError {
    /// Why `data` is not JSON, with where it stops ("Invalid value around character 8."), or nil
    /// when it parses. JSONDecoder's own message says only that the data was not valid JSON.
    public static func jsonSyntax(in data: Data, file: String) -> InputError? {
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            return nil
        } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? error.localizedDescription
            return .invalidHeader(file: file, field: "(top level)", reason: "not valid JSON: \(detail)")
        }
    }

    /// A decoding error naming the file and the field; for text that is not JSON at all, where it stops.
    public static func decoding(_ error: DecodingError, data: Data, file: String) -> InputError {
        if case .dataCorrupted(let context) = error, context.codingPath.isEmpty, let syntax = jsonSyntax(in: data, file: file) {
            return syntax
        }
        return InputError(decoding: error, file: file)
    }

    /// The same error about `file`: for errors raised where the path is not known (inside a
    /// decoder, which names only "flags" or "config.json"), re-filed by the caller that knows it.
    public func filed(under file: String) -> InputError {
        switch self {
        case .truncated(_, let field, let expected, let found): return .truncated(file: file, field: field, expected: expected, found: found)
        case .invalidHeader(_, let field, let reason): return .invalidHeader(file: file, field: field, reason: reason)
        case .invalidValue(_, let field, let expected, let found): return .invalidValue(file: file, field: field, expected: expected, found: found)
        case .missing(_, let field): return .missing(file: file, field: field)
        case .unsupported(_, let field, let value): return .unsupported(file: file, field: field, value: value)
        case .checksumMismatch(_, let expected, let found): return .checksumMismatch(file: file, expected: expected, found: found)
        case .io(_, let reason): return .io(file: file, reason: reason)
        case .toolUnavailable(_, let tool, let hint): return .toolUnavailable(file: file, tool: tool, hint: hint)
        case .fetchFailed(_, let reason): return .fetchFailed(file: file, reason: reason)
        }
    }

    /// A InputError.io for a failed POSIX call, with strerror(errno) text.
    public static func posix(_ file: String, _ what: String, errno code: Int32) -> InputError {
        .io(file: file, reason: "\(what) failed: \(String(cString: strerror(code))) (errno \(code))")
    }
}

extension InputError {
    /// Maps Foundation's decoding errors to a line that names the file and the JSON field.
    public init(decoding error: DecodingError, file: String) {
        func path(_ p: [CodingKey]) -> String {
            p.isEmpty ? "(top level)" : p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let ctx):
            self = .invalidValue(file: file, field: path(ctx.codingPath + [key]), expected: "a value", found: "nothing (missing key)")
        case .typeMismatch(let type, let ctx):
            self = .invalidValue(file: file, field: path(ctx.codingPath), expected: "\(type)", found: ctx.debugDescription)
        case .valueNotFound(let type, let ctx):
            self = .invalidValue(file: file, field: path(ctx.codingPath), expected: "\(type)", found: "null")
        case .dataCorrupted(let ctx):
            self = .invalidHeader(file: file, field: path(ctx.codingPath), reason: ctx.debugDescription)
        @unknown default:
            self = .invalidHeader(file: file, field: "(json)", reason: "\(error)")
        }
    }
}
