import Foundation
import MyopiaKernels

// Dimensions: S sequences (slots), L layers, P positions held per sequence, C d_model, NH query
// heads, NKV key/value heads, HS head size, V vocab, R rows of one step (R ≤ S),
// W = (NH + 2·NKV)·HS, KV = NKV·HS.

/// Keys and values of S sequences decoded side by side, one new token each per step: each step is
/// one GEMM per projection over all R rows (the weights stream once for R tokens), while attention
/// stays per sequence, each over its own cache. Sequences may sit at different positions (a ragged
/// batch: no padding, no masks beyond each sequence's own causal window).
///
/// A row's logits are bitwise those of decoding its sequence alone with `KVCache`: the GEMM
/// kernels never split k and sum every row in the same order whatever the number of rows (gemm.c),
/// the row operations (norms, activations, RoPE, embedding) treat each row on its own, and
/// attention runs the same per-row products over the same cached prefix (`attendToCache`).
public final class DecodeBatch {
    public let slots: Int
    public let capacity: Int
    /// Whether decoding reads the model's `quantizedDecoding` weights (where it has them).
    public let quantized: Bool
    /// Positions held by each slot: its next token goes to position `lengths[slot]`.
    public private(set) var lengths: [Int]
    let layers: Int, kvWidth: Int
    let keys: UnsafeMutablePointer<Float>      // (S, L, P, KV)
    let values: UnsafeMutablePointer<Float>    // (S, L, P, KV)
    /// One step's buffers for up to S rows (residIn is the residual stream).
    let layer: ActivationCache.Layer
    let ln: UnsafeMutablePointer<Float>        // (S, C)
    let mean: UnsafeMutablePointer<Float>      // (S)
    let rstd: UnsafeMutablePointer<Float>      // (S)
    let scores: UnsafeMutablePointer<Float>    // (S, NH, P)
    /// Logits of the last step's rows, (R, V), in the order of its `slots` argument.
    public let logits: UnsafeMutablePointer<Float>
    private let arena = BufferArena()

    /// Room for `slots` sequences of up to `capacity` positions each (at most the model's).
    public init(config: ModelConfig, slots: Int, capacity: Int? = nil, quantized: Bool = false) {
        precondition(slots >= 1, "a decode batch needs at least one slot")
        self.quantized = quantized
        self.slots = slots
        self.capacity = min(capacity ?? config.maxPositions, config.maxPositions)
        lengths = [Int](repeating: 0, count: slots)
        layers = config.nLayers
        kvWidth = config.kvHeads * config.headSize
        let arena = self.arena, s = slots, p = self.capacity, c = config.dModel
        keys = arena.floats(s * layers * p * kvWidth)
        values = arena.floats(s * layers * p * kvWidth)
        layer = ActivationCache.Layer.allocate(config, rows: s, attentionRows: 0, arena: arena)
        ln = arena.floats(s * c); mean = arena.floats(s); rstd = arena.floats(s)
        scores = arena.floats(s * config.nHeads * p)
        logits = arena.floats(s * config.vocabSize)
    }

    /// Slot `slot` takes over the keys and values of `cache`'s positions (a prompt decoded once and
    /// shared by several samples, or a context rebuilt after it filled).
    public func load(slot: Int, from cache: KVCache) {
        precondition((0..<slots).contains(slot) && cache.length <= capacity, "the decode batch cannot hold that cache")
        let count = cache.length * kvWidth
        for l in 0..<layers {
            let from = l * cache.capacity * kvWidth
            keys(slot: slot, layer: l).update(from: cache.keys + from, count: count)
            values(slot: slot, layer: l).update(from: cache.values + from, count: count)
        }
        lengths[slot] = cache.length
    }

    /// Slot `slot` takes over the positions of slot `source` (a prompt shared by several samples).
    public func copy(slot: Int, from source: Int) {
        let count = lengths[source] * kvWidth
        for l in 0..<layers {
            keys(slot: slot, layer: l).update(from: keys(slot: source, layer: l), count: count)
            values(slot: slot, layer: l).update(from: values(slot: source, layer: l), count: count)
        }
        lengths[slot] = lengths[source]
    }

