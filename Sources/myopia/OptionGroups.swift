import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

// The option blocks that several commands share, each declared once: the model an analysis reads,
// the text and windows it reads, and where and how it reports. A command includes a block with
// `@OptionGroup`; its options appear in the command's help where the group is declared, and
// `--config FILE.json` takes their keys like the command's own (ConfigFile reads the parser's
// description of the command, groups included).

/// `--model` (or `--checkpoint`): the model an analysis reads (eval, lens, probe, horizon,
/// gradients, generate).
struct ModelOptions: ParsableArguments {
    @Option(name: [.customLong("model"), .customLong("checkpoint")],
            help: "A checkpoint or run folder (its newest checkpoint), a .gguf file, or a model name (smollm2-135m).")
    var nameOrPath: String
}

/// `--tokenizer`: the text's tokenizer when it is not the model's own (eval, lens, probe).
struct TokenizerOption: ParsableArguments {
    @Option(help: "Tokenizer: byte, gpt2 or a path such as a tokenizer.json (default: the model folder's tokenizer.json, else the one its config names).")
    var tokenizer: String?
}

/// `--seq-len` and `--batch`: windows of T tokens (T predictions each), read B per forward pass.
struct WindowOptions: ParsableArguments {
    @Option(name: .customLong("seq-len"), help: "Window length T (default: the seq_len of the run that trained the model; needed for a model without one, e.g. a .gguf: the cost grows with T²).")
    var givenSeqLen: Int?
    @Option(help: "Windows per forward pass.") var batch = 8

    func validate() throws {
        if let givenSeqLen, givenSeqLen <= 0 { throw ValidationError("--seq-len must be positive") }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
    }

    /// --seq-len, else the seq_len the model's training run recorded (not the model's whole context,
    /// thousands of positions for a pretrained model, where an analysis costs T²).
    func seqLen(for model: String) throws -> Int {
        if let givenSeqLen { return givenSeqLen }
        let location = try ModelSource.locate(model, log: Terminal.info)
        guard let trained = ModelInputs.trainedSeqLen(location) else {
            throw FlagError("--seq-len is needed: \(model) has no training run to take it from (e.g. --seq-len 128; the cost grows with T²)")
        }
        Terminal.info("--seq-len \(trained): the seq_len \(model) was trained with")
        return trained
    }
}

/// `--data`, the windows and `--max-windows`: the consecutive, non-overlapping windows of a text
/// that eval, lens and gradients read.
struct DataWindowOptions: ParsableArguments {
    @Option(help: "A text file, or a known dataset name.") var data: String
    @OptionGroup var windows: WindowOptions
    @Option(name: .customLong("max-windows"), help: "Use at most this many windows (default: all).") var maxWindows: Int?

    var batch: Int { windows.batch }

    func seqLen(for model: String) throws -> Int { try windows.seqLen(for: model) }

    func validate() throws {
        if let maxWindows, maxWindows <= 0 { throw ValidationError("--max-windows must be positive") }
    }
}

/// What an analysis command keeps in a run folder, named in the help of its `--out`.
protocol RunFolderOutput {
    /// The file(s) written, e.g. "eval.json".
    static var outputFiles: String { get }
    /// The help of `--json`.
    static var jsonHelp: String { get }
}

extension RunFolderOutput {
    static var jsonHelp: String { "Print one JSON object." }
}

/// Checks that `--out` can be written before any work (creating the folder and writing a probe
/// file there), so that a long analysis never ends in "cannot write". `isFile`: `--out` names a
/// file, whose folder is checked.
func checkOutput(_ path: String?, isFile: Bool = false) throws {
    guard let path else { return }
    var url = URL(fileURLWithPath: (path as NSString).expandingTildeInPath)
    if isFile {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), isFolder.boolValue {
            throw InputError.io(file: url.path, reason: "is a folder; --out names the file to write")
        }
        url.deleteLastPathComponent()
    }
    try Trainer.prepareOutput(url)
}

/// `--out RUN`, `--json` and `--quiet` of an analysis command (eval, lens, probe, horizon, generate).
struct OutputOptions<Command: RunFolderOutput>: ParsableArguments {
    @Option(help: ArgumentHelp("A run folder to write \(Command.outputFiles) into (and commands.json: how it was made), for `myopia report` and `myopia runs`."))
    var out: String?
    @Flag(help: ArgumentHelp(Command.jsonHelp)) var json = false
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false

    var folder: URL? { out.map { URL(fileURLWithPath: $0) } }

    /// `--out` is checked while the command line is read, before the command does any work.
    func validate() throws {
        try reportingErrors { try checkOutput(out) }
    }
}
