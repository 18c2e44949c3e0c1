import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct ReproduceCommand: ConfigFileCommand {
    static let configExample = #"{"budget": "30m"}"#
    static let configuration = CommandConfiguration(
        commandName: "reproduce",
        abstract: "Check Myopia against the literature: the paper's figures beside ours.",
        usage: "myopia reproduce <paper> [--budget 30m|2h|8h] [--quick] [--out <out>]",
        discussion: """
        Wu, Morris & Levine 2024 ("Do Language Models Plan for Future Tokens?") at the scale a budget allows. Each budget is a fixed plan (models, steps, seeds) written to plan.json before any work; a budget in seconds gets the largest plan that fits. Sections, each in its own folder of --out:

          sine-pP-fF/        the synthetic task at p 0.3 and 1 (f 3; f 10 from 2h):
                             vanilla vs myopic over seeds against the floor,
                             regression probes of sin(f·x) by layer
          text-gap/          the myopia gap with the GPT-2 tokenizer, 64-token
                             windows: vanilla, myopic, transformer bigram, 3 seeds;
                             dynamics.json of the first vanilla run (every kept
                             checkpoint measured)
          bonus/             the local myopia bonus over seeds, by position
          pretrained-gap/    SmolLM2-135M-Instruct (Q4_1): myopic vs vanilla
          pretrained-bonus/  fine-tunes, and its local myopia bonus

        Then reproduce.json (each row: paper, measured, interval, scale, verdict) and report.html. Verdicts follow stated rules: same sign with the interval excluding 0, the per-position crossover, within a factor (docs/reproduce.md). Rows the machine cannot measure say why. Ctrl-C stops at a safe point; the same command again resumes, reusing finished sections. --quick: tiny models, every section, a few minutes (a tiny stand-in for SmolLM2).

        Examples:
          myopia reproduce wu2024 --quick --out /tmp/wu2024
          myopia reproduce wu2024 --budget 2h --out runs/wu2024
        """)

    @Argument(help: ArgumentHelp("The paper: wu2024.", valueName: "paper")) var paper: String
    @Option(help: ArgumentHelp("Wall-time budget: 30m, 2h, 8h, or seconds (default 2h).", valueName: "budget"))
    var budget: BudgetArgument?
    @Flag(help: "Tiny models, every section, a few minutes: for tests and a first look.") var quick = false
    @Option(help: "Seed of the plan (seeds S, S+1, S+2 where it needs several).") var seed: UInt64 = 1
    @Option(help: "Where to write plan.json, the sections, reproduce.json and report.html.") var out = "runs/reproduce-wu2024"
    @Flag(help: "Print reproduce.json's contents instead of the table.") var json = false
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false
    @OptionGroup var configFile: ConfigFileOption<ReproduceCommand>

    func validate() throws {
        guard paper == "wu2024" else { throw ValidationError("unknown paper '\(paper)'; known: wu2024") }
        if let budget, !quick, Reproduce.Tier.fitting(budget.seconds) == nil {
            throw ValidationError("--budget \(Int(budget.seconds)) s is below the smallest plan (30m); use --quick for a few minutes")
        }
    }

    func run() throws {
        Terminal.quiet = quiet || json
        Terminal.catchInterrupts(resume: "run the same command again to continue (finished sections are reused)")
        try reportingErrors {
            try checkOutput(out)
            let seconds = budget?.seconds ?? Reproduce.Tier.twoHours.seconds
            let tier = quick ? .quick : Reproduce.Tier.fitting(seconds) ?? .halfHour
            var partStarted = Date()
            let table = try Reproduce.run(Reproduce.Options(out: URL(fileURLWithPath: out), tier: tier, budget: budget?.seconds, seed: seed),
                                          log: { line in
                Terminal.info(line)
                if let r = line.range(of: ": training ") ?? line.range(of: ": fine-tuning ") {
                    let rest = line[r.upperBound...]
                    Terminal.runStarted(String(line[..<r.lowerBound]) + " " + String(rest.prefix { $0 != "(" }).trimmingCharacters(in: .whitespaces))
                }
            }) { p in
                if p.done == 0 { partStarted = Date(); return }
                guard Terminal.isTTY || p.milestone else { return }
                Terminal.progress(p.done, of: max(p.total, p.done), started: partStarted, status: "\(p.section): \(p.status)")
            }
            if json { try printJSON(table); return }
            print(Self.format(table))
            print("report: \(URL(fileURLWithPath: out).appendingPathComponent(Report.defaultFile).path)")
        }
    }

    /// The table on the terminal: one line per row, each column as wide as its widest cell.
    static func format(_ t: Reproduce.Table) -> String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.4g", $0) } ?? "–" }
        func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0) }
        let header = ["figure", "paper", "measured [95% interval]", "verdict"]
        let cells = t.rows.map { r -> [String] in
            let measured = r.verdict == .notMeasured ? "–" : f(r.measured) + (r.interval.map { " [\(f($0[0])), \(f($0[1]))]" } ?? "")
            return [r.id, f(r.paper.value), measured, r.verdict.rawValue + (r.reason.map { ": \($0)" } ?? "")]
        }
        let widths = (0..<3).map { c in ([header] + cells).map { $0[c].count }.max()! + 2 }
        func line(_ row: [String]) -> String { (0..<3).map { pad(row[$0], widths[$0]) }.joined() + row[3] }
        let title = "\(t.paper.title) (\(t.paper.arxiv)): plan \(t.tier.rawValue), seed \(t.seed), \(Int(t.seconds)) s on \(t.cores) cores"
            + (t.checkedAgainstPaperText ? "" : "; paper figures not yet checked against the paper's text")
        return ([title, "", line(header)] + cells.map(line)).joined(separator: "\n")
    }
}
