import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct ProbeCommand: ConfigFileCommand, RunFolderOutput {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Linear probes: how much each layer's hidden state knows about the tokens ahead.",
        discussion: """
        For each residual stream h_{l,i} (l < L: entering block l; l = L: after the last block) and each offset k, a linear softmax probe from h_{l,i} to the token at i+1+k, trained on 80% of the windows and scored on the other 20% (spread evenly through the text): held-out cross-entropy (nats) and top-1 accuracy. Beside it, on the same held-out positions: the unigram distribution and the best predictor from the current token alone (counts of (x_i, token at i+1+k) on the training windows, smoothed toward the unigram, the smoothing chosen by cross-validation on them). A probe that beats the current-token predictor at k ≥ 1 reads information about the future from h beyond the token itself.

        The classes are the --top N most frequent target tokens plus "other"; the probe and both baselines are scored over these N+1 classes. `coverage` is the share of held-out targets inside the top N. Windows are those of `myopia eval`; the token at i+1+k is read from the text, past the window's end where need be. One forward pass per batch of windows serves every layer; the hidden states are kept as binary16; the probes are minibatch Adam on standardised features, all offsets of a layer at once.

        A model with continuous heads (the sine task) is probed with least-squares regressions onto sin(f·x_{n−i}) for each lag i (--lags), on fresh sequences (--p, --frequency, --window, --seed, --sequences): held-out R² per layer and lag.

        Examples:
          myopia probe --model runs/shakespeare --data tinyshakespeare --seq-len 128 \\
              --offsets 0..4
          myopia probe --model smollm2-135m --data tinyshakespeare --seq-len 128 \\
              --layers 0,6,12,18,24,30 --offsets 0..3 --positions 20000 --json
          myopia probe --checkpoint runs/sine-vanilla-p1-f3 --seq-len 64 --p 1 \\
              --frequency 3 --lags 0..10
          myopia probe --model runs/shakespeare --data tinyshakespeare --seq-len 128 \\
              --out runs/shakespeare
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "A text file, or a known dataset name (token models).") var data: String?
    @OptionGroup var windows: WindowOptions
    @Option(help: "Residual streams to probe: all, a list (0,2,4) or a range (0..4); L is the one after the last block.")
    var layers = "all"
    @Option(help: "Offsets k: the probe predicts the token at i+1+k (a list or a range).") var offsets = "0..4"
    @Option(help: "Classes: the N most frequent target tokens plus \"other\".") var top = 256
    @Option(help: "Positions to use, rounded up to whole windows (token models).") var positions = 100_000
    @Option(name: .customLong("held-out"), help: "Share of the windows (sequences) held out for scoring.") var heldOut = 0.2
    @Option(help: "Probe training: passes over the training positions (at least 400 Adam steps in all).") var epochs = ProbeSettings().epochs
    @Option(name: .customLong("probe-batch"), help: "Probe training: positions per Adam step.") var probeBatch = ProbeSettings().batch
    @Option(help: "Probe training: peak Adam step × √(features): the step is lr/√D, cosine-decayed.") var lr = ProbeSettings().lr
    @Option(name: .customLong("weight-decay"), help: "Probe training: L2 penalty on the weights.") var weightDecay = ProbeSettings().weightDecay
    @Option(name: .customLong("shuffle-seed"), help: "Probe training: seed of the minibatch order.") var shuffleSeed: UInt64 = 1
    @OptionGroup var tokenizer: TokenizerOption
    @Option(help: "Continuous models: lags i of sin(f·x_{n−i}) (a list or a range).") var lags = "0..10"
    @Option(help: "Sine task: probability that z_n = 1.") var p = 1.0
    @Option(help: "Sine task: frequency f.") var frequency = 3.0
    @Option(help: "Sine task: window W.") var window = 10
    @Option(help: "Sine task: seed of the sequences.") var seed: UInt64 = 12345
    @Option(help: "Sine task: sequences (train and held out).") var sequences = 1024
    @Option(help: "Sine task: ridge penalty (× training rows) on the standardised normal equations.") var ridge = 1e-4
    @OptionGroup var output: OutputOptions<ProbeCommand>
    @OptionGroup var configFile: ConfigFileOption<ProbeCommand>

    static let outputFiles = "\(ProbeTable.fileName) (\(SineProbeTable.fileName) for a sine-task model)"

    var batch: Int { windows.batch }

    func validate() throws {
        guard top > 0 else { throw ValidationError("--top must be positive") }
        guard positions > 0 else { throw ValidationError("--positions must be positive") }
        guard heldOut > 0 && heldOut < 1 else { throw ValidationError("--held-out must be between 0 and 1") }
        guard sequences > 1 else { throw ValidationError("--sequences must be at least 2") }
        guard ridge >= 0 else { throw ValidationError("--ridge must be zero or more") }
        _ = try parseIndexList(offsets, option: "--offsets", range: 0...1_000_000)
        _ = try parseIndexList(lags, option: "--lags", range: 0...1_000_000)
        try settings.validate()
    }

    var settings: ProbeSettings {
        var s = ProbeSettings()
        s.epochs = epochs
        s.batch = probeBatch
        s.lr = lr
        s.weightDecay = weightDecay
        s.seed = shuffleSeed
        return s
    }

    struct TokenOutput: Encodable {
        let checkpoint: String
        let data: String
        let seq_len: Int
        let windows: Int
        let model_layers: Int
        let seconds_features: Double
        let probe: ProbeTable
    }

    struct SineOutput: Encodable {
        let checkpoint: String
        let model_layers: Int
        let probe: SineProbeTable
    }

    func run() throws {
        Terminal.quiet = output.quiet || output.json
        try reportingErrors {
            let location = try ModelSource.locate(model.nameOrPath, log: Terminal.info)
            let seqLen = try windows.seqLen(for: model.nameOrPath)
            if try ModelSource.config(at: location).isContinuous {
                try runSine(location, seqLen: seqLen)
            } else {
                try runTokens(location, seqLen: seqLen)
            }
        }
    }

    func runTokens(_ location: ModelSource.Location, seqLen: Int) throws {
        guard let data else { throw ValidationError("--data is needed for a language model") }
        let (source, model, tok) = try ModelInputs.load(location, seqLen: seqLen, tokenizer: tokenizer.tokenizer,
                                                        log: Terminal.info)
        let layerList = try parseIndexList(layers, option: "--layers", range: 0...model.config.nLayers)
        let offsetList = try parseIndexList(offsets, option: "--offsets", range: 0...1_000_000)
        let (url, tokens) = try DataSource.tokens(data, seqLen: seqLen, tokenizer: tok, log: Terminal.info)
        let started = Date()
        let probeData = TokenProbes.extract(model, tokens: tokens, seqLen: seqLen, layers: layerList, offsets: offsetList,
                                            positions: positions, batch: batch, group: Distributed.group) { done, total in
            Terminal.progress(done, of: total, started: started, status: "windows (hidden states)")
        }
        let featureSeconds = Date().timeIntervalSince(started)
        let windows = (probeData.group.last ?? -1) + 1
        Terminal.info("hidden states of \(probeData.current.count) positions × \(layerList.count) layers in \(String(format: "%.1f", featureSeconds)) s")
        let table = TokenProbes.run(probeData, layers: layerList, offsets: offsetList, top: top, heldOut: heldOut,
                                    settings: settings, progress: Terminal.info)
        try write(table, as: ProbeTable.fileName, model: source.path, data: url.path,
                  extra: ["seq_len": "\(seqLen)", "layers": layers, "offsets": offsets, "top": "\(top)", "positions": "\(positions)", "held_out": "\(heldOut)",
                          "epochs": "\(epochs)", "probe_batch": "\(probeBatch)", "lr": "\(lr)", "weight_decay": "\(weightDecay)",
                          "shuffle_seed": "\(shuffleSeed)", "tokenizer": tok.name], seconds: featureSeconds + table.seconds)
        if output.json {
            try printJSON(TokenOutput(checkpoint: source.path, data: url.path, seq_len: seqLen, windows: windows,
                                      model_layers: model.config.nLayers, seconds_features: featureSeconds, probe: table))
            return
        }
        print("probes: held-out cross-entropy (nats) and top-1 accuracy of the token at i+1+k from h_{l,i}")
        print("\(table.trainPositions) training / \(table.heldOutPositions) held-out positions (\(windows) windows of \(seqLen)); \(table.classes) classes (top \(table.classes - 1) + other, coverage \(String(format: "%.1f%%", 100 * table.coverage)))")
        print(TokenProbes.format(table, modelLayers: model.config.nLayers))
        print(String(format: "time: hidden states %.1f s, probes %.1f s", featureSeconds, table.seconds))
    }

    func runSine(_ location: ModelSource.Location, seqLen: Int) throws {
        let model = try ModelInputs.loadContinuous(location, seqLen: seqLen)
        let layerList = try parseIndexList(layers, option: "--layers", range: 0...model.config.nLayers)
        let lagList = try parseIndexList(lags, option: "--lags", range: 0...(seqLen - 1))
        let batchData = try SineTask(p: p, frequency: frequency, window: window).sequences(sequences, seqLen: seqLen, seed: seed)
        let table = SineProbes.compute(model, data: batchData, layers: layerList, lags: lagList, heldOut: heldOut,
                                       ridge: ridge, seed: seed)
        try write(table, as: SineProbeTable.fileName, model: location.url.path, data: nil,
                  extra: ["seq_len": "\(seqLen)", "layers": layers, "lags": lags, "p": "\(p)", "frequency": "\(frequency)", "window": "\(window)",
                          "seed": "\(seed)", "sequences": "\(sequences)", "held_out": "\(heldOut)", "ridge": "\(ridge)"], seconds: nil)
        if output.json {
            try printJSON(SineOutput(checkpoint: location.url.path, model_layers: model.config.nLayers, probe: table))
            return
        }
        print("regression probes: held-out R² of sin(\(frequency)·x_{n−i}) from h_{l,n} (\(table.trainSequences) training / \(table.heldOutSequences) held-out sequences of \(seqLen), p \(p))")
        print(SineProbes.format(table, modelLayers: model.config.nLayers))
    }
}

extension ProbeCommand {
    /// With --out, keeps `table` in the run folder with how it was made.
    func write<T: Encodable>(_ table: T, as fileName: String, model: String, data: String?, extra: [String: String], seconds: Double?) throws {
        // Under mpirun every rank holds the same table (the hidden states were gathered); rank 0 writes.
        guard let out = output.folder, Distributed.group.rank == 0 else { return }
        let record = AnalysisRecord(command: "probe", model: model, data: data,
                                    settings: extra.merging(["batch": "\(batch)"]) { a, _ in a }, seconds: seconds)
        let file = try RunFolder.write(table, as: fileName, record: record, to: out)
        Terminal.info("wrote \(file.path)")
    }
}
