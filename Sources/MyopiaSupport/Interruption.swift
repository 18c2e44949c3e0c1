import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Ctrl-C (SIGINT) as a request to stop at the next safe point: a training loop finishes the step
/// it is in, saves a checkpoint and stops with `Interrupted`; a second Ctrl-C exits at once (every
/// checkpoint is written atomically, so that loses nothing already saved). Without `install()` the
/// signal keeps its default action (the process ends).
public enum Interruption {
    private static let signals = Atomic<Int>(0)

    /// Whether a stop was requested (Ctrl-C once, or `request()`).
    public static var isRequested: Bool { signals.load(ordering: .relaxed) > 0 }

    /// Asks the running loop to stop at its next safe point, as Ctrl-C does.
    public static func request() { signals.add(1, ordering: .relaxed) }

    /// Forgets a request (after a stop has been handled, or in tests).
    public static func reset() { signals.store(0, ordering: .relaxed) }

    /// Installs the SIGINT handler: the first signal sets the request and says so on stderr, the
    /// second exits with status 130 (128 + SIGINT).
    public static func install() {
        signal(SIGINT) { _ in
            let (old, _) = Interruption.signals.add(1, ordering: .relaxed)
            if old == 0 {
                let text: StaticString = "\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)\n"
                _ = write(STDERR_FILENO, text.utf8Start, text.utf8CodeUnitCount)   // async-signal-safe
            } else {
                _exit(130)
            }
        }
    }
}

/// A run stopped on request (Ctrl-C) after saving a checkpoint.
public struct Interrupted: Error, CustomStringConvertible, Equatable {
    /// The steps done, of the steps the run was to make.
    public var step: Int
    public var steps: Int
    /// The checkpoint saved at `step`, or nil where the run keeps none (what it saves is in `saved`).
    public var checkpoint: String?
    /// What the run was (e.g. "vanilla seed 2"), for commands that make several.
    public var run: String?

    public init(step: Int, steps: Int, checkpoint: String?, run: String? = nil) {
        self.step = step
        self.steps = steps
        self.checkpoint = checkpoint
        self.run = run
    }

    public var description: String {
        let what = run.map { "\($0): " } ?? ""
        let saved = checkpoint.map { "checkpoint saved in \($0)" } ?? "nothing saved"
        return "interrupted: \(what)stopped after step \(step) of \(steps); \(saved)"
    }
}
