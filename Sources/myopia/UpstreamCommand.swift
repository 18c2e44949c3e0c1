import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct UpstreamCommand: ConfigFileCommand, RunFolderOutput {
    static let configuration = CommandConfiguration(
        commandName: "upstream",
        abstract: "What is upstream of the loss, and what training optimises: the table of a game and a flow.",
        usage: "myopia upstream [<options>] --model <model> --data <data>\n--seq-len <seq-len>",
        discussion: """
        Rows are the free variables whose position matters: the residual stream h_{l,i} entering each block (and after the last), their mean, and the token the model samples at position i; plus a summary row for the weights. Columns are offsets k ≥ 0: the loss terms whose target is token i+1+k. Each cell holds two measured numbers, "upstream / optimised", with 95% intervals over windows in --json.

        Activations: upstream is the norm of the true gradient ‖∂ℓ/∂h_{l,i}‖ (the horizon, on the inputs the game trains on); optimised is the gradient the flow actually sends. Outputs: upstream is E|ℓ(x̂) − ℓ(x)| when the sampled token takes the place of x_{i+1} wherever the game reads it (weighted as the objective weighs that loss); optimised is the norm of the game's policy-gradient term, split by the offset of the continuation token that produced it. Weights: the norms of the game's whole gradient, true and under the flow. Nothing is looked up by game name: a game with its knob at zero gives the teacher-forced table (docs/games.md).

        The game and flow default to the ones the model was trained with (its run's run_config.json), else teacher-forced and vanilla.

        Examples:
          myopia upstream --model runs/shakespeare --data tinyshakespeare \\
              --seq-len 64
          myopia upstream --model runs/ss --data tinyshakespeare --seq-len 64 \\
              --game scheduled-sampling --sample-rate 0.25 --json
          myopia upstream --model runs/mtp --data tinyshakespeare --seq-len 64 \\
              --flow myopic --windows 32 --draws 8 --out runs/mtp
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "A text file, or a known dataset name.") var data: String
    @OptionGroup var windowOptions: WindowOptions
    @Option(help: "Windows of T+1 tokens measured (the intervals are over them).") var windows = 16
    @Option(name: .customLong("max-offset"), help: "Largest offset k (default T − 1).") var maxOffset: Int?
    @Option(help: "Resamples of each position's output per window.") var draws = 4
    @Option(help: "Seed of the resamples and of the game's own draws.") var seed: UInt64 = 1
    @Option(help: "Gradient flow: vanilla, myopic, beta=β or bigram (default: the model's run's).") var flow: String?
    @OptionGroup var game: GameFlags
    @OptionGroup var output: OutputOptions<UpstreamCommand>
    @OptionGroup var configFile: ConfigFileOption<UpstreamCommand>

    static let outputFiles = UpstreamTable.fileName

    func validate() throws {
        guard windows > 0 else { throw ValidationError("--windows must be positive") }
        guard draws > 0 else { throw ValidationError("--draws must be positive") }
        if let maxOffset, maxOffset < 0 { throw ValidationError("--max-offset must be zero or more") }
    }

    func run() throws {
        Terminal.quiet = output.quiet || output.json
        try reportingErrors {
            let seqLen = try windowOptions.seqLen(for: model.nameOrPath)
            let started = Date()
            let location = try ModelSource.locate(model.nameOrPath, log: Terminal.info)
            let (_, loaded, tokenizer) = try ModelInputs.load(location, seqLen: seqLen, need: .gradient, log: Terminal.info)
            // The run's own game and flow, unless flags say otherwise.
            var settings = Trainer.recordedConfig(in: location.url) ?? TrainConfig()
            settings.seqLen = seqLen
            if game.anyGiven { try game.apply(to: &settings) }
            if let flow { settings.flow = try GradientFlow(parsing: flow, allowsLocalMyopic: false) }
            let (url, tokens) = try DataSource.tokens(data, seqLen: seqLen, tokenizer: tokenizer, log: Terminal.info)
            Terminal.info("game \(settings.game), flow \(settings.flow)")
            let table = try Upstream.measure(loaded, tokens: tokens, seqLen: seqLen, game: settings.game, flow: settings.flow,
                                             options: Upstream.Options(windows: windows, maxOffset: maxOffset, draws: draws,
                                                                       seed: seed, batch: windowOptions.batch)) { done, total in
                Terminal.progress(done, of: total, started: started, status: "activations, outputs, weights")
            }
            if let out = output.folder {
                let file = try RunFolder.write(table, as: UpstreamTable.fileName, record: AnalysisRecord(
                    command: "upstream", model: location.url.path, data: url.path,
                    settings: ["seq_len": "\(seqLen)", "max_offset": "\(table.maxOffset)", "windows": "\(table.windows)",
                               "draws": "\(draws)", "seed": "\(seed)", "game": "\(settings.game)", "flow": settings.flow.description,
                               "batch": "\(windowOptions.batch)"],
                    seconds: Date().timeIntervalSince(started)), to: out)
                Terminal.info("wrote \(file.path)")
            }
            if output.json { try printJSON(table); return }
            print("upstream / optimised by variable and offset k (the loss on token i+1+k):")
            print("\(table.game) game, \(table.flow) flow, \(table.windows) windows of \(seqLen)")
            print(Upstream.format(table))
        }
    }
}
