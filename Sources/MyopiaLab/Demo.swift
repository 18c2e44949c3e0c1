import Foundation
import Myopia

/// `myopia demo`: the main job. Fetches tiny-shakespeare (or falls back to offline synthetic text),
/// trains a small byte-level GPT-2, evaluates it against the unigram baseline, samples from it and
/// writes everything into a run folder.
public enum Demo {
    public struct Options: Sendable {
        public var out: URL
        /// A few steps of a tiny model: for tests and a quick look.
        public var quick: Bool
        public var seed: UInt64
        public init(out: URL = URL(fileURLWithPath: "runs/demo"), quick: Bool = false, seed: UInt64 = 1) {
            self.out = out
            self.quick = quick
            self.seed = seed
        }
    }

    public struct Summary: Codable, Sendable {
        public var data: String
        public var offline: Bool
        public var steps: Int
        public var parameters: Int
        public var valLoss: Double
        public var unigramLoss: Double
        public var secondsTraining: Double
        public var tokensPerSecond: Double
        public var prompt: String
        public var sample: String
        public var checkpoint: String

        enum CodingKeys: String, CodingKey {
            case data, offline, steps, parameters, prompt, sample, checkpoint
            case valLoss = "val_loss", unigramLoss = "unigram_loss", secondsTraining = "seconds_training"
            case tokensPerSecond = "tokens_per_s"
        }
    }

    public static func trainConfig(quick: Bool, seed: UInt64) -> TrainConfig {
        var c = TrainConfig()
        c.seed = seed
        if quick {
            c.layers = 2; c.heads = 2; c.dModel = 32; c.seqLen = 32; c.batch = 8
            c.steps = 30; c.warmup = 5; c.lr = 3e-3; c.minLR = 3e-4
            c.evalEvery = 15; c.evalWindows = 16; c.logEvery = 5; c.checkpointEvery = 30
        } else {
            c.layers = 4; c.heads = 4; c.dModel = 128; c.seqLen = 128; c.batch = 16
            c.steps = 1200; c.warmup = 100; c.lr = 2e-3; c.minLR = 2e-4
            c.evalEvery = 200; c.evalWindows = 64; c.logEvery = 20; c.checkpointEvery = 600
        }
        return c
    }

    public static func run(_ options: Options, log: (String) -> Void,
                           onTrainLog: (TrainMetrics, Int) -> Void = { _, _ in }) throws -> Summary {
        var config = trainConfig(quick: options.quick, seed: options.seed)
        var offline = false
        let dataset: TokenDataset
        do {
            dataset = try DataSource.load("tinyshakespeare", log: log)
            config.data = "tinyshakespeare"
        } catch {
            log("could not fetch tiny-shakespeare (\(error)); using offline synthetic text instead")
            offline = true
            config.data = "synthetic-text"
            dataset = TokenDataset.split(ByteTokenizer().encode(SyntheticText.generate(bytes: 400_000, seed: options.seed)),
                                         validationFraction: config.validationFraction, source: "synthetic-text")
        }
        let trainDir = options.out.appendingPathComponent("train")
        try? FileManager.default.removeItem(at: trainDir)
        let trainer = try Trainer(config: config, dataset: dataset, out: trainDir)
        log("training a \(config.layers)-layer, d_model \(config.dModel) byte-level GPT-2 (\(trainer.model.params.count) parameters) for \(config.steps) steps")
        let start = Date()
        let last = try trainer.run { onTrainLog($0, config.steps) }
        let seconds = Date().timeIntervalSince(start)
        let unigram = TokenStatistics.unigramCrossEntropy(train: dataset.train, eval: dataset.validation, vocabSize: 256)
        let val = Evaluation.run(trainer.model, tokens: dataset.validation, seqLen: config.seqLen, batch: config.batch)
        let prompt = offline ? "the " : "ROMEO:\n"
        let tokenizer = ByteTokenizer()
        let sample = Generation.generate(trainer.model, prompt: tokenizer.encode(prompt),
                                         options: SamplingOptions(temperature: 0.8, topK: 40, seed: options.seed,
                                                                  maxTokens: options.quick ? 40 : 300))
        let summary = Summary(data: config.data, offline: offline, steps: config.steps, parameters: trainer.model.params.count,
                              valLoss: val.loss, unigramLoss: unigram, secondsTraining: seconds,
                              tokensPerSecond: last?.tokensPerSecond ?? 0, prompt: prompt,
                              sample: tokenizer.decode(sample),
                              checkpoint: trainDir.appendingPathComponent("checkpoint-\(config.steps)").path)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(summary), to: options.out.appendingPathComponent("summary.json"))
        return summary
    }
}

/// Offline English-like text for when no package registry can be reached: seeded sentences from a
/// small grammar, enough structure for a byte model to learn words and spacing.
public enum SyntheticText {
    static let subjects = ["the king", "a servant", "my lord", "the queen", "our friend", "this man", "the people", "a soldier"]
    static let verbs = ["speaks of", "looks upon", "remembers", "forgets", "loves", "fears", "waits for", "calls"]
    static let objects = ["the crown", "his brother", "the night", "a letter", "the city", "her father", "the sea", "an old song"]
    static let endings = [".", "!", "?", ", and then is silent.", " in the morning."]

    public static func generate(bytes: Int, seed: UInt64) -> String {
        var rng = SeededGenerator(seed: seed)
        var out = ""
        while out.utf8.count < bytes {
            var s = subjects[rng.nextInt(below: subjects.count)] + " " + verbs[rng.nextInt(below: verbs.count)] + " "
                + objects[rng.nextInt(below: objects.count)] + endings[rng.nextInt(below: endings.count)]
            s = s.prefix(1).uppercased() + s.dropFirst()
            out += s + (rng.nextInt(below: 4) == 0 ? "\n" : " ")
        }
        return out
    }
}
