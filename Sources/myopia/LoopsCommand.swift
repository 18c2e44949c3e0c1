import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct LoopsCommand: ConfigFileCommand, RunFolderOutput {
    static let configuration = CommandConfiguration(
        commandName: "loops",
        abstract: "The self-reinforcement of loops: how a repeated sentence raises its own probability.",
        usage: "myopia loops --model <model> --data <data> [<options>]",
        discussion: """
        Sentences of the data (cut after . ! or ? and at blank lines, for any tokenizer, bytes included), each repeated n times and then once more: against n = 1...--max-repeats, the mean probability the model gives the tokens of that next repetition (TP) and the share of them whose probability rose from the sentence's first occurrence (IP), as Xu et al. 2022 ("Learning to Break the Loop") measure them; means over sentences with 95% intervals. The first token of each repetition is left out of both (the first occurrence has no context for it). Sentences of fewer than 3 tokens, or too long to fit --max-repeats + 1 times in the context, are skipped.

        Examples:
          myopia loops --model runs/shakespeare --data tinyshakespeare
          myopia loops --model smollm2-135m --data tinyshakespeare --sentences 50 \\
              --max-repeats 8 --json
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "The text whose sentences are repeated (a file or tinyshakespeare).") var data: String
    @Option(help: "Use at most this many sentences, spread over the text.") var sentences = 100
    @Option(name: .customLong("max-repeats"), help: "Largest number of repetitions before the scored one.")
    var maxRepeats = 10
    @OptionGroup var tokenizer: TokenizerOption
    @OptionGroup var output: OutputOptions<LoopsCommand>
    @OptionGroup var configFile: ConfigFileOption<LoopsCommand>

    static let outputFiles = SelfReinforcement.fileName
    static let configExample = #"{"max_repeats": 10}"#

    func validate() throws {
        guard sentences >= 1 else { throw ValidationError("--sentences must be at least 1") }
        guard maxRepeats >= 1 else { throw ValidationError("--max-repeats must be at least 1") }
    }

    struct Output: Encodable {
        let model: String
        let data: String
        let seconds: Double
        let loops: SelfReinforcement.Report
    }

    func run() throws {
        Terminal.quiet = output.quiet || output.json
        try reportingErrors {
            let (source, model, tok) = try ModelInputs.load(self.model.nameOrPath, tokenizer: tokenizer.tokenizer, log: Terminal.info)
            let url = try DataSource.resolveTextFile(data, log: Terminal.info)
            let text: String
            do { text = try String(contentsOf: url, encoding: .utf8) } catch {
                throw InputError.io(file: url.path, reason: "cannot read the text as UTF-8 (\(error.localizedDescription))")
            }
            let units = SelfReinforcement.units(text, tokenizer: tok, maxRepeats: maxRepeats,
                                                maxPositions: model.config.maxPositions, count: sentences)
            guard !units.isEmpty else {
                throw InputError.invalidValue(file: url.path, field: "(sentences)",
                                              expected: "a sentence of 3 or more tokens that fits \(maxRepeats + 1) times in \(model.config.maxPositions) positions",
                                              found: "none")
            }
            let started = Date()
            let report = SelfReinforcement.compute(model, units: units, maxRepeats: maxRepeats) { done, total in
                Terminal.progress(done, of: total, started: started, status: "sentences")
            }
            let seconds = Date().timeIntervalSince(started)
            if let out = output.folder {
                let file = try RunFolder.write(report, as: SelfReinforcement.fileName, record: AnalysisRecord(
                    command: "loops", model: source.path, data: url.path,
                    settings: ["sentences": "\(sentences)", "max_repeats": "\(maxRepeats)", "tokenizer": tok.name],
                    seconds: seconds), to: out)
                Terminal.info("wrote \(file.path)")
            }
            if output.json {
                try printJSON(Output(model: source.path, data: url.path, seconds: seconds, loops: report))
                return
            }
            print("self-reinforcement over \(report.sentences) sentences (\(String(format: "%.1f", report.meanTokens)) tokens each): "
                  + "the repetition after n repetitions")
            print(SelfReinforcement.format(report))
        }
    }
}
