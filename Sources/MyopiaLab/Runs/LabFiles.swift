// LabFiles: the small JSON and text files experiments write into their run folders.

import Foundation
import Myopia

/// Small helpers shared by MyopiaLab's experiments.
enum LabFiles {
    /// Creates `dir` and checks that it can be written (a probe file), before an experiment's work.
    static func createDirectory(_ dir: URL) throws {
        try Trainer.prepareOutput(dir)
    }

    /// Pretty, sorted JSON with NaN written as the string "nan" (JSON has no NaN), as every run-folder file.
    static func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
        try AtomicFile.write(try RunFolder.encoder.encode(value), to: url)
    }
}
