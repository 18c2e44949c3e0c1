import Foundation

/// The 256-symbol byte tokenizer: every byte of UTF-8 text is one token.
public struct ByteTokenizer: Sendable {
    public static let name = "byte"
    public let vocabSize = 256

    public init() {}

    public func encode(_ data: Data) -> [Int32] { data.map { Int32($0) } }
    public func encode(_ text: String) -> [Int32] { Array(text.utf8).map { Int32($0) } }

    /// Decodes ids to text; bytes that are not valid UTF-8 become U+FFFD. Ids outside 0..<256 are skipped.
    public func decode(_ ids: [Int32]) -> String {
        let bytes = ids.compactMap { (0..<256).contains($0) ? UInt8($0) : nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
