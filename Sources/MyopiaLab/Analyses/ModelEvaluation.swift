import Foundation
import Myopia

/// `myopia eval`: a model's mean next-token loss on a text, as trained or under another flow
/// (bigram; local-myopic against a frozen reference's keys and values), optionally kept in a run
/// folder (eval.json) for `myopia report` and `myopia runs`.
public enum ModelEvaluation {
    /// Which part of the text is scored: the validation split (the last `validation_fraction` of
    /// its tokens, 0.1 unless the run recorded another), the training split before it, or all of it.
    public enum Split: String, Sendable, CaseIterable {
        case validation, train, all
    }

    public struct Request: Sendable {
        /// A checkpoint or run folder, a .gguf file or a model name.
        public var model: String
        /// A text file or a known dataset name.
        public var data: String
        public var seqLen: Int
        public var batch: Int
        public var maxWindows: Int?
        /// The tokenizer (default: the model's own).
        public var tokenizer: String?
        /// How the model attends (nil: as trained).
        public var flow: String?
        /// Under the local-myopic flow, the frozen reference (nil: the one the run recorded).
        public var reference: String?
        /// A run folder to write eval.json into.
        public var out: URL?
        /// The part scored; nil: the validation split for a named dataset (tinyshakespeare) or the
        /// text the model's run trained on, else all of the text.
        public var split: Split?

        public init(model: String, data: String, seqLen: Int, batch: Int = 8, maxWindows: Int? = nil, tokenizer: String? = nil,
                    flow: String? = nil, reference: String? = nil, out: URL? = nil, split: Split? = nil) {
            self.model = model
            self.data = data
            self.seqLen = seqLen
            self.batch = batch
            self.maxWindows = maxWindows
            self.tokenizer = tokenizer
            self.flow = flow
            self.reference = reference
            self.out = out
            self.split = split
        }
    }

    public struct Outcome: Sendable {
        /// The checkpoint folder or model file read.
        public var source: URL
        /// The text file read.
        public var data: URL
        public var result: EvaluationResult
        /// How the model attended.
        public var flow: GradientFlow
        /// Under the local-myopic flow, the reference's checkpoint folder or model file.
        public var reference: String?
        /// The part of the text scored, and why (e.g. "validation split: the last 10% of the tokens").
        public var split: Split
        public var splitNote: String
    }

    /// Loads the model (and, local-myopically, its reference), scores it on the text's windows and,
    /// with `out`, writes eval.json. `log` gets progress messages; `warn` what the user should know
    /// about the result (a local-myopically trained model evaluated as an ordinary one).
    public static func run(_ request: Request, log: (String) -> Void = { _ in },
                           warn: (String) -> Void = { _ in }) throws -> Outcome {
        let r = request
        let (dir, model, tok) = try ModelInputs.load(r.model, seqLen: r.seqLen, tokenizer: r.tokenizer, log: log)
        var referencePath: String?
        let trained = Trainer.recordedConfig(in: dir)
        if r.flow == nil, let trained, trained.flow == .localMyopic {
            let ref = trained.reference ?? "DIR"
            warn("\(dir.path) was trained local-myopically (attending to \(ref)'s keys and values); this evaluates "
                 + "it as an ordinary model: add --flow local-myopic --reference \(ref) to evaluate it as trained")
        }
        if let flow = r.flow {
            model.flow = try GradientFlow(parsing: flow)
            if model.flow == .localMyopic {
                // The given reference, else the one the run recorded.
                guard let reference = r.reference ?? trained?.reference else {
                    throw FlagError("--flow local-myopic needs --reference DIR")
                }
                let (source, frozen, _) = try ModelInputs.load(reference, seqLen: r.seqLen, tokenizer: r.tokenizer, log: log)
                try model.checkReference(frozen, seqLen: r.seqLen, file: source.path)
                model.reference = frozen
                referencePath = source.path
            }
        }
        let (url, all) = try DataSource.tokens(r.data, seqLen: r.seqLen, tokenizer: tok, log: log)
        // The split: a named dataset, or the text the run trained on, has a training part the model
        // has seen; its validation tail is what measures the model.
        let named = !FileManager.default.fileExists(atPath: (r.data as NSString).expandingTildeInPath)
        let trainedOnIt: Bool = {
            guard let data = trained?.data else { return false }
            let path = (data as NSString).expandingTildeInPath
            return data == r.data || (FileManager.default.fileExists(atPath: path)
                                      && URL(fileURLWithPath: path).standardizedFileURL.path == url.standardizedFileURL.path)
        }()
        let split = r.split ?? (named || trainedOnIt ? .validation : .all)
        let fraction = trained?.validationFraction ?? 0.1
        let parts = TokenDataset.split(all, validationFraction: fraction, source: url.path)
        let tokens = split == .validation ? parts.validation : split == .train ? parts.train : all
        let percent = String(format: "%g%%", 100 * fraction)
        let splitNote = split == .validation ? "validation split: the last \(percent) of the tokens"
            : split == .train ? "training split: the first \(String(format: "%g%%", 100 * (1 - fraction))) of the tokens" : "all of the text"
        guard tokens.count >= r.seqLen + 1 else {
            throw InputError.invalidValue(file: url.path, field: "(\(splitNote))", expected: "at least one window of \(r.seqLen + 1) tokens",
                                           found: "\(tokens.count) tokens")
        }
        let started = Date()
        // Under mpirun each rank scores its run of the batches; rank 0 writes.
        let group = Distributed.group
        let result = Evaluation.run(model, tokens: tokens, seqLen: r.seqLen, batch: r.batch, maxWindows: r.maxWindows, group: group)
        if let out = r.out, group.rank == 0 {
            var settings = ["seq_len": "\(r.seqLen)", "batch": "\(r.batch)", "flow": model.flow.description, "tokenizer": tok.name]
            settings["max_windows"] = r.maxWindows.map(String.init)
            settings["reference"] = referencePath
            settings["split"] = split.rawValue
            let file = try RunFolder.write(result, as: EvaluationResult.fileName, record: AnalysisRecord(
                command: "eval", model: dir.path, data: url.path, settings: settings, seconds: Date().timeIntervalSince(started)),
                to: out)
            log("wrote \(file.path)")
        }
        return Outcome(source: dir, data: url, result: result, flow: model.flow, reference: referencePath, split: split, splitNote: splitNote)
    }
}
