import Foundation
import Myopia

/// One `myopia train` run: the settings checked, the reference (if any) loaded, the output folder,
/// tokenizer and data prepared and the Trainer built, all before the first step; then the steps.
public final class TrainingRun {
    public struct Options: Sendable {
        /// The settings: the defaults, then a --config file, then the flags.
        public var config: TrainConfig
        /// The run folder.
        public var out: URL
        /// Continue from the newest checkpoint in `out`.
        public var resume: Bool
        /// The model to fine-tune; nil: `config.reference`, else (resuming) the one the run recorded.
        public var reference: String?
        /// The settings given explicitly, which a reference must agree with.
        public var given: ReferenceModel.Given
        /// Whether the context length was given (a flag or a --config file); if not, a reference's
        /// own context (at most 256) is used.
        public var seqLenGiven: Bool

        public init(config: TrainConfig, out: URL, resume: Bool = false, reference: String? = nil,
                    given: ReferenceModel.Given = ReferenceModel.Given(), seqLenGiven: Bool = true) {
            self.config = config
            self.out = out
            self.resume = resume
            self.reference = reference
            self.given = given
            self.seqLenGiven = seqLenGiven
        }
    }

    /// The settings the run trains with (a reference's shape and tokenizer adopted).
    public let config: TrainConfig
    public let trainer: Trainer
    /// The step the run starts from (0, or the checkpoint it resumes).
    public let firstStep: Int

    /// Prepares the run: impossible settings and an unwritable output folder are refused before
    /// any work. `log` receives the reference, data and model lines; `warn`, what the user should
    /// know even when quiet (a training file that looks binary).
    public init(_ options: Options, log: (String) -> Void = { _ in }, warn: (String) -> Void = { _ in }) throws {
        var config = options.config
        // Refused before anything is read or created: a run that cannot save anything, and a resume
        // with nothing to resume (which would silently start again from step 0).
        guard config.steps > 0 || options.resume else {
            throw InputError.invalidValue(file: "flags", field: "steps", expected: "at least 1 (a run of 0 steps saves no checkpoint)", found: "\(config.steps)")
        }
        if options.resume, (try? Checkpoint.latestCheckpoint(in: options.out)) == nil {
            throw InputError.io(file: options.out.path, reason: "--resume: no checkpoint-STEP folder to continue from; leave out --resume to start a new run")
        }
        // The given reference, else the config's, else (resuming) the one the run recorded.
        var referenceName = options.reference ?? config.reference
        if referenceName == nil && options.resume { referenceName = Trainer.recordedConfig(in: options.out)?.reference }
        if !options.seqLenGiven && referenceName != nil { config.seqLen = 0 }   // the reference's
        let loaded = try referenceName.map { try ReferenceModel.load($0, given: options.given, config: &config, log: log) }
        let referenceModel = loaded?.model
        config.reference = loaded?.source.path
        try config.validate()
        try config.checkMemory(vocabSize: 0, file: "flags")   // again with the tokenizer's vocabulary in Trainer
        try Trainer.prepareOutput(options.out)
        let tokenizer = try Tokenizers.load(config.tokenizer, log: log)
        let dataset = try DataSource.load(config.data, tokenizer: tokenizer, validationFraction: config.validationFraction,
                                          log: log, warn: warn)
        trainer = try Trainer(config: config, dataset: dataset, out: options.out,
                              vocabSize: referenceModel?.config.vocabSize ?? tokenizer.vocabSize, tokenizer: config.tokenizer,
                              resume: options.resume, reference: referenceModel)
        self.config = config
        firstStep = trainer.step
        log("\(trainer.model.params.count) parameters; \(dataset.train.count) training tokens; "
            + (trainer.step > 0 ? "resuming at step \(trainer.step)" : "\(config.steps) steps"))
    }

    /// Trains to `config.steps`, calling `progress` with every logged step's metrics; the last
    /// metrics, or nil when the run was already there.
    public func run(progress: (TrainMetrics) -> Void = { _ in }) throws -> TrainMetrics? {
        try trainer.run(onLog: progress)
    }
}
