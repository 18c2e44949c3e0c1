import ArgumentParser
import Foundation
import Myopia

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Continue a prompt with a trained checkpoint, streaming to the terminal.",
        discussion: """
        Example:
          myopia generate --checkpoint runs/shakespeare --prompt "ROMEO:" --max-tokens 300 --temperature 0.8 --top-k 40
        """)

    @Option(help: "A checkpoint folder, or a run folder (its newest checkpoint).") var checkpoint: String
    @Option(help: "The text to continue.") var prompt: String
    @Option(name: .customLong("max-tokens"), help: "How many tokens to generate.") var maxTokens = 200
    @Option(help: "Sampling temperature (0: greedy).") var temperature = 1.0
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens.") var topK: Int?
    @Option(name: .customLong("top-p"), help: "Sample among the most likely tokens whose mass reaches p.") var topP: Double?
    @Option(help: "Seed for sampling.") var seed: UInt64 = 1
    @Flag(help: "Always take the most likely token.") var greedy = false

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be zero or more") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be zero or more") }
        if let topK, topK <= 0 { throw ValidationError("--top-k must be positive") }
        if let topP, !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
        guard !prompt.isEmpty else { throw ValidationError("--prompt must not be empty") }
    }

    func run() throws {
        try reportingErrors {
            let dir = try Checkpoint.resolve(URL(fileURLWithPath: checkpoint))
            let tokenizer = try checkpointTokenizer(try ModelConfig.load(from: dir.appendingPathComponent(Checkpoint.configFile)), dir: dir)
            let model = try Checkpoint.loadModel(from: dir)
            let options = SamplingOptions(temperature: greedy ? 0 : temperature, topK: topK, topP: topP, seed: seed,
                                          maxTokens: maxTokens)
            let out = FileHandle.standardOutput
            out.write(Data(prompt.utf8))
            // Bytes go out as they come; the terminal reassembles multi-byte characters.
            _ = Generation.generate(model, prompt: tokenizer.encode(prompt), options: options) { token in
                out.write(Data(tokenizer.decodeBytes([token])))
            }
            out.write(Data("\n".utf8))
        }
    }
}
