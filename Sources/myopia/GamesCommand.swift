import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct GamesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "games",
        abstract: "The games experiment: train one model per training game from the same seeds and compare what each learns.",
        discussion: """
        For each seed S and game G in --games, trains a model into OUT/G-seedS with the same settings, initial weights and batches — only the game differs (docs/games.md) — then measures it on the validation split: the next-token loss (teacher-forced, the t+1 head) overall and by position, the gradient horizon under the run's flow, the upstream table for its game, a generation study (loop share, distinct-n, free-running against teacher-forced loss) and the continuation advantage (how much easier the model's own sampled token makes the true continuation, R(x̂) − R(x), as the consequence objective defines it). Each run folder gets eval.json, horizon.json, upstream.json, generation.json and continuation_advantage.json.

        --games is a comma list of games, each optionally with its main knob: scheduled-sampling=ρ, consequence=λ, multi-token=N. The other knobs come from the game flags (--consequence-horizon, --consequence-positions, --consequence-estimator), a --config file or the defaults.

        Writes OUT/games.json: per game each measurement over seeds (mean, sample std and a 95% t-interval, mean ± t·s/√n), and for each consequence game, paired by seed with teacher-forced, the validation loss it gives up and the continuation advantage it gains. With one seed there is no interval. Prints a table; `myopia report OUT` draws it.

        Settings come from the defaults (those of `myopia train`), then --config FILE.json (keys as the flags), then the flags. --resume reuses runs already in OUT (finished ones are only measured again).

        Examples:
          myopia games --data tinyshakespeare --seeds 1,2,3 --layers 2 \\
              --d-model 64 --seq-len 64 --steps 400 --out runs/games
          myopia games --data corpus.txt --games teacher-forced,consequence=1 \\
              --consequence-horizon 3 --seeds 1,2 --steps 200 --json
        """)

    @Option(help: "The games: a comma list of teacher-forced, scheduled-sampling=ρ, consequence=λ, multi-token=N (default: all four, with ρ 0.25, λ 0.5, N 2).")
    var games: String?
    @Option(help: "The seeds, a comma list (1,2,3).") var seeds = "1,2,3"
    @Option(help: "The folder for the runs and games.json.") var out = "runs/games"
    @Option(name: .customLong("score-windows"), parsing: .unconditional, help: "Validation windows the next-token loss is scored on (default: the whole split).")
    var scoreWindows: Int?
    @Option(name: .customLong("measure-windows"), parsing: .unconditional, help: "Validation windows for the horizon and the upstream table.")
    var measureWindows = 8
    @Option(name: .customLong("max-offset"), parsing: .unconditional, help: "The largest offset k of the horizon and the upstream table.")
    var maxOffset = 8
    @Option(name: .customLong("draws"), parsing: .unconditional, help: "Resamples of each output per window in the upstream table.")
    var draws = 4
    @Option(parsing: .unconditional, help: "Generation study: samples per model.") var samples = 8
    @Option(name: .customLong("max-tokens"), parsing: .unconditional, help: "Generation study: tokens per sample.") var maxTokens = 64
    @Option(name: .customLong("advantage-windows"), parsing: .unconditional, help: "Validation windows for the continuation advantage.")
    var advantageWindows = 16
    @OptionGroup var settings: TrainingFlags
    @Flag(help: "Reuse the runs already in --out.") var resume = false
    @Flag(help: "Print only the table.") var quiet = false
    @Flag(help: "Print games.json's contents as JSON.") var json = false

    func seedList() throws -> [UInt64] {
        let parts = seeds.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let list = parts.compactMap { UInt64($0) }
        guard list.count == parts.count, !list.isEmpty else {
            throw ValidationError("--seeds \(seeds): expected a comma list of non-negative integers like 1,2,3")
        }
        return list
    }

    func validate() throws {
        _ = try seedList()
        if settings.game.game != nil {
            throw ValidationError("--game names one game; myopia games takes the list as --games")
        }
    }

    /// The shared settings (as teacher forcing) and the games, their unset knobs from the game
    /// flags and the --config file.
    func resolved() throws -> (config: TrainConfig, games: [TrainingGame]) {
        var base = try settings.resolve(applyingGame: false)
        try settings.game.setKnobs(of: &base)
        let list = try GamesExperiment.parseGames(games ?? GamesExperiment.defaultSpec, base: base)
        base.game = .teacherForced
        return (base, list)
    }

    func run() throws {
        Terminal.quiet = quiet || json
        Terminal.catchInterrupts(resume: "run the same command with --resume to continue (finished runs are reused)")
        try reportingErrors {
            let (config, gameList) = try resolved()
            let seedList = try seedList()
            try checkOutput(out)
            let tokenizer = try Tokenizers.load(config.tokenizer, log: Terminal.info)
            let dataset = try DataSource.load(config.data, tokenizer: tokenizer, validationFraction: config.validationFraction,
                                              log: Terminal.info)
            var measure = GamesExperiment.Measure()
            measure.scoreWindows = scoreWindows
            measure.horizonWindows = measureWindows
            measure.upstreamWindows = measureWindows
            measure.maxOffset = min(maxOffset, config.seqLen - 1)
            measure.upstreamDraws = draws
            measure.samples = samples
            measure.maxTokens = maxTokens
            measure.promptTokens = min(measure.promptTokens, max(1, config.seqLen / 2))
            measure.advantageWindows = advantageWindows
            let options = GamesExperiment.Options(config: config, games: gameList, seeds: seedList, out: URL(fileURLWithPath: out),
                                                  resume: resume, measure: measure)
            Terminal.info("\(gameList.count * seedList.count) runs of \(config.steps) steps (\(config.family) \(config.layers) layers, "
                          + "d_model \(config.dModel), T \(config.seqLen), batch \(config.batch), \(config.flow) flow) on \(dataset.train.count) training tokens")
            var started = Date()
            let summary = try GamesExperiment.run(options, dataset: dataset, tokenizer: tokenizer, log: Terminal.info, onStart: { game, s in
                Terminal.info("training \(GamesExperiment.label(game)), seed \(s)")
                Terminal.runStarted("\(GamesExperiment.label(game)) seed \(s)")
                started = Date()
            }, onTrainLog: { m in
                Terminal.studyProgress(m, steps: config.steps, started: started)
            })
            if json {
                try printJSON(summary)
            } else {
                print(GamesExperiment.format(summary))
                print("summary in \(URL(fileURLWithPath: out).appendingPathComponent(GamesExperiment.summaryFile).path)")
            }
        }
    }
}
