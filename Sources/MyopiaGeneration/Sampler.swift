import Foundation
import MyopiaKernels
import MyopiaSupport
import MyopiaModel

/// How the next token is chosen from the logits.
public struct SamplingOptions: Codable, Equatable, Sendable {
    /// 0 means greedy (argmax).
    public var temperature: Double = 1
    /// Keep only the k most likely tokens (nil: all).
    public var topK: Int? = nil
    /// Keep the smallest set of most likely tokens whose probability reaches p (nil: all).
    public var topP: Double? = nil
    public var seed: UInt64 = 1
    public var maxTokens: Int = 200
    /// Stop when this token is produced (end of text); it is the last token of the sample.
    public var stopToken: Int32? = nil
    /// Stop once the context is full, instead of rebuilding it from the last half of the text and
    /// going on: every token of the sample then sees the whole text before it.
    public var stopAtContext: Bool = false

    public init(temperature: Double = 1, topK: Int? = nil, topP: Double? = nil, seed: UInt64 = 1,
                maxTokens: Int = 200, stopToken: Int32? = nil, stopAtContext: Bool = false) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
        self.maxTokens = maxTokens
        self.stopToken = stopToken
        self.stopAtContext = stopAtContext
    }
}

/// Picks one token from a row of logits.
public struct Sampler {
    public let options: SamplingOptions
    var rng: SeededGenerator
    private var order: [Int] = []
    private var probs: [Float] = []
    private var keys: [UInt64] = []

    public init(_ options: SamplingOptions) {
        self.options = options
        rng = SeededGenerator(seed: options.seed)
    }

    public mutating func sample(_ logits: UnsafePointer<Float>, count v: Int) -> Int32 {
        if options.temperature <= 0 || options.topK == 1 {
            var best = 0
            for j in 1..<v where logits[j] > logits[best] { best = j }
            return Int32(best)
        }
        if probs.count != v {
            probs = [Float](repeating: 0, count: v)
            order = Array(0..<v)
            keys = [UInt64](repeating: 0, count: v)
        }
        let invT = Float(1 / options.temperature)
        probs.withUnsafeMutableBufferPointer { p in
            for j in 0..<v { p[j] = logits[j] }
            RowOps.softmax(p.baseAddress!, count: v, scale: invT)
        }
        // Most likely first; ties broken by id so the order is reproducible. A probability is ≥ 0,
        // so its bits order as it does: sorting (¬bits)·2³² + id ascending gives exactly that order,
        // as plain integers (several times faster than comparing through the probabilities).
        probs.withUnsafeBufferPointer { p in
            keys.withUnsafeMutableBufferPointer { k in
                for j in 0..<v { k[j] = UInt64(~p[j].bitPattern) << 32 | UInt64(j) }
                k.sort()
                order.withUnsafeMutableBufferPointer { o in
                    for i in 0..<v { o[i] = Int(truncatingIfNeeded: k[i] & 0xFFFF_FFFF) }
                }
            }
        }
        var keep = v
        if let k = options.topK, k > 0 { keep = min(keep, k) }
        if let p = options.topP, p < 1 {
            var cumulative: Float = 0
            for (i, j) in order.prefix(keep).enumerated() {
                cumulative += probs[j]
                if Double(cumulative) >= p { keep = i + 1; break }
            }
        }
        var total: Float = 0
        for j in order.prefix(keep) { total += probs[j] }
        var u = Float(rng.nextUnit()) * total
        for j in order.prefix(keep) {
            u -= probs[j]
            if u <= 0 { return Int32(j) }
        }
        return Int32(order[keep - 1])
    }
}

/// Why a sample ended.
public enum StopReason: String, Codable, Equatable, Sendable {
    /// The model produced the stop token (`SamplingOptions.stopToken`, end of text).
    case endOfText = "eos"
    /// `maxTokens` tokens were produced.
    case maxTokens = "max-tokens"
    /// The context was full and `SamplingOptions.stopAtContext` was set.
    case context
}

/// One continuation of a prompt.
public struct GeneratedSample: Codable, Equatable, Sendable {
    /// The tokens produced, without the prompt; ends with the stop token when `stopReason` is `.endOfText`.
    public var tokens: [Int32]
    public var stopReason: StopReason

    public init(tokens: [Int32], stopReason: StopReason) {
        self.tokens = tokens
        self.stopReason = stopReason
    }

    enum CodingKeys: String, CodingKey {
        case tokens
        case stopReason = "stop_reason"
    }
}

public enum Generation {
    /// Continues `prompt` (non-empty) by up to `maxTokens` tokens with cached decoding, calling
    /// `onToken` as each arrives; returns the tokens produced (see `sample` for why it stopped).
    public static func generate(_ model: Transformer, prompt: [Int32], options: SamplingOptions,
                                onToken: (Int32) -> Void = { _ in }) -> [Int32] {
        sample(model, prompt: prompt, options: options, onToken: onToken).tokens
    }

    /// Continues `prompt` (non-empty) with cached decoding, calling `onToken` as each token arrives,
    /// until the stop token, `maxTokens` tokens, or (with `stopAtContext`) a full context.
    ///
    /// The context a token is sampled from: the last `maxPositions` tokens of the prompt and
    /// everything generated since. When that reaches the model's positions (T), one more token is
    /// sampled from the full context; then, unless `stopAtContext`, the cache is rebuilt from the
    /// last max(1, T/2) tokens and decoding goes on. `ContinuationLoss` scores tokens with exactly
    /// these contexts. Decoding reads the model's `quantizedDecoding` weights where it has them.
    public static func sample(_ model: Transformer, prompt: [Int32], options: SamplingOptions,
                              onToken: (Int32) -> Void = { _ in }) -> GeneratedSample {
        precondition(!prompt.isEmpty, "generation needs at least one prompt token")
        let maxT = model.config.maxPositions, v = model.config.vocabSize
        guard options.maxTokens > 0 else { return GeneratedSample(tokens: [], stopReason: .maxTokens) }
        let cache = KVCache(config: model.config, quantized: true)
        var sampler = Sampler(options)
        var tokens = prompt
        var produced: [Int32] = []
        var logits = model.decode(Array(tokens.suffix(maxT)), cache: cache)
        while true {
            let next = sampler.sample(logits, count: v)
            tokens.append(next)
            produced.append(next)
            onToken(next)
            if next == options.stopToken { return GeneratedSample(tokens: produced, stopReason: .endOfText) }
            if produced.count == options.maxTokens { return GeneratedSample(tokens: produced, stopReason: .maxTokens) }
            if cache.length == cache.capacity {
                if options.stopAtContext { return GeneratedSample(tokens: produced, stopReason: .context) }
                cache.reset()
                logits = model.decode(Array(tokens.suffix(ContinuationLoss.restartLength(maxPositions: maxT))), cache: cache)
            } else {
                logits = model.decode([next], cache: cache)
            }
        }
    }
}
