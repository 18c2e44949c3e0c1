import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct ReportCommand: ConfigFileCommand {
    static let configExample = #"{"title": "Sine runs"}"#
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Build one self-contained HTML report (inline SVG charts) from run folders.",
        usage: "myopia report [<options>] <runs> ...",
        discussion: """
        Each folder contributes what it holds: a gap study (gap.json): the flows' losses with spread, validation curves, loss by position and the gap by position; a bonus study (bonus.json); a training run (run_config.json + metrics.jsonl): loss curves and, when logged, the gradient split; horizon*.json: the horizon heatmap and share curves; what `--out RUN` of the analysis commands leaves: eval.json (loss by position), probe.json (probe loss and accuracy heatmaps beside the baselines), sine_probe.json (R² heatmap), lens.json (lens heatmaps) and generation.json (the samples, loops highlighted, and their metrics); and the settings and commands that made them. A folder with none of these stands for the run folders inside it. Several runs of one kind (two training runs, vanilla and myopic horizons, …) are also drawn together at the top. The file needs no network and no scripts.

        Examples:
          myopia report runs/gap
          myopia report runs/vanilla runs/myopic --out comparison.html \\
              --title "vanilla vs myopic"
        """)

    @Argument(help: "Run folders.") var runs: [String]
    @Option(help: "The HTML file to write (default: report.html in the first folder).") var out: String?
    @Option(help: "The report's title.") var title = "Myopia report"
    @OptionGroup var configFile: ConfigFileOption<ReportCommand>

    func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("name at least one run folder") }
    }

    func run() throws {
        try reportingErrors {
            let folders = runs.map { URL(fileURLWithPath: $0) }
            let file = out.map { URL(fileURLWithPath: $0) } ?? folders[0].appendingPathComponent(Report.defaultFile)
            try checkOutput(file.path, isFile: true)
            let html = try Report.build(runs: folders, title: title, file: file)
            try AtomicFile.write(Data(html.utf8), to: file)
            print("wrote \(file.path) (\(html.utf8.count / 1024) KB)")
        }
    }
}
