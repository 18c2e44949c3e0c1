// DataParallelStep: the gradient of one global batch computed in S shards, over however many ranks
// the job has, with the same bits whatever that number is (docs/distributed.md).
//
// Dimensions: B global batch, S shards, B/S windows per shard, T time, P parameters, N ranks.

import Foundation
import MyopiaDistributed
import MyopiaModel

/// The step's gradient and loss, shard by shard: the global batch (B, T) is cut into S shards of
/// B/S windows; this rank runs forward and backward on each of its shards (ShardPlan) into the
/// model's gradient buffer, each shard's loss divided by the *global* batch's counted targets, and
/// the S shard gradients are added in shard order on every rank (OrderedShardSum). The loss is the
/// shards' summed row losses, added in shard order, over the same count. One process with the same
/// S computes the same shards in the same order: the same bits.
///
/// Teacher forcing only: the other games normalise and draw per batch (docs/distributed.md). Under
/// the local-myopic flow each shard's forward runs the frozen reference on that shard's windows
/// alone, the same computation whichever rank holds the shard.
public final class DataParallelStep {
    public let model: Transformer
    /// The activations of one shard, (B/S, T).
    public let cache: ActivationCache
    public let batch: Int, seqLen: Int, shards: Int
    public let group: any ProcessGroup
    public let sum: OrderedShardSum
    /// Whether any rank saw an interruption request (Ctrl-C) by the last step: every rank stops at
    /// the same step.
    public private(set) var interruptRequested = false

    /// Per rank: its shards' row-loss sums (padded to the most any rank has), then its interruption flag.
    private let slots: Int
    private let local: UnsafeMutablePointer<Double>
    private let gathered: UnsafeMutablePointer<Double>
    /// Where shard s's loss sum lands in `gathered`.
    private let slotOfShard: [Int]

    public init(model: Transformer, batch: Int, seqLen: Int, shards: Int, group: any ProcessGroup) {
        precondition(shards >= 1 && batch % shards == 0, "\(batch) windows do not cut into \(shards) shards")
        self.model = model
        self.batch = batch
        self.seqLen = seqLen
        self.shards = shards
        self.group = group
        let plan = ShardPlan(shards: shards, ranks: group.size)
        cache = model.makeCache(batch: batch / shards, seqLen: seqLen)
        sum = OrderedShardSum(count: model.params.count, plan: plan, group: group)
        let slots = (0..<group.size).map { plan.shards(of: $0).count }.max()! + 1
        self.slots = slots
        local = .allocate(capacity: slots)
        gathered = .allocate(capacity: slots * group.size)
        slotOfShard = (0..<shards).map { s in
            let r = plan.rank(of: s)
            return r * slots + (s - plan.shards(of: r).lowerBound)
        }
    }

    deinit {
        local.deallocate()
        gathered.deallocate()
    }

    /// Leaves the gradient of the global batch's mean loss in `model.params.grads` on every rank and
    /// returns that loss (not finite when any shard's is not; backward is then skipped for that
    /// shard). `interrupted`: this rank's Ctrl-C, shared as `interruptRequested`.
    public func gradient(inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, interrupted: Bool = false) -> Float {
        let t = seqLen, perShard = batch / shards, rows = perShard * t
        var counted = 0
        for i in 0..<(batch * t) where targets[i] >= 0 { counted += 1 }
        let params = model.params
        cache.lossDenominator = counted
        defer { cache.lossDenominator = nil }
        let mine = sum.mine
        for (i, s) in mine.enumerated() {
            params.zeroGrads()
            let x = inputs + s * rows, y = targets + s * rows
            let loss = model.forward(tokens: x, targets: y, batch: perShard, seqLen: t, cache: cache)
            var total = 0.0
            for r in 0..<rows where y[r] >= 0 { total += Double(cache.rowLoss[r]) }
            local[i] = total
            if let loss, loss.isFinite { model.backward(cache: cache) }
            sum.deposit(i, params.grads)
        }
        for i in mine.count..<(slots - 1) { local[i] = 0 }
        local[slots - 1] = interrupted ? 1 : 0
        sum.finish(into: params.grads)
        group.allGather(doubles: local, count: slots, into: gathered)
        var total = 0.0
        for s in 0..<shards { total += gathered[slotOfShard[s]] }
        interruptRequested = (0..<group.size).contains { gathered[$0 * slots + slots - 1] != 0 }
        return Float(total / Double(max(1, counted)))
    }

    /// `gradient` of a batch held in arrays of (B, T) tokens.
    public func gradient(inputs: [Int32], targets: [Int32], interrupted: Bool = false) -> Float {
        inputs.withUnsafeBufferPointer { x in
            targets.withUnsafeBufferPointer { y in gradient(inputs: x.baseAddress!, targets: y.baseAddress!, interrupted: interrupted) }
        }
    }
}