    /// Slot `slot`'s cached keys or values of layer l, (P, KV).
    func keys(slot: Int, layer l: Int) -> UnsafeMutablePointer<Float> { keys + (slot * layers + l) * capacity * kvWidth }
    func values(slot: Int, layer l: Int) -> UnsafeMutablePointer<Float> { values + (slot * layers + l) * capacity * kvWidth }

    /// The logits (V) of row r of the last step.
    public func logits(row r: Int, vocab v: Int) -> UnsafePointer<Float> { UnsafePointer(logits + r * v) }

    func advance(_ slot: Int) { lengths[slot] += 1 }
}

extension Transformer {
    /// Appends `tokens[r]` to slot `slots[r]` (distinct slots, each with room for one more position)
    /// and leaves the logits (V) of each row in `batch.logits` row r: for every row, bitwise the
    /// logits `decode([tokens[r]], cache:)` gives on a `KVCache` holding that slot's positions.
    public func decodeStep(_ tokens: [Int32], slots: [Int], batch: DecodeBatch) {
        precondition(!config.isContinuous, "a model with continuous heads does not decode tokens")
        precondition(flow != .localMyopic, "cached decoding does not support the local-myopic flow (its past is a reference model's)")
        let n = tokens.count
        precondition(n >= 1 && n == slots.count && n <= batch.slots && Set(slots).count == n, "one token per distinct slot")
        let positions = slots.map { batch.lengths[$0] }
        precondition(positions.allSatisfy { $0 < batch.capacity }, "a slot of the decode batch is full")
        let a = batch.layer, c = config.dModel, w = params.weights, q = batch.quantized ? quantizedDecoding : nil
        tokens.withUnsafeBufferPointer { t in
            for r in 0..<n { embed(out: a.residIn + r * c, tokens: t.baseAddress! + r, b: 1, t: 1, firstPosition: positions[r]) }
        }
        let selfOnly = attentionPattern == .selfOnly, p = batch.capacity
        for l in 0..<config.nLayers {
            let b = blocks[l], shape = shapes[l], sh = shape.attention, width = sh.width, kvWidth = batch.kvWidth
            Block.forwardQKV(a, w: w, p: b, shape: shape, n: n, firstPosition: 0, period: nil, rotating: false, quantized: q)
            if let rope = shape.rope {
                for r in 0..<n {
                    rope.rotate(a.qkv + r * width, ld: width, rows: 1, heads: sh.nh + sh.nkv, base: positions[r])
                }
            }
            for r in 0..<n {
                let at = positions[r] * kvWidth
                (batch.keys(slot: slots[r], layer: l) + at).update(from: a.qkv + r * width + sh.keyColumn, count: kvWidth)
                (batch.values(slot: slots[r], layer: l) + at).update(from: a.qkv + r * width + sh.valueColumn, count: kvWidth)
            }
            let attend = { (task: Int) in
                let r = task / sh.nh, h = task % sh.nh
                Transformer.attendToCache(z: a.z + r * sh.out, qkv: a.qkv + r * width, rows: 1, firstPosition: positions[r],
                                          head: h, keys: batch.keys(slot: slots[r], layer: l),
                                          values: batch.values(slot: slots[r], layer: l),
                                          scores: batch.scores + task * p, shape: sh, selfOnly: selfOnly)
            }
            let work = positions.reduce(0) { $0 + $1 + 1 } * sh.hs * sh.nh
            if work >= 1 << 18 { Parallel.forEach(n * sh.nh, attend) } else { for task in 0..<(n * sh.nh) { attend(task) } }
            Block.forwardAfterAttention(w: w, p: b, shape: shape, a, residOut: a.residIn, n: n, quantized: q)
        }
        finalNorm.forward(w: w, out: batch.ln, mean: batch.mean, rstd: batch.rstd, inp: a.residIn, n: n, c: c, eps: eps)
        logits(batch.logits, from: batch.ln, rows: n, quantized: q)
        for slot in slots { batch.advance(slot) }
    }
}
