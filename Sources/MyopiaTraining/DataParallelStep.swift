// DataParallelStep: the gradient of one global batch computed in S shards, over however many ranks
// the job has, with the same bits whatever that number is (docs/distributed.md).
//
// Dimensions: B global batch, S shards, B/S windows per shard, T time, P parameters, N ranks,
// F the game's figures per shard (GameRunner.figureCount).

import Foundation
import MyopiaDistributed
import MyopiaModel
import MyopiaSupport

/// The step's gradient and loss, shard by shard: the global batch (B, T) is cut into S shards of
/// B/S windows; this rank runs the game's forward and backward on each of its shards (ShardPlan)
/// into the model's gradient buffer, every loss divided by the *global* batch's count (its counted
/// targets, each prediction head's, the consequence game's pairs), and the S shard gradients are
/// added in shard order on every rank (OrderedShardSum). The game's random draws are keyed by the
/// window's place in the global batch, never by rank or shard. The loss and the game's statistics
/// are the shards' sums (row losses, replacements, rewards), exchanged and added in shard order,
/// over the same counts. One process with the same S computes the same shards in the same order:
/// the same bits.
///
/// Under the local-myopic flow each shard's forward runs the frozen reference on that shard's
/// windows alone, the same computation whichever rank holds the shard.
public final class DataParallelStep {
    public let model: Transformer
    /// The activations of one shard, (B/S, T).
    public let cache: ActivationCache
    public let batch: Int, seqLen: Int, shards: Int
    public let group: any ProcessGroup
    public let sum: OrderedShardSum
    /// Whether each bucket's exchange starts during the backward of this rank's last shard (as
    /// `Transformer.gradientsComplete` reports its layers done) rather than after it.
    public let overlapsBackward: Bool
    /// The training game on one shard's windows; after a step its `last` holds the whole batch's statistics.
    public let runner: GameRunner
    /// Whether any rank saw an interruption request (Ctrl-C) by the last step: every rank stops at
    /// the same step.
    public private(set) var interruptRequested = false

    /// Per rank: its shards' figures (F each, padded to the most shards any rank has), then its
    /// interruption flag.
    private let slots: Int
    private let local: UnsafeMutablePointer<Double>
    private let gathered: UnsafeMutablePointer<Double>
    /// The figures added over the shards, in shard order (F).
    private let totals: UnsafeMutablePointer<Double>
    /// Where shard s's figures start in `gathered`.
    private let slotOfShard: [Int]

    /// The hook handed to the model during the last shard's backward (made once).
    private let lastShardHook: ((Int) -> Void)?

    /// A step for batches of `batch` windows of `seqLen` in `shards` shards over `group`'s ranks,
    /// under `game`, whose draws `seed` keys (the run's seed). The gradient goes over the ranks in
    /// buckets of at most `bucketFloats` elements; `overlap` starts them during backward (nil:
    /// where the group's collectives run without waiting, as MPI's do). Neither changes a bit of
    /// the result; the defaults are the environment's (`Distributed.exchange`).
    public init(model: Transformer, batch: Int, seqLen: Int, shards: Int, group: any ProcessGroup,
                game: TrainingGame = .teacherForced, seed: UInt64 = 0,
                bucketFloats: Int = Distributed.exchange.bucketFloats, overlap: Bool? = Distributed.exchange.overlap) {
        precondition(shards >= 1 && batch % shards == 0, "\(batch) windows do not cut into \(shards) shards")
        self.model = model
        self.batch = batch
        self.seqLen = seqLen
        self.shards = shards
        self.group = group
        let plan = ShardPlan(shards: shards, ranks: group.size)
        cache = model.makeCache(batch: batch / shards, seqLen: seqLen)
        runner = GameRunner(game: game, model: model, cache: cache, batch: batch / shards, seqLen: seqLen, seed: seed)
        sum = OrderedShardSum(count: model.params.count, plan: plan, group: group, bucketFloats: bucketFloats)
        overlapsBackward = group.size > 1 && (overlap ?? group.startsWithoutWaiting)
        let width = runner.figureCount
        let slots = (0..<group.size).map { plan.shards(of: $0).count }.max()! * width + 1
        self.slots = slots
        local = .allocate(capacity: slots)
        gathered = .allocate(capacity: slots * group.size)
        totals = .allocate(capacity: width)
        slotOfShard = (0..<shards).map { s in
            let r = plan.rank(of: s)
            return r * slots + (s - plan.shards(of: r).lowerBound) * width
        }
        let sum = sum, grads = model.params.grads
        lastShardHook = overlapsBackward ? { sum.lastShardComplete(from: $0, grads) } : nil
    }

    /// Runs optimiser step `step` (from 1) of `trainingStep` on the global batch `inputs` → `targets`
    /// (B·T each): the sharded gradient (this rank's Ctrl-C shared with the others), then the same
    /// clip and AdamW update on every rank.
    @discardableResult
    public func step(_ trainingStep: TrainingStep, step: Int, lr: Double, inputs: UnsafePointer<Int32>,
                     targets: UnsafePointer<Int32>, lastCheckpoint: String? = nil) throws -> TrainingStep.Result {
        try trainingStep.run(step: step, lr: lr, lastCheckpoint: lastCheckpoint, forward: {
            gradient(step: step, inputs: inputs, targets: targets, interrupted: Interruption.isRequested)
        }, backward: {})   // the sharded gradient is left by the forward closure: no separate backward
    }

