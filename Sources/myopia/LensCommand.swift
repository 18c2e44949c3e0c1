import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct LensCommand: ConfigFileCommand {
    static let configuration = CommandConfiguration(
        commandName: "lens",
        abstract: "The logit lens: the model's own head read off every layer's residual stream.",
        discussion: """
        The final norm and unembedding applied to the residual stream h_{l,i} (l < L: entering block l;
        l = L: after the last block), scored against the token at i+1+k for each offset k: mean
        cross-entropy (nats) and top-1 accuracy per layer × offset, with the file's unigram distribution
        on the same targets for scale. The last row at k = 0 is the model's own prediction: its loss is
        what `myopia eval` reports for the same --seq-len and windows. Windows are those of `myopia eval`;
        the token at i+1+k is read from the text, past the window's end where need be.

        Example:
          myopia lens --model runs/shakespeare --data tinyshakespeare --seq-len 128 --offsets 0..3
          myopia lens --model smollm2-135m --data tinyshakespeare --seq-len 128 --layers 0,6,12,18,24,30 \\
              --offsets 0..3 --max-windows 64 --json
          myopia lens --model runs/shakespeare --data tinyshakespeare --seq-len 128 --out runs/shakespeare
        """)

    @Option(name: [.customLong("model"), .customLong("checkpoint")], help: modelOptionHelp) var checkpoint: String
    @Option(help: "A text file, or a known dataset name.") var data: String
    @Option(name: .customLong("seq-len"), help: "Window length T.") var seqLen: Int
    @Option(help: "Residual streams: all, a list (0,2,4) or a range (0..4); L is the one after the last block.")
    var layers = "all"
    @Option(help: "Offsets k: score the token at i+1+k (a list or a range).") var offsets = "0..3"
    @Option(name: .customLong("max-windows"), help: "Use at most this many windows (default: all).") var maxWindows: Int?
    @Option(help: "Use at most this many positions, rounded up to whole windows.") var positions: Int?
    @Option(help: "Windows per forward pass.") var batch = 8
    @Option(help: "Tokenizer: byte, gpt2 or a path (default: the one the model names).") var tokenizer: String?
    @Option(help: "A run folder to write lens.json into (and commands.json: how it was made), for `myopia report` and `myopia runs`.")
    var out: String?
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false
    @OptionGroup var configFile: ConfigFileOption

    func validate() throws {
        guard seqLen > 0 else { throw ValidationError("--seq-len must be positive") }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        if let maxWindows, maxWindows <= 0 { throw ValidationError("--max-windows must be positive") }
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
        Terminal.quiet = quiet || json
        try reportingErrors {
            let (source, model, tok) = try loadModel(checkpoint, seqLen: seqLen, tokenizer: tokenizer)
            let layerList = try parseIndexList(layers, option: "--layers", range: 0...model.config.nLayers)
            let offsetList = try parseIndexList(offsets, option: "--offsets", range: 0...1_000_000)
            let (url, tokens) = try DataSource.tokens(data, seqLen: seqLen, tokenizer: tok, log: Terminal.info)
            let windows = [maxWindows, positions.map { ($0 + seqLen - 1) / seqLen }].compactMap { $0 }.min()
            let started = Date()
            let table = LogitLens.compute(model, tokens: tokens, seqLen: seqLen, layers: layerList, offsets: offsetList,
                                          windows: windows, batch: batch) { done, total in
                Terminal.progress(done, of: total, started: started, status: "windows")
            }
            let seconds = Date().timeIntervalSince(started)
            if let out {
                let file = try RunFolder.write(table, as: LensTable.fileName, record: AnalysisRecord(
                    command: "lens", model: source.path, data: url.path,
                    settings: ["seq_len": "\(seqLen)", "layers": layers, "offsets": offsets, "windows": "\(table.windows)",
                               "batch": "\(batch)", "tokenizer": tok.name], seconds: seconds), to: URL(fileURLWithPath: out))
                Terminal.info("wrote \(file.path)")
            }
            if json {
                try printJSON(Output(checkpoint: source.path, data: url.path, seq_len: seqLen, seconds: seconds, lens: table))
                return
            }
            print("logit lens: cross-entropy (nats) and top-1 accuracy of the token at i+1+k from unembed(h_{l,i})")
            print("\(table.windows) windows of \(seqLen) (\(table.counts.first ?? 0) positions) in \(String(format: "%.1f", seconds)) s; layer \(model.config.nLayers) at k=0 is the model's own loss")
            print(LogitLens.format(table))
        }
    }
}
