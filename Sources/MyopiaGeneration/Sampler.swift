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
    private var probs: [Float] = []
    private var keys: [UInt64] = []
    private var spare: [UInt64] = []
    private var counts: [Int] = []

    public init(_ options: SamplingOptions) {
        self.options = options
        rng = SeededGenerator(seed: options.seed)
    }

    /// Draws a token: the vocabulary ordered most likely first (ties by id), cut to `topK` and to the
    /// shortest prefix whose probability reaches `topP`, and a uniform draw walked down that prefix.
    ///
    /// Only the head of the order is sorted: the tokens whose probability p is at least half an ulp
    /// of the largest, p_max. Every prefix sum of the order is at least p_max, so adding a token
    /// below that changes no float sum — the prefix's total and `topP`'s running sum are those of
    /// the full order exactly — and the walk, which subtracts the same terms from a draw below the
    /// total, ends inside the head but for rounding; only then (or when the cut reaches past the
    /// head and its last token is wanted) is the rest sorted too. The head is a few thousand of
    /// SmolLM2's 49,152 tokens; the draws are those of sorting them all (`SamplerOrderTests`).
    public mutating func sample(_ logits: UnsafePointer<Float>, count v: Int) -> Int32 {
        if options.temperature <= 0 || options.topK == 1 {
            var best = 0
            for j in 1..<v where logits[j] > logits[best] { best = j }
            return Int32(best)
        }
        if probs.count != v {
            probs = [Float](repeating: 0, count: v)
            keys = [UInt64](repeating: 0, count: v)
            spare = [UInt64](repeating: 0, count: v)
            counts = [Int](repeating: 0, count: Sampler.radixPasses << Sampler.radixBits)
        }
        let invT = Float(1 / options.temperature)
        let (topK, topP) = (options.topK, options.topP)
        let unit = Float(rng.nextUnit())
        return probs.withUnsafeMutableBufferPointer { probs in
            keys.withUnsafeMutableBufferPointer { keys in
                spare.withUnsafeMutableBufferPointer { spare in
                    counts.withUnsafeMutableBufferPointer { counts in
                        let p = probs.baseAddress!, k = keys.baseAddress!
                        for j in 0..<v { p[j] = logits[j] }
                        RowOps.softmax(p, count: v, scale: invT)
                        var pmax: Float = 0
                        for j in 0..<v { pmax = max(pmax, p[j]) }
                        let threshold = pmax.ulp / 2
                        // Most likely first, ties by id: a probability is ≥ 0, so its bits order as
                        // it does, and the keys (¬bits)·2³² + id ascending give exactly that order.
                        func key(_ j: Int) -> UInt64 { UInt64(~p[j].bitPattern) << 32 | UInt64(j) }
                        func id(_ i: Int) -> Int { Int(truncatingIfNeeded: k[i] & 0xFFFF_FFFF) }
                        var head = 0
                        for j in 0..<v where p[j] >= threshold { k[head] = key(j); head += 1 }
                        Sampler.radixSort(k, spare: spare.baseAddress!, count: head, counts: counts.baseAddress!)
                        var keep = v
                        if let topK, topK > 0 { keep = min(keep, topK) }
                        if let topP, topP < 1 {
                            var cumulative: Float = 0
                            for i in 0..<min(keep, head) {
                                cumulative += p[id(i)]
                                if Double(cumulative) >= topP { keep = i + 1; break }
                            }
                        }
                        var total: Float = 0
                        for i in 0..<min(keep, head) { total += p[id(i)] }
                        var u = unit * total
                        for i in 0..<min(keep, head) {
                            u -= p[id(i)]
                            if u <= 0 { return Int32(id(i)) }
                        }
                        if keep > head {
                            var tail = head
                            for j in 0..<v where p[j] < threshold { k[tail] = key(j); tail += 1 }
                            Sampler.radixSort(k + head, spare: spare.baseAddress!, count: v - head, counts: counts.baseAddress!)
                            for i in head..<keep {
                                u -= p[id(i)]
                                if u <= 0 { return Int32(id(i)) }
                            }
                        }
                        return Int32(id(keep - 1))
                    }
                }
            }
        }
    }
}

extension Sampler {
    static let radixBits = 11, radixPasses = 3   // 33 bits ≥ the 32 of a key's high half

    /// Sorts `keys` ascending by their high 32 bits, stably (equal high halves keep their order), in
    /// `radixPasses` counting passes of `radixBits` bits; `spare` holds as many keys, `counts`
    /// radixPasses · 2^radixBits. A pass whose digit is the same for every key is skipped.
    static func radixSort(_ keys: UnsafeMutablePointer<UInt64>, spare: UnsafeMutablePointer<UInt64>, count n: Int,
                          counts: UnsafeMutablePointer<Int>) {
        guard n > 1 else { return }
        let buckets = 1 << radixBits, mask = UInt64(buckets - 1)
        counts.update(repeating: 0, count: radixPasses * buckets)
        for i in 0..<n {
            let high = keys[i] >> 32
            for pass in 0..<radixPasses { counts[pass * buckets + Int((high >> UInt64(pass * radixBits)) & mask)] += 1 }
        }
        var from = keys, to = spare
        for pass in 0..<radixPasses {
            let c = counts + pass * buckets, shift = UInt64(32 + pass * radixBits)
            if c[Int((from[0] >> shift) & mask)] == n { continue }
            var start = 0
            for b in 0..<buckets { let count = c[b]; c[b] = start; start += count }
            for i in 0..<n {
                let key = from[i], b = Int((key >> shift) & mask)
                to[c[b]] = key
                c[b] += 1
            }
            swap(&from, &to)
        }
        if from != keys { keys.update(from: from, count: n) }
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

    /// Positions a sample can reach within the context: the prompt's and all but its last token's.
    static func reach(_ prompt: [Int32], _ options: SamplingOptions, _ maxPositions: Int) -> Int {
        min(prompt.count, maxPositions) + max(0, options.maxTokens - 1)
    }

    /// The capacity of a KV cache for samples reaching `reach` positions: those, or when they pass
    /// the model's T the full context (rebuilt when it fills); never less than KVCache's 64-row
    /// prompt chunk, so prompts are processed in the same chunks whatever the reach. A cache smaller
    /// than T only saves memory (8192 positions of SmolLM2 are 377 MB to clear): it can fill only
    /// once the sample has its `maxTokens` tokens.
    static func cacheCapacity(_ maxPositions: Int, reach: Int) -> Int {
        max(min(maxPositions, reach), min(64, maxPositions))
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
        let cache = KVCache(config: model.config, capacity: cacheCapacity(maxT, reach: reach(prompt, options, maxT)),
                            quantized: true)
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
