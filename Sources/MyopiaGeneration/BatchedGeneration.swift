import Foundation
import MyopiaKernels
import MyopiaModel

/// One sample to draw: its prompt (non-empty) and its sampling options (its own seed).
public struct SampleRequest: Equatable, Sendable {
    public var prompt: [Int32]
    public var options: SamplingOptions

    public init(prompt: [Int32], options: SamplingOptions) {
        self.prompt = prompt
        self.options = options
    }
}

extension Generation {
    /// Draws every request's sample, up to `decodeBatch` at a time decoding together
    /// (`DecodeBatch`): each step runs one GEMM per projection over the samples still going, a
    /// prompt shared by several requests is decoded once, and each sample stops on its own (stop
    /// token, `maxTokens`, a full context with `stopAtContext`). A sample whose context fills
    /// rebuilds it alone, as `sample` does, and rejoins the batch.
    ///
    /// Every sample equals `sample(model, prompt:, options:)` of its request token for token: its
    /// logits are bitwise those of decoding it alone, and its sampler draws from them with its own
    /// random stream. `decodeBatch` 1 is `sample` run request by request. `onToken(i, token)` is
    /// called as request i's sample gets each token, `onDone(i)` when it ends.
    public static func sample(_ model: Transformer, requests: [SampleRequest], decodeBatch: Int,
                              onToken: (Int, Int32) -> Void = { _, _ in },
                              onDone: (Int) -> Void = { _ in }) -> [GeneratedSample] {
        precondition(decodeBatch >= 1, "decodeBatch must be at least 1")
        var results = [GeneratedSample?](repeating: nil, count: requests.count)
        var first = 0
        while first < requests.count {
            let group = first..<min(requests.count, first + decodeBatch)
            if group.count == 1 {
                let r = requests[first]
                results[first] = sample(model, prompt: r.prompt, options: r.options) { onToken(group.lowerBound, $0) }
                onDone(first)
            } else {
                var drawn = BatchedSampler(model, requests: Array(requests[group]))
                drawn.run(onToken: { onToken(group.lowerBound + $0, $1) }, onDone: { onDone(group.lowerBound + $0) })
                for (j, s) in drawn.results.enumerated() { results[group.lowerBound + j] = s }
            }
            first = group.upperBound
        }
        return results.map { $0! }
    }
}

/// The samples of one decode batch, each in a slot of its own, following `Generation.sample` step
/// by step: sample from the logits, stop or decode the token (or rebuild a full context).
struct BatchedSampler {
    let model: Transformer
    let requests: [SampleRequest]
    let batch: DecodeBatch
    /// Prompt decoding and context rebuilds, with `KVCache`'s chunking (that of `Generation.sample`).
    let prefill: KVCache
    var samplers: [Sampler]
    var texts: [[Int32]]
    var produced: [[Int32]]
    var results: [GeneratedSample?]
    /// Logits a slot samples from next when they are not a row of the last step: its prompt's, or
    /// those of its rebuilt context.
    var ownLogits: [[Float]]

    init(_ model: Transformer, requests: [SampleRequest]) {
        precondition(requests.allSatisfy { !$0.prompt.isEmpty }, "generation needs at least one prompt token")
        self.model = model
        self.requests = requests
        let maxT = model.config.maxPositions
        let reach = requests.map { Generation.reach($0.prompt, $0.options, maxT) }.max() ?? 1
        batch = DecodeBatch(config: model.config, slots: requests.count, capacity: min(maxT, reach), quantized: true)
        // Prompts and rebuilt contexts are decoded as Generation.sample decodes them.
        prefill = KVCache(config: model.config, capacity: Generation.cacheCapacity(maxT, reach: reach), quantized: true)
        samplers = requests.map { Sampler($0.options) }
        texts = requests.map(\.prompt)
        produced = requests.map { _ in [] }
        results = requests.map { $0.options.maxTokens > 0 ? nil : GeneratedSample(tokens: [], stopReason: .maxTokens) }
        ownLogits = requests.map { _ in [] }
    }

