import Foundation
import Myopia

extension Terminal {
    /// Shows a logged step of one of a study's training runs (gap, bonus), timed from `started`:
    /// every logged step on a terminal, one line per validation in logs.
    static func studyProgress(_ m: TrainMetrics, steps: Int, started: Date) {
        guard isTTY || m.valLoss != nil else { return }
        let val = m.valLoss.map { String(format: " val %.4f", $0) } ?? ""
        progress(m.step, of: steps, started: started,
                 status: String(format: "loss %.4f%@  %.0f tok/s", m.trainLoss, val, m.tokensPerSecond))
    }
}

// Ctrl-C in the commands that train (train, gap, bonus, games, synthetic, demo): the run in progress
// saves a checkpoint and stops with `Interrupted`; the command then says what finished and what did not.
extension Terminal {
    nonisolated(unsafe) private static var runs: [String] = []
    nonisolated(unsafe) private static var resumeHint: String?

    /// Turns Ctrl-C into a stop at the end of the step (Interruption); `resume`: how to continue.
    static func catchInterrupts(resume: String?) {
        resumeHint = resume
        Interruption.install()
    }

    /// A run of the command begins (e.g. "vanilla seed 2"): the runs begun before it have finished.
    static func runStarted(_ run: String) { runs.append(run) }

    /// Says where the interrupted run stopped, what it saved, which runs finished before it, and how
    /// to continue. Shown even with --quiet.
    static func interrupted(_ stop: Interrupted) {
        var stop = stop
        if stop.run == nil { stop.run = runs.last }
        var lines = ["\(stop)"]
        let finished = runs.isEmpty ? [] : Array(runs.dropLast())
        if runs.count > 1 || !finished.isEmpty {
            lines.append("finished: " + (finished.isEmpty ? "none" : finished.joined(separator: ", ")) + "; not finished: \(stop.run ?? "this run") and those after it")
        }
        if let resumeHint { lines.append(resumeHint) }
        clearLine()
        FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}
