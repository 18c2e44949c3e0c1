import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct HorizonCommand: ConfigFileCommand, RunFolderOutput {
    static let configuration = CommandConfiguration(
        commandName: "horizon",
        abstract: "Which future token each layer's training signal serves: the exact gradient horizon.",
        discussion: """
        For the residual stream h_{l,i} entering block l (the last row: after the last block) and each offset k = t − i, the mean of ‖∂ℓ_t/∂h_{l,i}‖ over sequences and positions (ℓ_t: the loss of the prediction at t). k = 0 is the token right after i; k = 1 the one after that. Also the share of Σ‖g‖² at each offset and its mean offset. Exact: one backward channel per target position. --max-offset K limits each channel to positions t−K…t (still exact for k ≤ K, and cheaper).

        A model with continuous heads (the sine task) is measured on fresh sequences of that task (--p, --frequency, --window, --seed); --data is then not needed.

        Examples:
          myopia horizon --checkpoint runs/sine-vanilla/checkpoint-1500 \\
              --seq-len 64 --p 1 --frequency 3 --max-offset 20
          myopia horizon --checkpoint runs/shakespeare --data tinyshakespeare \\
              --seq-len 128 --max-offset 16 --sequences 32
          myopia horizon --checkpoint runs/shakespeare --data tinyshakespeare \\
              --seq-len 128 --json > horizon.json
          myopia horizon --model runs/shakespeare --data tinyshakespeare \\
              --seq-len 128 --out runs/shakespeare
          # under the flow that trained the model (myopic: offset 0 only):
          myopia horizon --model runs/shakespeare-myopic --data tinyshakespeare \\
              --flow own
          # the horizon heatmap and share curves beside the training curves:
          myopia report runs/shakespeare
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "A text file, or a known dataset name (token models).") var data: String?
    @Option(help: "Sine task: probability that z_n = 1 (continuous models).") var p = 1.0
    @Option(help: "Sine task: frequency f.") var frequency = 3.0
    @Option(help: "Sine task: window W.") var window = 10
    @Option(help: "Sine task: seed of the sequences.") var seed: UInt64 = 12345
    @OptionGroup var windows: WindowOptions
    @Option(name: .customLong("max-offset"), help: "Largest offset k = t − i (default T − 1).") var maxOffset: Int?
    @Option(help: "Use at most this many windows.") var sequences = 16
    @Option(help: "The derivative measured: vanilla (the true one, whatever flow trained the model), own (the flow the model was trained with), myopic, beta=β or bigram.")
    var flow = "vanilla"
    @OptionGroup var output: OutputOptions<HorizonCommand>
    @OptionGroup var configFile: ConfigFileOption<HorizonCommand>

    static let outputFiles = HorizonTable.fileName

    func validate() throws {
        guard sequences > 0 else { throw ValidationError("--sequences must be positive") }
        if let maxOffset, maxOffset < 0 { throw ValidationError("--max-offset must be zero or more") }
    }

    func run() throws {
        Terminal.quiet = output.quiet || output.json
        let batch = windows.batch
        try reportingErrors {
            let seqLen = try windows.seqLen(for: model.nameOrPath)
            let location = try ModelSource.locate(self.model.nameOrPath, log: Terminal.info)
            // --flow own: the flow the model was trained with, as its run recorded it.
            let ownFlow = ModelInputs.trainedFlow(location)
            guard flow != "own" || ownFlow != nil else {
                throw FlagError("--flow own: \(self.model.nameOrPath) records no training flow (a model from elsewhere); name the flow")
            }
            let gradientFlow = try flow == "own" ? ownFlow! : GradientFlow(parsing: flow, allowsLocalMyopic: false)
            guard gradientFlow != .localMyopic else { throw FlagError("--flow own: the horizon of a local-myopic model is not measured") }
            let started = Date()
            let report = { (done: Int, total: Int) in Terminal.progress(done, of: total, started: started, status: "sequences") }
            let table: HorizonTable
            var dataPath: String?
            if try ModelSource.config(at: location).isContinuous {
                let model = try ModelInputs.loadContinuous(location, seqLen: seqLen)
                let data = try SineTask(p: p, frequency: frequency, window: window).sequences(sequences, seqLen: seqLen, seed: seed)
                table = Horizon.compute(model, sine: data, maxOffset: maxOffset, flow: gradientFlow, batch: batch, progress: report)
            } else {
                guard let data else { throw ValidationError("--data is needed for a language model") }
                let (_, model, tokenizer) = try ModelInputs.load(location, seqLen: seqLen, need: .gradient, log: Terminal.info)
                let (url, tokens) = try DataSource.tokens(data, seqLen: seqLen, tokenizer: tokenizer, log: Terminal.info)
                dataPath = url.path
                // Under mpirun each rank takes its run of the windows' batches (docs/distributed.md).
                table = Horizon.compute(model, tokens: tokens, seqLen: seqLen, maxOffset: maxOffset, sequences: sequences,
                                        flow: gradientFlow, batch: batch, group: Distributed.group, progress: report)
            }
            if let out = output.folder, Distributed.group.rank == 0 {
                let file = try RunFolder.write(table, as: HorizonTable.fileName, record: AnalysisRecord(
                    command: "horizon", model: location.url.path, data: dataPath,
                    settings: ["seq_len": "\(seqLen)", "max_offset": "\(table.maxOffset)", "sequences": "\(table.sequences)",
                               "flow": gradientFlow.description, "batch": "\(batch)", "p": "\(p)", "frequency": "\(frequency)", "window": "\(window)", "seed": "\(seed)"],
                    seconds: Date().timeIntervalSince(started)), to: out)
                Terminal.info("wrote \(file.path)")
            }
            if output.json { try printJSON(table); return }
            print("gradient horizon: mean ‖∂ℓ_t/∂h_{l,i}‖ by layer l and offset k = t − i (\(table.sequences) sequences of \(seqLen), \(table.flow))")
            print(Horizon.format(table))
        }
    }
}
