import Foundation
import MyopiaKernels

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
    /// Stop when this token is produced.
    public var stopToken: Int32? = nil

    public init(temperature: Double = 1, topK: Int? = nil, topP: Double? = nil, seed: UInt64 = 1,
                maxTokens: Int = 200, stopToken: Int32? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
        self.maxTokens = maxTokens
        self.stopToken = stopToken
    }
}

/// Picks one token from a row of logits.
public struct Sampler {
    public let options: SamplingOptions
    var rng: SeededGenerator
    private var order: [Int] = []
    private var probs: [Float] = []

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
        if probs.count != v { probs = [Float](repeating: 0, count: v); order = Array(0..<v) }
        let invT = Float(1 / options.temperature)
        probs.withUnsafeMutableBufferPointer { p in
            for j in 0..<v { p[j] = logits[j] }
            RowOps.softmax(p.baseAddress!, count: v, scale: invT)
        }
        // Most likely first; ties broken by id so the order is reproducible.
        order.sort { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
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

public enum Generation {
    /// Continues `prompt` (non-empty) by up to `maxTokens` tokens with cached decoding, calling
    /// `onToken` as each arrives. When the context reaches the model's positions, the cache is
    /// rebuilt from the last half of the text and decoding goes on.
    public static func generate(_ model: Transformer, prompt: [Int32], options: SamplingOptions,
                                onToken: (Int32) -> Void = { _ in }) -> [Int32] {
        precondition(!prompt.isEmpty, "generation needs at least one prompt token")
        let maxT = model.config.maxPositions, v = model.config.vocabSize
        let cache = KVCache(config: model.config)
        var sampler = Sampler(options)
        var tokens = prompt
        var produced: [Int32] = []
        var logits = model.decode(Array(tokens.suffix(maxT)), cache: cache)
        for _ in 0..<options.maxTokens {
            let next = sampler.sample(logits, count: v)
            tokens.append(next)
            produced.append(next)
            onToken(next)
            if next == options.stopToken || produced.count == options.maxTokens { break }
            if cache.length == cache.capacity {
                cache.reset()
                logits = model.decode(Array(tokens.suffix(max(1, maxT / 2))), cache: cache)
            } else {
                logits = model.decode([next], cache: cache)
            }
        }
        return produced
    }
}
