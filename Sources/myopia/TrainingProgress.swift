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
