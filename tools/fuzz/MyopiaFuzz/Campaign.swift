// One target's fuzzing in this process: its seeds, its inputs, and the tally of what they did.
// The driver (myopia-fuzz) runs campaigns in child processes so that a trap or a hang is caught
// and attributed to one input; the smoke test in `swift test` runs a short campaign in-process.

import Foundation
import Myopia

public final class Campaign {
    public let target: FuzzTarget
    public let mutator: Mutator
    public let runSeed: UInt64
    /// This target's scratch folder (inputs are written here).
    public let folder: URL

    /// `corpus` is tools/fuzz/corpus: its TARGET/ folder holds the seeds (every file in it, in name
    /// order); without one, the seeds are made in memory (Seeds.make).
    public init(target: FuzzTarget, corpus: URL?, runSeed: UInt64, scratch: URL) throws {
        self.target = target
        self.runSeed = runSeed
        var seeds: [[UInt8]] = []
        if let corpus {
            let dir = corpus.appendingPathComponent(target.name)
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
            for name in names { seeds.append([UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))) }
        }
        if seeds.isEmpty { seeds = try Seeds.make(target.name).map(\.1) }
        mutator = Mutator(seeds: seeds, kind: target.kind, dictionary: target.dictionary, maxBytes: target.maxBytes,
                          fields: target.fields)
        folder = scratch.appendingPathComponent(target.name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    public var seedCount: Int { mutator.seeds.count }

    public func input(_ index: Int) -> [UInt8] { mutator.input(index, runSeed: runSeed, target: target.name) }

    /// Runs input `index`; returns what it did and how long it took.
    public func run(_ index: Int) -> (outcome: FuzzTarget.Outcome, seconds: Double) {
        let bytes = input(index)
        let start = DispatchTime.now().uptimeNanoseconds
        let outcome = autoreleasepool { target.run(bytes, in: folder) }
        return (outcome, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
}

#if !canImport(ObjectiveC)
@inline(__always) func autoreleasepool<T>(_ body: () throws -> T) rethrows -> T { try body() }
#endif

/// What a campaign found, as the summary prints it and summary.json stores it.
public struct FuzzTally: Codable, Sendable {
    public var target: String
    public var inputs = 0
    public var accepted = 0
    public var rejected = 0
    /// Refusals that were not an InputError naming the file and a field.
    public var badRejections = 0
    /// Input indices that killed the process (a trap, a signal, an allocation over the limit).
    public var crashes: [Int] = []
    /// Input indices that ran past the time limit.
    public var hangs: [Int] = []
    public var slowestSeconds = 0.0
    public var slowestInput = -1
    /// Distinct refusals (case and folded field) and how often each was seen.
    public var errorKinds: [String: Int] = [:]
    /// Distinct refusal messages (capped at `maxMessages`).
    public var messages: Set<String> = []
    public var distinctMessages = 0
    /// The first few bad refusals, verbatim.
    public var badExamples: [String] = []
    /// Peak resident memory of the process(es) that ran the inputs, MB.
    public var peakMemoryMB = 0.0

    static let maxMessages = 5000

    public init(target: String) { self.target = target }

    public mutating func record(_ index: Int, _ outcome: FuzzTarget.Outcome, seconds: Double) {
        inputs += 1
        if seconds > slowestSeconds { slowestSeconds = seconds; slowestInput = index }
        switch outcome {
        case .accepted:
            accepted += 1
        case .rejected(let kind, let message):
            rejected += 1
            errorKinds[kind, default: 0] += 1
            if messages.count < Self.maxMessages, messages.insert(message).inserted { distinctMessages += 1 }
        case .badRejection(let why):
            badRejections += 1
            if badExamples.count < 20 { badExamples.append("input \(index): \(why)") }
        }
    }

    public var passed: Bool { badRejections == 0 && crashes.isEmpty && hangs.isEmpty }
}
