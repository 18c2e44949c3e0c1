import ArgumentParser
import Foundation
import Myopia

struct ConvertCommand: ConfigFileCommand {
    static let configExample = #"{"out": "qwen-0.5b"}"#
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a llama.cpp GGUF file into a Hugging Face folder.",
        usage: "myopia convert <file> --out <out>",
        discussion: """
        Writes config.json (the family's model_type: llama, qwen2, qwen3 or gemma2), model.safetensors (every tensor dequantised to F32) and tokenizer.json (the tokenizer the GGUF ships, as transformers builds it from the file). transformers' `from_pretrained(out)` then gives the logits Myopia computes on the GGUF. Quantised tensors (Q4_0 … Q8_0, Q2_K … Q6_K) are dequantised exactly as the gguf package does; llama.cpp's fix-ups are undone (Llama's q/k row order, Gemma's norms stored as 1 + w).

        --pre-tokenizer transformers (the default) writes the pre-tokenizer transformers builds from the file; for tokenizer.ggml.pre "smollm" (SmolLM2) that is GPT-2's ByteLevel without SmolLM2's digit step, so the ids differ from the model's own tokenizer.json where whitespace meets a number ("a  1"). --pre-tokenizer gguf keeps the file's pre-tokenizer, as llama.cpp and Myopia's own reading of the GGUF do.

        Examples:
          myopia convert qwen2.5-0.5b-instruct-q4_k_m.gguf --out qwen-0.5b
          myopia eval --model qwen-0.5b --data tinyshakespeare --seq-len 256
        """)

    @Argument(help: "A .gguf file (architecture llama, qwen2, qwen3 or gemma2).") var file: String
    @Option(help: "The folder to write (created if needed).") var out: String
    @Option(name: .customLong("pre-tokenizer"),
            help: "transformers: as transformers builds it from the GGUF; gguf: as tokenizer.ggml.pre names it.")
    var preTokenizer: GGUFTokenizerJSON.PreTokenizerSource = .transformers
    @Flag(help: "No progress or messages on stderr (errors still print).") var quiet = false
    @OptionGroup var configFile: ConfigFileOption<ConvertCommand>

    func run() throws {
        Terminal.quiet = quiet
        try reportingErrors {
            let url = URL(fileURLWithPath: (file as NSString).expandingTildeInPath)
            guard FileManager.default.fileExists(atPath: url.path) else { throw InputError.io(file: file, reason: "no such file") }
            let gguf = try GGUFFile(contentsOf: url)
            // The tokenizer first: nothing is written for a file whose tokenizer Myopia cannot convert.
            let tokenizerJSON = try GGUFTokenizerJSON.make(gguf, preTokenizer: preTokenizer)
            _ = try TokenizerJSON(bytes: tokenizerJSON, source: file)
            try checkOutput(out)   // writable before the weights are dequantised
            let model = try GGUFModel.load(gguf, tokenizer: nil)
            let dir = URL(fileURLWithPath: (out as NSString).expandingTildeInPath)
            try Checkpoint.saveModel(model, to: dir)
            _ = try AtomicFile.write(Data(tokenizerJSON), to: dir.appendingPathComponent("tokenizer.json"))
            let c = model.config
            Terminal.info("\(file): \(c.family.rawValue), \(c.nLayers) layers, C = \(c.dModel), vocab \(c.vocabSize), "
                          + "\(model.params.count) parameters → \(dir.path) (config.json, model.safetensors, tokenizer.json)")
            print(dir.path)
        }
    }
}

extension GGUFTokenizerJSON.PreTokenizerSource: ExpressibleByArgument {}