    /// Decodes `tokens` (the last T of a prompt, or a rebuilt context) alone into slot `slot` and
    /// keeps the logits of its last position.
    mutating func fill(slot: Int, with tokens: [Int32]) {
        prefill.reset()
        let logits = model.decode(tokens, cache: prefill)
        ownLogits[slot] = Array(UnsafeBufferPointer(start: logits, count: model.config.vocabSize))
        batch.load(slot: slot, from: prefill)
    }

    mutating func run(onToken: (Int, Int32) -> Void, onDone: (Int) -> Void) {
        let maxT = model.config.maxPositions, v = model.config.vocabSize
        var ready: [(slot: Int, row: Int?)] = []   // row: the last step's row holding its logits, nil: ownLogits
        // Each distinct prompt is decoded once; the slots that share it copy its keys and values.
        var decoded: [[Int32]: Int] = [:]
        for (i, r) in requests.enumerated() where results[i] == nil {
            if let source = decoded[r.prompt] {
                ownLogits[i] = ownLogits[source]
                batch.copy(slot: i, from: source)
            } else {
                fill(slot: i, with: Array(r.prompt.suffix(maxT)))
                decoded[r.prompt] = i
            }
            ready.append((i, nil))
        }
        for i in results.indices where results[i] != nil { onDone(i) }
        while !ready.isEmpty {
            var stepSlots: [Int] = [], stepTokens: [Int32] = [], rebuilt: [Int] = []
            let drawn = draw(ready, vocab: v)
            for ((slot, _), next) in zip(ready, drawn) {
                texts[slot].append(next)
                produced[slot].append(next)
                onToken(slot, next)
                let options = requests[slot].options
                if next == options.stopToken {
                    finish(slot, .endOfText, onDone)
                } else if produced[slot].count == options.maxTokens {
                    finish(slot, .maxTokens, onDone)
                } else if batch.lengths[slot] == maxT {
                    if options.stopAtContext {
                        finish(slot, .context, onDone)
                    } else {
                        fill(slot: slot, with: Array(texts[slot].suffix(ContinuationLoss.restartLength(maxPositions: maxT))))
                        rebuilt.append(slot)
                    }
                } else {
                    stepSlots.append(slot)
                    stepTokens.append(next)
                }
            }
            if !stepSlots.isEmpty { model.decodeStep(stepTokens, slots: stepSlots, batch: batch) }
            ready = stepSlots.enumerated().map { (slot: $0.element, row: Optional($0.offset)) } + rebuilt.map { (slot: $0, row: nil) }
        }
    }

    /// The next token of each ready slot, drawn by the slots' own samplers side by side on the
    /// pool's threads (each from its own logits with its own random stream, so the tokens do not
    /// depend on how the draws are spread).
    mutating func draw(_ ready: [(slot: Int, row: Int?)], vocab v: Int) -> [Int32] {
        var next = [Int32](repeating: 0, count: ready.count)
        let batch = self.batch, ownLogits = self.ownLogits
        samplers.withUnsafeMutableBufferPointer { samplers in
            next.withUnsafeMutableBufferPointer { next in
                Parallel.forEach(ready.count) { i in
                    let (slot, row) = ready[i]
                    next[i] = row.map { samplers[slot].sample(batch.logits(row: $0, vocab: v), count: v) }
                        ?? ownLogits[slot].withUnsafeBufferPointer { samplers[slot].sample($0.baseAddress!, count: v) }
                }
            }
        }
        return next
    }

    mutating func finish(_ slot: Int, _ reason: StopReason, _ onDone: (Int) -> Void) {
        results[slot] = GeneratedSample(tokens: produced[slot], stopReason: reason)
        ownLogits[slot] = []
        onDone(slot)
    }
}
