import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct DynamicsCommand: ConfigFileCommand {
    static let configExample = #"{"eval_windows": 64}"#
    static let configuration = CommandConfiguration(
        commandName: "dynamics",
        abstract: "How pre-caching appears over training: every kept checkpoint of a run, measured.",
        usage: "myopia dynamics [<options>] <run>",
        discussion: """
        For each checkpoint of RUN (train with --checkpoint-at log:20 to keep a curve's worth beside the rolling two), on the run's validation split: the loss, the gradient horizon's mean offset by layer, and the gain of a probe for the token after next (k = 1) over the current-token baseline by layer. Where RUN has a myopic twin — `gap` trains vanilla-seedS and myopic-seedS side by side; give both --checkpoint-at — also the per-position loss of the twin minus RUN's at the same step. The gradient split ‖g_future‖/‖g_vanilla‖ the run logged (--log-gradient-split) is read from its metrics.jsonl. Writes dynamics.json into RUN.

        Examples:
          myopia gap --data tinyshakespeare --steps 2000 \\
              --checkpoint-at log:20 --out runs/gap
          myopia dynamics runs/gap/vanilla-seed1
        """)

    @Argument(help: ArgumentHelp("A training run folder.", valueName: "run")) var folder: String
    @Option(name: .customLong("eval-windows"), help: "Validation windows scored at each checkpoint.") var evalWindows = 32
    @Option(name: .customLong("horizon-sequences"), help: "Windows the horizon averages over.") var horizonSequences = 8
    @Option(name: .customLong("probe-positions"), help: "Validation positions the probes read.") var probePositions = 2048
    @Option(help: "Windows per forward pass.") var batch = 8
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false
    @OptionGroup var configFile: ConfigFileOption<DynamicsCommand>

    func validate() throws {
        for (value, flag) in [(evalWindows, "--eval-windows"), (horizonSequences, "--horizon-sequences"),
                              (probePositions, "--probe-positions"), (batch, "--batch")] where value <= 0 {
            throw ValidationError("\(flag) must be positive")
        }
    }

    func run() throws {
        Terminal.quiet = quiet || json
        try reportingErrors {
            let run = URL(fileURLWithPath: folder)
            guard FileManager.default.fileExists(atPath: run.path) else {
                throw InputError.io(file: run.path, reason: "no such run folder")
            }
            try checkOutput(folder)   // dynamics.json goes into it: writable before any work
            var options = Dynamics.Options()
            options.evalWindows = evalWindows
            options.horizonSequences = horizonSequences
            options.probePositions = probePositions
            options.batch = batch
            let started = Date()
            let table = try Dynamics.run(run, options: options, log: Terminal.info)
            let file = try RunFolder.write(table, as: DynamicsTable.fileName, record: AnalysisRecord(
                command: "dynamics", model: run.path, data: nil,
                settings: ["eval_windows": "\(evalWindows)", "horizon_sequences": "\(horizonSequences)",
                           "probe_positions": "\(probePositions)", "batch": "\(batch)"],
                seconds: Date().timeIntervalSince(started)), to: run)
            Terminal.info("wrote \(file.path)")
            if json { try printJSON(table); return }
            print("dynamics of \(run.path)" + (table.twin.map { " (myopic twin: \($0))" } ?? ""))
            print("   step     loss    gap   mean offset by layer          probe gain (k = 1) by layer")
            for p in table.points {
                let offsets = p.horizonMeanOffset.map { String(format: "%.2f", $0) }.joined(separator: " ")
                let gains = p.probeGain.map { String(format: "%+.3f", $0) }.joined(separator: " ")
                print(String(format: "%7d  %7.4f  %@   %@   %@", p.step, p.valLoss,
                             p.gap.map { String(format: "%+.3f", $0) } ?? "   — ", offsets, gains))
            }
        }
    }
}
