// Repetition and loop metrics for a set of samples (docs/DESIGN.md §5, generation study): how varied the
// text is (distinct-n) and how often a sample ends stuck in a cycle. Pure functions on token ids;
// a sample is the generated tokens only, without the prompt.
//
//   distinct-n (pooled)     |⋃_s ngrams_n(s)| / Σ_s |ngrams_n(s)|    n-grams counted with repeats
//   distinct-n (per sample) mean over samples with ≥ 1 n-gram of |set(ngrams_n(s))| / |ngrams_n(s)|
//   loop                    the tail of s is ≥ 3 consecutive copies of a cycle of period p ≤ 32
//                           (the smallest such p)

/// A sample's tail that repeats one cycle: the last `length` tokens have period `period`, and the
/// last `repeats · period` of them are `repeats` whole copies of the cycle ending the sample.
public struct Loop: Codable, Equatable, Sendable {
    /// The cycle's length in tokens (the smallest period with enough repeats).
    public var period: Int
    /// Whole copies of the cycle at the end of the sample: ⌊length / period⌋.
    public var repeats: Int
    /// Tokens the loop covers: the longest tail with this period (it may start mid-cycle).
    public var length: Int

    public init(period: Int, repeats: Int, length: Int) {
        self.period = period
        self.repeats = repeats
        self.length = length
    }
}

/// distinct-n for one n over a set of samples.
public struct DistinctN: Codable, Equatable, Sendable {
    public var n: Int
    /// n-grams over all samples, repeats counted (a sample of length L has max(0, L − n + 1)).
    public var ngrams: Int
    /// Different n-grams over all samples (one set for the whole set of samples).
    public var distinctNgrams: Int
    /// distinctNgrams / ngrams; nil when there are no n-grams.
    public var pooled: Double?
    /// The mean of each sample's own distinct / total, over samples with at least one n-gram; nil when none has.
    public var perSampleMean: Double?

    public init(n: Int, ngrams: Int, distinctNgrams: Int, pooled: Double?, perSampleMean: Double?) {
        self.n = n
        self.ngrams = ngrams
        self.distinctNgrams = distinctNgrams
        self.pooled = pooled
        self.perSampleMean = perSampleMean
    }

    enum CodingKeys: String, CodingKey {
        case n, ngrams, pooled
        case distinctNgrams = "distinct_ngrams"
        case perSampleMean = "per_sample_mean"
    }

    // Absent values are written as null, so every object has the same keys.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(n, forKey: .n)
        try c.encode(ngrams, forKey: .ngrams)
        try c.encode(distinctNgrams, forKey: .distinctNgrams)
        try c.encode(pooled, forKey: .pooled)
        try c.encode(perSampleMean, forKey: .perSampleMean)
    }
}

/// Repetition metrics of a set of samples.
public struct RepetitionReport: Codable, Equatable, Sendable {
    public var samples: Int
    /// distinct-1 … distinct-4 (or whatever orders were asked for), in order of n.
    public var distinct: [DistinctN]
    /// Each sample's loop, nil where it does not end in one.
    public var loops: [Loop?]
    /// Samples that end in a loop.
    public var loopCount: Int
    /// loopCount / samples; nil for no samples.
    public var loopShare: Double?

    enum CodingKeys: String, CodingKey {
        case samples, distinct, loops
        case loopCount = "loop_count"
        case loopShare = "loop_share"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(samples, forKey: .samples)
        try c.encode(distinct, forKey: .distinct)
        try c.encode(loops, forKey: .loops)
        try c.encode(loopCount, forKey: .loopCount)
        try c.encode(loopShare, forKey: .loopShare)
    }
}

public enum RepetitionMetrics {
    /// The longest cycle that counts as a loop.
    public static let maxLoopPeriod = 32
    /// The fewest whole copies of the cycle that count as a loop.
    public static let minLoopRepeats = 3

    /// distinct-n over `samples`, pooled and per sample (see the file header). n ≥ 1.
    public static func distinct(_ samples: [[Int32]], n: Int) -> DistinctN {
        precondition(n >= 1, "distinct-n needs n ≥ 1")
        var pooledSet = Set<[Int32]>()
        var total = 0, ratioSum = 0.0, counted = 0
        var own = Set<[Int32]>()
        for sample in samples where sample.count >= n {
            own.removeAll(keepingCapacity: true)
            for i in 0...(sample.count - n) { own.insert(Array(sample[i..<(i + n)])) }
            let grams = sample.count - n + 1
            total += grams
            ratioSum += Double(own.count) / Double(grams)
            counted += 1
            pooledSet.formUnion(own)
        }
        return DistinctN(n: n, ngrams: total, distinctNgrams: pooledSet.count,
                         pooled: total > 0 ? Double(pooledSet.count) / Double(total) : nil,
                         perSampleMean: counted > 0 ? ratioSum / Double(counted) : nil)
    }

    /// The loop `tokens` ends in, if any: the smallest period p ≤ `maxPeriod` whose tail holds at
    /// least `minRepeats` whole copies of the cycle, e.g. `x a b a b a b` → period 2, 3 repeats,
    /// length 6; `a b a b` has too few repeats; `a a a` is a loop of period 1.
    public static func loop(_ tokens: [Int32], maxPeriod: Int = maxLoopPeriod,
                            minRepeats: Int = minLoopRepeats) -> Loop? {
        precondition(maxPeriod >= 1 && minRepeats >= 2, "a loop needs a period ≥ 1 and at least 2 repeats")
        let count = tokens.count
        let longest = min(maxPeriod, count / minRepeats)
        guard longest >= 1 else { return nil }
        for p in 1...longest {
            // The longest tail with period p: walk back while each token equals the one p later.
            var j = count - p - 1
            while j >= 0 && tokens[j] == tokens[j + p] { j -= 1 }
            let length = count - 1 - j
            if length / p >= minRepeats { return Loop(period: p, repeats: length / p, length: length) }
        }
        return nil
    }

    /// distinct-n for each of `orders` and the loop of every sample.
    public static func report(_ samples: [[Int32]], orders: ClosedRange<Int> = 1...4,
                              maxPeriod: Int = maxLoopPeriod, minRepeats: Int = minLoopRepeats) -> RepetitionReport {
        let loops = samples.map { loop($0, maxPeriod: maxPeriod, minRepeats: minRepeats) }
        let looping = loops.filter { $0 != nil }.count
        return RepetitionReport(samples: samples.count, distinct: orders.map { distinct(samples, n: $0) }, loops: loops,
                                loopCount: looping,
                                loopShare: samples.isEmpty ? nil : Double(looping) / Double(samples.count))
    }
}
