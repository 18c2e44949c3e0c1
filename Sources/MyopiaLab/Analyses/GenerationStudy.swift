import Foundation
import Myopia

/// A generation study: samples drawn from one prompt, with their repetition metrics (distinct-n,
/// loops) and losses (free-running on the samples, teacher-forced on a reference continuation).
/// `myopia generate --json` prints one; a run folder keeps it as `generation.json`, which
/// `myopia report` shows with each sample's loop highlighted.
public enum GenerationStudy {
    public static let fileName = "generation.json"

    /// An optional written as null rather than left out, so every object has the same keys.
    public struct Nullable<T: Codable & Sendable>: Codable, Sendable {
        public var value: T?
        public init(_ value: T?) { self.value = value }
        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            value = c.decodeNil() ? nil : try c.decode(T.self)
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            if let value { try c.encode(value) } else { try c.encodeNil() }
        }
    }

    public struct Report: Codable, Sendable {
        public var model: String
        public var prompt: String
        public var prompt_tokens: [Int32]
        public var context: Int
        public var options: Options
        public var samples: [Sample]
        public var metrics: Metrics
    }

    /// `generate --json` with several prompts (`--prompts FILE`) or settings (a sweep): one study
    /// per prompt and setting, prompt-major.
    public struct StudiesReport: Codable, Sendable {
        public var model: String
        public var studies: [Report]

        public init(model: String, studies: [Report]) {
            self.model = model
            self.studies = studies
        }
    }

    /// "temperature 0.8, top-k 40, top-p 0.9" (greedy: "greedy").
    public static func settingLabel(_ o: SamplingOptions) -> String {
        guard o.temperature > 0 else { return "greedy" }
        var parts = ["temperature \(o.temperature)"]
        if let k = o.topK { parts.append("top-k \(k)") }
        if let p = o.topP { parts.append("top-p \(p)") }
        return parts.joined(separator: ", ")
    }

    /// One row per study of a sweep: its prompt (when several), setting, loop share,
    /// distinct-1..4 (pooled), free-running and teacher-forced loss.
    public static func sweepTable(_ studies: [Report]) -> String {
        func number(_ x: Double?, _ format: String = "%.3f") -> String { x.map { String(format: format, $0) } ?? "–" }
        let prompts = Set(studies.map(\.prompt)).count > 1
        var lines = ["sweep: " + (prompts ? "prompt | " : "") + "setting | loops | distinct-1..4 | free-running | teacher-forced (nats/token)"]
        for s in studies {
            let o = s.options, m = s.metrics
            let setting = o.greedy ? "greedy" : settingLabel(SamplingOptions(temperature: o.temperature, topK: o.top_k.value, topP: o.top_p.value))
            var cells = [setting, "\(m.loop_count)/\(m.samples)", m.distinct.map { number($0.pooled) }.joined(separator: " "),
                         number(m.free_running.loss), number(m.teacher_forced.value?.loss)]
            if prompts { cells.insert(String(s.prompt.prefix(24)), at: 0) }
            lines.append("  " + cells.joined(separator: " | "))
        }
        return lines.joined(separator: "\n")
    }

    /// How many samples decode together by default: all of them, unless their keys and values
    /// would pass 4 GiB (a long context times many samples), then as many as fit (at least one).
    public static func defaultDecodeBatch(_ config: ModelConfig, requests: [SampleRequest]) -> Int {
        let positions = requests.map { min(config.maxPositions, $0.prompt.count + $0.options.maxTokens) }.max() ?? 1
        let bytesPerSample = 2 * config.nLayers * positions * config.kvHeads * config.headSize * MemoryLayout<Float>.size
        return max(1, min(requests.count, (4 << 30) / max(1, bytesPerSample)))
    }

    public struct Options: Codable, Sendable {
        public var greedy: Bool
        public var temperature: Double
        public var top_k: Nullable<Int>
        public var top_p: Nullable<Double>
        public var seed: UInt64
        public var samples: Int
        public var max_tokens: Int
        public var eos_token: Nullable<Int32>
        public var stop_at_context: Bool
    }

    public struct Sample: Codable, Sendable {
        public var index: Int
        public var seed: UInt64
        public var text: String
        public var tokens: [Int32]
        public var stop_reason: StopReason
        public var loss: ContinuationScore
        public var loop: Nullable<Loop>
        /// Each token's text (decoded on its own; a token that splits a UTF-8 character shows U+FFFD).
        /// The report uses it to mark the loop's tokens.
        public var token_texts: [String]?
    }

    public struct Metrics: Codable, Sendable {
        public var samples: Int
        public var tokens: Int
        public var distinct: [DistinctN]
        public var loop_count: Int
        public var loop_share: Nullable<Double>
        public var free_running: ContinuationScore
        public var teacher_forced: Nullable<ContinuationScore>
        public var reference: Nullable<String>
    }

    /// The first `maxTokens` tokens of a text file that holds the real continuation of a prompt,
    /// for the teacher-forced loss.
    public static func referenceTokens(_ path: String, tokenizer: any Tokenizer, maxTokens: Int) throws -> [Int32] {
        let text: String
        do {
            text = try String(contentsOfFile: (path as NSString).expandingTildeInPath, encoding: .utf8)
        } catch {
            throw InputError.io(file: path, reason: "cannot read the reference text (\(error.localizedDescription))")
        }
        let tokens = tokenizer.encode(text)
        guard !tokens.isEmpty else {
            throw InputError.invalidValue(file: path, field: "text", expected: "at least one token of reference text", found: "none")
        }
        return Array(tokens.prefix(maxTokens))
    }

    /// Sample `count` continuations of `prompt` (sample i with seed `options.seed + i`), decoded
    /// together, and study them.
    public static func run(_ model: Transformer, tokenizer: any Tokenizer, source: String, prompt: String,
                           options: SamplingOptions, count: Int, reference: (name: String, tokens: [Int32])? = nil,
                           onSample: (Int) -> Void = { _ in }) -> Report {
        let promptTokens = tokenizer.encode(prompt, addSpecialTokens: true)   // with a tokenizer.json's BOS, as `generate` has it
        let drawn = draw(model, prompt: promptTokens, options: options, count: count, onSample: onSample)
        return study(model, tokenizer: tokenizer, source: source, prompt: prompt, promptTokens: promptTokens,
                     options: options, drawn: drawn, reference: reference)
    }

    /// `count` samples of `prompt` (sample i with seed `options.seed + i`), decoding together
    /// (`defaultDecodeBatch` at a time); `onSample(done)` as each one ends.
    public static func draw(_ model: Transformer, prompt: [Int32], options: SamplingOptions, count: Int,
                            onSample: (Int) -> Void = { _ in }) -> [GeneratedSample] {
        let requests = (0..<count).map { i in
            var o = options
            o.seed = options.seed &+ UInt64(i)
            return SampleRequest(prompt: prompt, options: o)
        }
        var done = 0
        return Generation.sample(model, requests: requests, decodeBatch: defaultDecodeBatch(model.config, requests: requests),
                                 onDone: { _ in done += 1; onSample(done) })
    }

    /// The metrics and losses of samples already drawn (sample i with seed `options.seed + i`).
    public static func study(_ model: Transformer, tokenizer: any Tokenizer, source: String, prompt: String,
                             promptTokens: [Int32], options: SamplingOptions, drawn: [GeneratedSample],
                             reference: (name: String, tokens: [Int32])?) -> Report {
        let ids = drawn.map(\.tokens)
        let repetition = RepetitionMetrics.report(ids)
        let losses = ContinuationLoss.compare(model, prompt: promptTokens, reference: reference?.tokens, samples: ids)
        let samples = drawn.enumerated().map { i, sample in
            let text = sample.stopReason == .endOfText ? Array(sample.tokens.dropLast()) : sample.tokens
            return Sample(index: i, seed: options.seed &+ UInt64(i), text: tokenizer.decode(text), tokens: sample.tokens,
                          stop_reason: sample.stopReason, loss: losses.perSample[i], loop: Nullable(repetition.loops[i]),
                          token_texts: sample.tokens.map { tokenizer.decode([$0]) })
        }
        return Report(
            model: source, prompt: prompt, prompt_tokens: promptTokens, context: model.config.maxPositions,
            options: Options(greedy: options.temperature == 0, temperature: options.temperature, top_k: Nullable(options.topK),
                             top_p: Nullable(options.topP), seed: options.seed, samples: drawn.count,
                             max_tokens: options.maxTokens, eos_token: Nullable(options.stopToken),
                             stop_at_context: options.stopAtContext),
            samples: samples,
            metrics: Metrics(samples: repetition.samples, tokens: ids.reduce(0) { $0 + $1.count },
                             distinct: repetition.distinct, loop_count: repetition.loopCount,
                             loop_share: Nullable(repetition.loopShare), free_running: losses.freeRunning,
                             teacher_forced: Nullable(losses.teacherForced), reference: Nullable(reference?.name)))
    }
}