    deinit {
        local.deallocate()
        gathered.deallocate()
        totals.deallocate()
    }

    /// Leaves the gradient of the global batch's loss under the game in `model.params.grads` on
    /// every rank and returns that loss (not finite when any shard's is not; backward is then
    /// skipped for that shard). `step` (from 1) keys the game's draws. `interrupted`: this rank's
    /// Ctrl-C, shared as `interruptRequested`.
    public func gradient(step: Int = 1, inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>,
                         interrupted: Bool = false) -> Float {
        let rows = batch / shards * seqLen
        runner.prepareShards(targets: targets, windows: batch)
        defer { runner.finishShards() }
        shardedGradient(interrupted: interrupted) { s in
            runner.firstSequence = s * (batch / shards)
            runner.shardPasses(step: step, inputs: inputs + s * rows, targets: targets + s * rows)
        }
        return runner.combineShards(totals)
    }

    /// `gradient` of a batch held in arrays of (B, T) tokens.
    public func gradient(step: Int = 1, inputs: [Int32], targets: [Int32], interrupted: Bool = false) -> Float {
        inputs.withUnsafeBufferPointer { x in
            targets.withUnsafeBufferPointer { y in
                gradient(step: step, inputs: x.baseAddress!, targets: y.baseAddress!, interrupted: interrupted)
            }
        }
    }

    /// The teacher-forced gradient of the batch whatever the game (what the gradient split measures,
    /// as the whole-batch step measures it: forward and backward, no draws), summed as `gradient`
    /// sums it; returns its loss. The game's statistics (`runner.last`) are left as they were.
    public func teacherForcedGradient(inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>) -> Float {
        let perShard = batch / shards, rows = perShard * seqLen
        var counted = 0
        for i in 0..<(batch * seqLen) where targets[i] >= 0 { counted += 1 }
        cache.lossDenominator = counted
        defer { cache.lossDenominator = nil }
        shardedGradient(interrupted: false) { s in
            plainShard(forward: {
                model.forward(tokens: inputs + s * rows, targets: targets + s * rows, batch: perShard, seqLen: seqLen, cache: cache)
            }, counts: { targets[s * rows + $0] >= 0 })
        }
        return Float(totals[0] / Double(max(1, counted)))
    }

    /// The same for a model with continuous heads (the sine task): features (B, T, F) against
    /// targets (B, T, O), the loss the mean over every position of the global batch.
    public func gradient(features: UnsafePointer<Float>, targets: UnsafePointer<Float>, interrupted: Bool = false) -> Float {
        precondition(model.config.isContinuous && runner.figureCount == 1, "features are a continuous-head model's input")
        let perShard = batch / shards, rows = perShard * seqLen
        let f = model.config.inputFeatures ?? 0, o = model.config.outputs ?? 0
        cache.lossDenominator = batch * seqLen
        defer { cache.lossDenominator = nil }
        shardedGradient(interrupted: interrupted) { s in
            plainShard(forward: {
                model.forward(features: features + s * rows * f, targets: targets + s * rows * o, batch: perShard, seqLen: seqLen, cache: cache)
            }, counts: { _ in true })
        }
        return Float(totals[0] / Double(batch * seqLen))
    }

    /// One shard's plain forward and (when its loss is finite) backward, its summed row losses
    /// (over the rows `counts` keeps) into `runner.figures[0]`.
    private func plainShard(forward: () -> Float?, counts: (Int) -> Bool) {
        let loss = forward()
        var total = 0.0
        for r in 0..<(batch / shards * seqLen) where counts(r) { total += Double(cache.rowLoss[r]) }
        runner.figures[0] = total
        if let loss, loss.isFinite { model.backward(cache: cache) }
    }

    /// Runs `shard` (forward, the game's figures into `runner.figures`, backward) for each of this
    /// rank's shards into a zeroed gradient, and sums the gradients and (into `totals`) the figures
    /// in shard order.
    private func shardedGradient(interrupted: Bool, _ shard: (Int) -> Void) {
        let params = model.params, width = runner.figureCount
        let mine = sum.mine
        for (i, s) in mine.enumerated() {
            params.zeroGrads()
            if i == mine.count - 1 { model.gradientsComplete = lastShardHook }
            shard(s)
            model.gradientsComplete = nil
            (local + i * width).update(from: runner.figures, count: width)
            sum.deposit(i, params.grads)
        }
        for i in (mine.count * width)..<(slots - 1) { local[i] = 0 }
        local[slots - 1] = interrupted ? 1 : 0
        sum.finish(into: params.grads)
        group.allGather(doubles: local, count: slots, into: gathered)
        for k in 0..<width {
            var total = 0.0
            for s in 0..<shards { total += gathered[slotOfShard[s] + k] }
            totals[k] = total
        }
        interruptRequested = (0..<group.size).contains { gathered[$0 * slots + slots - 1] != 0 }
    }
}
