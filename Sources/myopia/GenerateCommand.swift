import ArgumentParser
import Foundation
import Myopia
import MyopiaLab

/// What `generate` decodes from.
enum DecodeWeights: String, ExpressibleByArgument, CaseIterable {
    case quantized, fp32
}

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

        The samples decode together, --decode-batch at a time (default: all): one matrix product per layer and step for the whole batch, the prompt decoded once. Each sample gets the tokens it gets decoded alone (--decode-batch 1), bit for bit. --prompts FILE continues every prompt of a file (one a line; JSONL for *.jsonl: a string or {"prompt": ...} a line), each --samples times, all in one batch. Several values of --temperature, --top-k or --top-p sweep every combination in the same batch, each with its own metrics and a table of them. With several prompts or settings --json prints {"model", "studies": [one object per prompt and setting]}. A GGUF model decodes from its quantised weights as stored (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K–Q6_K) (--weights fp32: from floats); scoring stays fp32. See docs/generation.md.

        Examples:
          myopia generate --checkpoint runs/shakespeare --prompt "ROMEO:" \\
              --max-tokens 300 --temperature 0.8 --top-k 40
          myopia generate --checkpoint runs/shakespeare --prompt "ROMEO:" \\
              --samples 20 --max-tokens 100 --reference romeo.txt --json
          myopia generate --model smollm2-135m --prompts prompts.txt \\
              --samples 16 --max-tokens 64 --json
          myopia generate --model smollm2-135m --prompt "Once upon a time" \\
              --samples 32 --temperature 0.5 0.8 1.0 --top-p 0.9 1.0
          myopia generate --model runs/shakespeare --prompt "ROMEO:" --samples 8 \\
              --max-tokens 200 --out runs/shakespeare
          myopia report runs/shakespeare  # the samples with their loops highlighted
        """)

    @OptionGroup var model: ModelOptions
    @Option(help: "The text to continue.") var prompt: String?
    @Option(help: "A file of prompts to continue: one a line, or JSONL (*.jsonl).") var prompts: String?
    @Option(name: .customLong("max-tokens"), help: "How many tokens to generate.") var maxTokens = 200
    @Option(parsing: .upToNextOption, help: "Sampling temperature (0: greedy); several sweep them.")
    var temperature: [Double] = [1]
    @Option(name: .customLong("top-k"), parsing: .upToNextOption,
            help: "Sample among the k most likely tokens; several sweep them.") var topK: [Int] = []
    @Option(name: .customLong("top-p"), parsing: .upToNextOption,
            help: "Sample among the most likely tokens whose mass reaches p; several sweep them.") var topP: [Double] = []
    @Option(help: "Seed for sampling (sample i uses seed + i).") var seed: UInt64 = 1
    @Flag(help: "Always take the most likely token.") var greedy = false
    @Option(help: "How many independent samples to draw from the prompt.") var samples = 1
    @Option(name: .customLong("decode-batch"), help: "How many samples decode together (default: all).")
    var decodeBatch: Int?
    @Option(help: "A text file whose text is the real continuation of the prompt, for the teacher-forced loss.")
    var reference: String?
    @Flag(name: .customLong("stop-at-context"), help: "Stop a sample when the model's context is full.") var stopAtContext = false
    @Flag(name: .customLong("ignore-eos"), help: "Do not stop at the end-of-text token.") var ignoreEOS = false
    @Option(help: "Weights to decode from: quantized (a GGUF's blocks as stored) or fp32.")
    var weights: DecodeWeights = .quantized
    @OptionGroup var output: OutputOptions<GenerateCommand>
    @OptionGroup var configFile: ConfigFileOption<GenerateCommand>

    static let outputFiles = "\(GenerationStudy.fileName) (samples, loops, metrics)"
    static let jsonHelp = "Print one JSON object (no streaming)."

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be zero or more") }
        guard !temperature.isEmpty, temperature.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
            throw ValidationError("--temperature must be zero or more")
        }
        guard topK.allSatisfy({ $0 > 0 }) else { throw ValidationError("--top-k must be positive") }
        guard topP.allSatisfy({ $0 > 0 && $0 <= 1 }) else { throw ValidationError("--top-p must be in (0, 1]") }
        guard (prompt == nil) != (prompts == nil) else { throw ValidationError("give one of --prompt TEXT or --prompts FILE") }
        if let prompt, prompt.isEmpty { throw ValidationError("--prompt must not be empty") }
        guard samples >= 1 else { throw ValidationError("--samples must be at least 1") }
        if let decodeBatch, decodeBatch < 1 { throw ValidationError("--decode-batch must be at least 1") }
        if output.out != nil, prompts != nil || settingsCount > 1 {
            throw ValidationError("--out keeps one study: use --prompt and one --temperature, --top-k and --top-p with --out")
        }
    }

    /// The sampling settings swept: every temperature with every top-k and top-p (greedy: one).
    func settings(seed: UInt64, stopToken: Int32?) -> [SamplingOptions] {
        let ks: [Int?] = topK.isEmpty ? [nil] : topK, ps: [Double?] = topP.isEmpty ? [nil] : topP
        return (greedy ? [0] : temperature).flatMap { t in
            ks.flatMap { k in
                ps.map { p in
                    SamplingOptions(temperature: t, topK: k, topP: p, seed: seed, maxTokens: maxTokens, stopToken: stopToken,
                                    stopAtContext: stopAtContext)
                }
            }
        }
    }

    var settingsCount: Int { settings(seed: 0, stopToken: nil).count }

    func run() throws {
        Terminal.quiet = output.quiet
        let json = output.json
        try reportingErrors {
            let texts = try prompts.map { try PromptFile.read($0) } ?? [prompt ?? ""]
            let (location, model, tokenizer) = try ModelInputs.load(self.model.nameOrPath, log: Terminal.info)
            let source = location.path
            if weights == .quantized, location.pathExtension.lowercased() == "gguf" {
                let quantized = try GGUFModel.quantizedWeights(try GGUFFile(contentsOf: location), for: model)
                if !quantized.matrices.isEmpty {
                    model.quantizedDecoding = quantized
                    Terminal.info("decoding from \(quantized.matrices.count) quantised weight matrices "
                        + String(format: "(%.1f MB; --weights fp32 for floats)", Double(quantized.byteCount) / 1e6))
                }
            }
            // As transformers' generate: the prompt starts the sequence, with the BOS a tokenizer.json adds (Llama 3, Gemma).
            let promptTokens = try texts.enumerated().map { i, text in
                let tokens = tokenizer.encode(text, addSpecialTokens: true)
                guard !tokens.isEmpty else {
                    if let prompts { throw InputError.invalidValue(file: prompts, field: "prompt \(i + 1)", expected: "text that encodes to tokens", found: "no tokens") }
                    throw ValidationError("--prompt encodes to no tokens")
                }
                return tokens
            }
            let referenceTokens = try reference.map { try GenerationStudy.referenceTokens($0, tokenizer: tokenizer, maxTokens: maxTokens) }
            let v = Int32(model.config.vocabSize)
            let eos = ignoreEOS ? nil
                : (tokenizer.endOfText ?? model.config.eosTokenID.map { Int32($0) }).flatMap { (0..<v).contains($0) ? $0 : nil }
            let sweep = settings(seed: seed, stopToken: eos)
            if greedy && samples > 1 { Terminal.info("--greedy: all \(samples) samples are the same") }

            // Prompt-major, then setting; sample i of each uses seed + i, as it would decoded alone.
            let requests = promptTokens.flatMap { tokens in
                sweep.flatMap { base in
                    (0..<samples).map { i in
                        var options = base
                        options.seed = seed &+ UInt64(i)
                        return SampleRequest(prompt: tokens, options: options)
                    }
                }
            }
            let batch = decodeBatch ?? GenerationStudy.defaultDecodeBatch(model.config, requests: requests)
            var drawn: [GeneratedSample]
            let started = Date()
            if !json && batch == 1 {
                drawn = requests.enumerated().map { i, r in
                    stream(model, request: r, index: i, texts: texts, tokenizer: tokenizer)
                }
            } else {
                var done = 0
                drawn = Generation.sample(model, requests: requests, decodeBatch: batch, onDone: { _ in
                    done += 1
                    if requests.count > 1 { Terminal.progress(done, of: requests.count, started: started, status: "samples") }
                })
                if !json {
                    for (i, sample) in drawn.enumerated() { show(sample, request: requests[i], index: i, texts: texts, tokenizer: tokenizer) }
                }
            }

            // One plain sample is only streamed; the metrics are for a set, a reference or --json.
            guard json || samples > 1 || reference != nil || output.out != nil else { return }
            let studies = (0..<(texts.count * sweep.count)).map { j in
                let p = j / sweep.count
                return GenerationStudy.study(model, tokenizer: tokenizer, source: source, prompt: texts[p],
                                             promptTokens: promptTokens[p], options: sweep[j % sweep.count],
                                             drawn: Array(drawn[(j * samples)..<((j + 1) * samples)]),
                                             reference: referenceTokens.map { (reference ?? "", $0) })
            }
            if let out = output.folder, let study = studies.first, let base = sweep.first {
                var settings = ["max_tokens": "\(maxTokens)", "temperature": "\(base.temperature)", "seed": "\(seed)",
                                "samples": "\(samples)", "prompt": texts[0], "stop_at_context": "\(stopAtContext)", "ignore_eos": "\(ignoreEOS)"]
                settings["top_k"] = base.topK.map(String.init)
                settings["top_p"] = base.topP.map { "\($0)" }
                let file = try RunFolder.write(study, as: GenerationStudy.fileName, record: AnalysisRecord(
                    command: "generate", model: source, data: reference, settings: settings,
                    seconds: Date().timeIntervalSince(started)), to: out)
                Terminal.info("wrote \(file.path)")
            }
            let several = studies.count > 1
            if json {
                if several {
                    try printJSON(GenerationStudy.StudiesReport(model: source, studies: studies))
                } else {
                    try printJSON(studies[0])
                }
            } else {
                for (j, study) in studies.enumerated() {
                    if several { print("── \(studyLabel(j, texts: texts, sweep: sweep)) ──") }
                    printMetrics(study)
                }
                if sweep.count > 1 { print(GenerationStudy.sweepTable(studies)) }
            }
        }
    }

    /// "prompt 2 of 3, temperature 0.7, top-k 40": study j's prompt and setting, where there are several.
    private func studyLabel(_ j: Int, texts: [String], sweep: [SamplingOptions]) -> String {
        var parts: [String] = []
        if texts.count > 1 { parts.append("prompt \(j / sweep.count + 1) of \(texts.count)") }
        if sweep.count > 1 { parts.append(GenerationStudy.settingLabel(sweep[j % sweep.count])) }
        return parts.joined(separator: ", ")
    }

    /// The header of request `index` (several samples, prompts or settings), or nil for a lone sample.
    private func header(_ request: SampleRequest, index: Int, texts: [String]) -> String? {
        let sweep = settings(seed: seed, stopToken: request.options.stopToken)
        guard samples > 1 || texts.count > 1 || sweep.count > 1 else { return nil }
        let study = studyLabel(index / samples, texts: texts, sweep: sweep)
        return "── \(study.isEmpty ? "" : study + ", ")sample \(index % samples + 1) of \(samples), seed \(request.options.seed) ──\n"
    }

    /// Prints a sample drawn in a batch, as `stream` prints it.
    private func show(_ sample: GeneratedSample, request: SampleRequest, index: Int, texts: [String], tokenizer: any Tokenizer) {
        let out = FileHandle.standardOutput
        let head = header(request, index: index, texts: texts)
        if let head { out.write(Data(head.utf8)) }
        out.write(Data(texts[index / (samples * settingsCount)].utf8))
        out.write(Data(tokenizer.decodeBytes(sample.tokens.filter { $0 != request.options.stopToken })))
        out.write(Data("\n".utf8))
        if head != nil { out.write(Data("── \(sample.tokens.count) tokens, stopped: \(sample.stopReason.rawValue) ──\n\n".utf8)) }
    }

    /// Streams one sample to stdout: the prompt, then bytes as they come (the terminal reassembles
    /// multi-byte characters). With several samples or prompts each gets a header and a closing line.
    private func stream(_ model: Transformer, request: SampleRequest, index: Int, texts: [String],
                        tokenizer: any Tokenizer) -> GeneratedSample {
        let out = FileHandle.standardOutput
        let head = header(request, index: index, texts: texts)
        if let head { out.write(Data(head.utf8)) }
        out.write(Data(texts[index / (samples * settingsCount)].utf8))
        let sample = Generation.sample(model, prompt: request.prompt, options: request.options) { token in
            if token != request.options.stopToken { out.write(Data(tokenizer.decodeBytes([token]))) }
        }
        out.write(Data("\n".utf8))
        if head != nil { out.write(Data("── \(sample.tokens.count) tokens, stopped: \(sample.stopReason.rawValue) ──\n\n".utf8)) }
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
