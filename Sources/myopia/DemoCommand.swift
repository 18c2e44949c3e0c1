import ArgumentParser
import Foundation
import MyopiaLab

struct DemoCommand: ConfigFileCommand {
    static let configExample = #"{"seed": 2}"#
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "The main job: train vanilla and myopic models, measure the gap, the horizon, probes and generation, write a report.",
        usage: "myopia demo [<options>]",
        discussion: """
        With no arguments, a few minutes on 2 cores (the measured time is in README.md, with the date and the CPU; budget 15 minutes), in stages, each in its own folder of --out:

          sine/          the synthetic pre-caching task: a vanilla and a myopic
                         model (p 1, f 3) against the no-pre-caching floor; the
                         horizon and regression probes of sin(f·x_{n−i}) for each
          shakespeare/   tiny-shakespeare: the myopia gap over 2 seeds, the gradient
                         split logged while training; for each flow's first-seed
                         model the horizon, linear probes, the logit lens and a
                         generation study (loops, distinct-n, free-running vs
                         teacher-forced loss)
          games/         the training games on the same text: a smaller model per
                         game and seed, measured as `myopia games` does (~1 min)
          smollm2/       SmolLM2-135M: horizon, probes, lens and generation, when it
                         is cached or its ~270 MB download fits in the time left
                         (--budget)

        Then report.html over all of them, summary.json and plan.json (every setting), and a summary table. Progress goes to stderr, the table to stdout.

        Without a package registry the text stages train on offline synthetic text (folder synthetic-text/) and say so in one line; the sine task needs no data. --quick runs every stage with tiny models (under a minute) and never downloads SmolLM2. Results are deterministic for a --seed, except whether SmolLM2 fits in the budget.

        Examples:
          myopia demo
          myopia demo --quick --out /tmp/demo
          myopia demo --offline --skip-smollm2 --seed 2 --out runs/demo-seed2
        """)

    @Option(help: "Where to write the demo's folders, report.html and summary.json.") var out = "runs/demo"
    @Option(help: "Seed for everything (the text gap uses this seed and the next).") var seed: UInt64 = 1
    @Flag(help: "Every stage with tiny models (under a minute): for tests and a first look.") var quick = false
    @Flag(help: "Do not use the package registry: train the text stages on offline synthetic text.") var offline = false
    @Flag(name: .customLong("skip-smollm2"), help: "Do not run the SmolLM2-135M stage.") var skipSmolLM2 = false
    @Option(help: "Wall-time budget: seconds, or 30m, 2h; the SmolLM2 stage runs only if it fits (default 900; --quick 180).")
    var budget: BudgetArgument?
    @Flag(help: "Print summary.json's contents instead of the table.") var json = false
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false
    @OptionGroup var configFile: ConfigFileOption<DemoCommand>

    func run() throws {
        Terminal.quiet = quiet || json
        Terminal.catchInterrupts(resume: nil)
        try reportingErrors {
            var partStarted = Date()
            let options = Demo.Options(out: URL(fileURLWithPath: out), quick: quick, seed: seed, offline: offline,
                                       skipSmolLM2: skipSmolLM2, budget: budget?.seconds)
            let summary = try Demo.run(options, log: { line in
                Terminal.info(line)
                // "STAGE: training RUN (…)": the runs begun, for what Ctrl-C reports as finished.
                if let r = line.range(of: ": training ") {
                    let rest = line[r.upperBound...]
                    let name = rest.range(of: " (").map { rest[..<$0.lowerBound] } ?? rest
                    Terminal.runStarted(String(line[..<r.lowerBound]) + " " + String(name))
                }
            }) { p in
                if p.done == 0 { partStarted = Date(); return }   // a new part: its own rate and ETA
                guard Terminal.isTTY || p.milestone else { return }   // logs: one line per milestone
                Terminal.progress(p.done, of: p.total, started: partStarted, status: p.status)
            }
            if json { try printJSON(summary); return }
            print("")
            print(Demo.format(summary))
        }
    }
}
