import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct LensCommand: ConfigFileCommand, RunFolderOutput {
    static let configuration = CommandConfiguration(
        commandName: "lens",
        abstract: "The logit lens: the model's own head read off every layer's residual stream.",
        discussion: """
        The final norm and unembedding applied to the residual stream h_{l,i} (l < L: entering block l; l = L: after the last block), scored against the token at i+1+k for each offset k: mean cross-entropy (nats) and top-1 accuracy per layer × offset, with the file's unigram distribution on the same targets for scale. The last row at k = 0 is the model's own prediction: its loss is what `myopia eval` reports for the same --seq-len and windows. Windows are those of `myopia eval`; the token at i+1+k is read from the text, past the window's end where need be.

        Examples:
          myopia lens --model runs/shakespeare --data tinyshakespeare --seq-len 128 \\
              --offsets 0..3
          myopia lens --model smollm2-135m --data tinyshakespeare --seq-len 128 \\
              --layers 0,6,12,18,24,30 --offsets 0..3 --max-windows 64 --json
          myopia lens --model runs/shakespeare --data tinyshakespeare --seq-len 128 \\
              --out runs/shakespeare
        """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var input: DataWindowOptions
    @Option(help: "Residual streams: all, a list (0,2,4) or a range (0..4); L is the one after the last block.")
    var layers = "all"
    @Option(help: "Offsets k: score the token at i+1+k (a list or a range).") var offsets = "0..3"
    @Option(help: "Use at most this many positions, rounded up to whole windows.") var positions: Int?
    @OptionGroup var tokenizer: TokenizerOption
    @OptionGroup var output: OutputOptions<LensCommand>
    @OptionGroup var configFile: ConfigFileOption<LensCommand>

    static let outputFiles = LensTable.fileName

    func validate() throws {
        if let positions, positions <= 0 { throw ValidationError("--positions must be positive") }
        _ = try parseIndexList(offsets, option: "--offsets", range: 0...1_000_000)
    }

    struct Output: Encodable {
        let checkpoint: String
        let data: String
        let seq_len: Int
        let seconds: Double
        let lens: LensTable
    }

    func run() throws {
        Terminal.quiet = output.quiet || output.json
        let batch = input.batch, maxWindows = input.maxWindows
        try reportingErrors {
            let seqLen = try input.seqLen(for: model.nameOrPath)
            let (source, model, tok) = try ModelInputs.load(self.model.nameOrPath, seqLen: seqLen, tokenizer: tokenizer.tokenizer,
                                                            log: Terminal.info)
            let layerList = try parseIndexList(layers, option: "--layers", range: 0...model.config.nLayers)
            let offsetList = try parseIndexList(offsets, option: "--offsets", range: 0...1_000_000)
            let (url, tokens) = try DataSource.tokens(input.data, seqLen: seqLen, tokenizer: tok, log: Terminal.info)
            let windows = [maxWindows, positions.map { ($0 + seqLen - 1) / seqLen }].compactMap { $0 }.min()
            let started = Date()
            let table = LogitLens.compute(model, tokens: tokens, seqLen: seqLen, layers: layerList, offsets: offsetList,
                                          windows: windows, batch: batch, group: Distributed.group) { done, total in
                Terminal.progress(done, of: total, started: started, status: "windows")
            }
            let seconds = Date().timeIntervalSince(started)
            if let out = output.folder, Distributed.group.rank == 0 {
                let file = try RunFolder.write(table, as: LensTable.fileName, record: AnalysisRecord(
                    command: "lens", model: source.path, data: url.path,
                    settings: ["seq_len": "\(seqLen)", "layers": layers, "offsets": offsets, "windows": "\(table.windows)",
                               "batch": "\(batch)", "tokenizer": tok.name], seconds: seconds), to: out)
                Terminal.info("wrote \(file.path)")
            }
            if output.json {
                try printJSON(Output(checkpoint: source.path, data: url.path, seq_len: seqLen, seconds: seconds, lens: table))
                return
            }
            print("logit lens: cross-entropy (nats) and top-1 accuracy of the token at i+1+k from unembed(h_{l,i})")
            print("\(table.windows) windows of \(seqLen) (\(table.counts.first ?? 0) positions) in \(String(format: "%.1f", seconds)) s; layer \(model.config.nLayers) at k=0 is the model's own loss")
            print(LogitLens.format(table))
        }
    }
}
