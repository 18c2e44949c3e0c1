import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

struct GenerateCommand: ConfigFileCommand, RunFolderOutput {
    static let configExample = #"{"max_tokens": 64}"#
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Continue a prompt with a trained checkpoint, streaming to the terminal; measure repetition over samples.",
        discussion: """
        A sample stops at the end-of-text token (the tokenizer's, e.g. GPT-2's <|endoftext|>, else the checkpoint's eos_token_id; a byte model has none), after --max-tokens tokens, or, with --stop-at-context, when the context is full. Without --stop-at-context a full context restarts from its last half.

        --samples N draws N continuations with seeds seed, seed+1, ... and reports over the set, after them:
          distinct-n      distinct / all n-grams, n = 1...4, pooled over the
                          samples (and the mean of each sample's own ratio)
          loops           samples whose tail is 3 or more repeats of one cycle
                          of period 32 or less
          free-running    the model's mean loss (nats/token, temperature 1) on
                          its own samples
          teacher-forced  with --reference FILE: its mean loss on the file's text
                          as the continuation of the prompt, over the first
                          --max-tokens tokens (the span the samples cover)

        Without --reference only the free-running loss is reported. Each token is scored with the context it was sampled from. The metrics count the sampled ids, an end-of-text token included.

        --json prints one object instead of streaming: the prompt, the options, each sample (text, token ids, stop reason eos / max-tokens / context, loss, loop) and the metrics.

        Examples:
          myopia generate --checkpoint runs/shakespeare --prompt "ROMEO:" \\
              --max-tokens 300 --temperature 0.8 --top-k 40
          myopia generate --checkpoint runs/shakespeare --prompt "ROMEO:" \\
              --samples 20 --max-tokens 100 --reference romeo.txt --json
          myopia generate --model runs/shakespeare --prompt "ROMEO:" --samples 8 \\
              --max-tokens 200 --out runs/shakespeare
          myopia report runs/shakespeare  # the samples with their loops highlighted
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "The text to continue.") var prompt: String
    @Option(name: .customLong("max-tokens"), help: "How many tokens to generate.") var maxTokens = 200
    @Option(help: "Sampling temperature (0: greedy).") var temperature = 1.0
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens.") var topK: Int?
    @Option(name: .customLong("top-p"), help: "Sample among the most likely tokens whose mass reaches p.") var topP: Double?
    @Option(help: "Seed for sampling (sample i uses seed + i).") var seed: UInt64 = 1
    @Flag(help: "Always take the most likely token.") var greedy = false
    @Option(help: "How many independent samples to draw from the prompt.") var samples = 1
    @Option(help: "A text file whose text is the real continuation of the prompt, for the teacher-forced loss.")
    var reference: String?
    @Flag(name: .customLong("stop-at-context"), help: "Stop a sample when the model's context is full.") var stopAtContext = false
    @Flag(name: .customLong("ignore-eos"), help: "Do not stop at the end-of-text token.") var ignoreEOS = false
    @OptionGroup var output: OutputOptions<GenerateCommand>
    @OptionGroup var configFile: ConfigFileOption<GenerateCommand>

    static let outputFiles = "\(GenerationStudy.fileName) (samples, loops, metrics)"
    static let jsonHelp = "Print one JSON object (no streaming)."

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be zero or more") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be zero or more") }
        if let topK, topK <= 0 { throw ValidationError("--top-k must be positive") }
        if let topP, !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
        guard !prompt.isEmpty else { throw ValidationError("--prompt must not be empty") }
        guard samples >= 1 else { throw ValidationError("--samples must be at least 1") }
    }

    func run() throws {
        Terminal.quiet = output.quiet
        let json = output.json
        try reportingErrors {
            let (location, model, tokenizer) = try ModelInputs.load(self.model.nameOrPath, log: Terminal.info)
            let source = location.path
            // As transformers' generate: the prompt starts the sequence, with the BOS a tokenizer.json adds (Llama 3, Gemma).
            let promptTokens = tokenizer.encode(prompt, addSpecialTokens: true)
            guard !promptTokens.isEmpty else { throw ValidationError("--prompt encodes to no tokens") }
            let referenceTokens = try reference.map { try GenerationStudy.referenceTokens($0, tokenizer: tokenizer, maxTokens: maxTokens) }
            let v = Int32(model.config.vocabSize)
            let eos = ignoreEOS ? nil
                : (tokenizer.endOfText ?? model.config.eosTokenID.map { Int32($0) }).flatMap { (0..<v).contains($0) ? $0 : nil }
            let base = SamplingOptions(temperature: greedy ? 0 : temperature, topK: topK, topP: topP, seed: seed,
                                       maxTokens: maxTokens, stopToken: eos, stopAtContext: stopAtContext)
            if greedy && samples > 1 { Terminal.info("--greedy: all \(samples) samples are the same") }

            var drawn: [GeneratedSample] = []
            let started = Date()
            for i in 0..<samples {
                var options = base
                options.seed = seed &+ UInt64(i)
                if json {
                    drawn.append(Generation.sample(model, prompt: promptTokens, options: options))
                    if samples > 1 { Terminal.progress(i + 1, of: samples, started: started, status: "samples") }
                } else {
                    drawn.append(stream(model, prompt: promptTokens, options: options, index: i, tokenizer: tokenizer))
                }
            }

            // One plain sample is only streamed; the metrics are for a set, a reference or --json.
            guard json || samples > 1 || reference != nil || output.out != nil else { return }
            let study = GenerationStudy.study(model, tokenizer: tokenizer, source: source, prompt: prompt,
                                              promptTokens: promptTokens, options: base, drawn: drawn,
                                              reference: referenceTokens.map { (reference ?? "", $0) })
            if let out = output.folder {
                var settings = ["max_tokens": "\(maxTokens)", "temperature": "\(base.temperature)", "seed": "\(seed)",
                                "samples": "\(samples)", "prompt": prompt, "stop_at_context": "\(stopAtContext)", "ignore_eos": "\(ignoreEOS)"]
                settings["top_k"] = topK.map(String.init)
                settings["top_p"] = topP.map { "\($0)" }
                let file = try RunFolder.write(study, as: GenerationStudy.fileName, record: AnalysisRecord(
                    command: "generate", model: source, data: reference, settings: settings,
                    seconds: Date().timeIntervalSince(started)), to: out)
                Terminal.info("wrote \(file.path)")
            }
            if json {
                try printJSON(study)
            } else {
                printMetrics(study)
            }
        }
    }

    /// Streams one sample to stdout: the prompt, then bytes as they come (the terminal reassembles
    /// multi-byte characters). With several samples each gets a header and a closing line.
    private func stream(_ model: Transformer, prompt promptTokens: [Int32], options: SamplingOptions, index: Int,
                        tokenizer: any Tokenizer) -> GeneratedSample {
        let out = FileHandle.standardOutput
        if samples > 1 { out.write(Data("── sample \(index + 1) of \(samples), seed \(options.seed) ──\n".utf8)) }
        out.write(Data(prompt.utf8))
        let sample = Generation.sample(model, prompt: promptTokens, options: options) { token in
            if token != options.stopToken { out.write(Data(tokenizer.decodeBytes([token]))) }
        }
        out.write(Data("\n".utf8))
        if samples > 1 { out.write(Data("── \(sample.tokens.count) tokens, stopped: \(sample.stopReason.rawValue) ──\n\n".utf8)) }
        return sample
    }

    private func printMetrics(_ study: GenerationStudy.Report) {
        let m = study.metrics
        func number(_ x: Double?) -> String { x.map { String(format: "%.3f", $0) } ?? "–" }
        func row(_ label: String, _ values: [String]) -> String {
            label.padding(toLength: 30, withPad: " ", startingAt: 0) + values.joined(separator: "  ")
        }
        var lines = ["metrics over \(m.samples) sample\(m.samples == 1 ? "" : "s") (\(m.tokens) tokens)"]
        lines.append(row("  distinct-1..4 (pooled)", m.distinct.map { number($0.pooled) }))
        lines.append(row("  distinct-1..4 (per sample)", m.distinct.map { number($0.perSampleMean) }))
        let periods = study.samples.compactMap { $0.loop.value?.period }.map(String.init).joined(separator: ", ")
        lines.append(row("  ending in a loop", ["\(m.loop_count) of \(m.samples)"
            + (periods.isEmpty ? "" : " (period \(periods))")]))
        lines.append(row("  free-running loss", ["\(number(m.free_running.loss)) nats/token over \(m.free_running.tokens) tokens"]))
        if let tf = m.teacher_forced.value {
            lines.append(row("  teacher-forced loss", ["\(number(tf.loss)) nats/token over \(tf.tokens) tokens of the reference"]))
        }
        print(lines.joined(separator: "\n"))
    }
}
