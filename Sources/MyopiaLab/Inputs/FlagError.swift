import Foundation

/// A command-line setting that the model, reference or data it meets cannot take (a --seq-len
/// longer than the model's context, a shape flag that disagrees with a reference, an index outside
/// the model's layers): the sentence to show, starting with the flag. A command reports it as it
/// reports a flag that fails its own check (a usage error), not as an input-file error.
public struct FlagError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
