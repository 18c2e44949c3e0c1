/// The sum of n gradients g₀ + g₁ + … + g_{n−1}, one per batch of an analysis (`myopia
/// gradients`), added left to right in batch order — ((g₀ + g₁) + g₂) + … — on every rank,
/// whatever N, in O(P) floats however many batches there are.
///
/// Batch k is rank (k mod N)'s, in rounds of N batches: round j holds batches jN ..< (j+1)N. One
/// process folds each batch into a running sum as it comes. Over N ranks the P elements are cut
/// into N owner chunks; after each round, every rank sends each owner that owner's chunk of the
/// batch it computed (one all-to-all, straight from its gradient buffer), and the owner folds the
/// round's slices into its running sum in rank order, which is batch order, skipping the ranks
/// that had no batch in the last round. `finish` gathers the chunks on every rank. Each rank
/// holds its gradient, N chunks received (P floats) and its running chunk (P/N floats).
public final class OrderedBatchSum {
    public let count: Int
    public let batches: Int
    public let group: any ProcessGroup
    /// Rounds of N batches (the last one may be partial).
    public var rounds: Int { (batches + group.size - 1) / group.size }

    private let sum: UnsafeMutablePointer<Float>        // one process: all P; N ranks: this rank's chunk
    private let receive: UnsafeMutablePointer<Float>?   // N > 1: the round's N slices of this rank's chunk
    private let table: UnsafeMutablePointer<Int32>      // 4 arrays of N: chunk lengths, starts, receive counts, offsets

    public init(count: Int, batches: Int, group: any ProcessGroup) {
        precondition(batches >= 1, "no batches to add")
        self.count = count
        self.batches = batches
        self.group = group
        let n = group.size
        table = .allocate(capacity: 4 * n)
        ownerChunks(count: count, ranks: n, lengths: table, starts: table + n)
        let own = Int(table[group.rank])
        for q in 0..<n {
            table[2 * n + q] = Int32(own)
            table[3 * n + q] = Int32(q * own)
        }
        sum = .allocate(capacity: max(1, n == 1 ? count : own))
        receive = n > 1 ? .allocate(capacity: max(1, n * own)) : nil
    }

    deinit {
        sum.deallocate()
        receive?.deallocate()
        table.deallocate()
    }

    /// The batch `rank` computes in round `round`, if any.
    public func batch(of rank: Int, inRound round: Int) -> Int? {
        let k = round * group.size + rank
        return k < batches ? k : nil
    }

    /// Round `round` (0, 1, … in order, on every rank): `gradient` holds this rank's batch of the
    /// round (`batch(of: rank, inRound:)`); a rank without one passes any buffer of P floats.
    public func add(round: Int, _ gradient: UnsafeMutablePointer<Float>) {
        let n = group.size
        guard n > 1, let receive else {
            fold(gradient, batch: round, into: sum, count: count)
            return
        }
        // Send chunk q of the gradient to owner q; receive this rank's chunk of every rank's batch.
        group.allToAll(gradient, sendCounts: table, sendOffsets: table + n, into: receive,
                       receiveCounts: table + 2 * n, receiveOffsets: table + 3 * n)
        let own = Int(table[group.rank])
        for q in 0..<n {
            guard let k = batch(of: q, inRound: round) else { break }
            fold(receive + q * own, batch: k, into: sum, count: own)
        }
    }

    /// Leaves the ordered sum of all n gradients in `gradient` on every rank.
    public func finish(into gradient: UnsafeMutablePointer<Float>) {
        let n = group.size
        guard n > 1 else {
            gradient.update(from: sum, count: count)
            return
        }
        (gradient + Int(table[n + group.rank])).update(from: sum, count: Int(table[group.rank]))
        group.allGatherInPlace(gradient, counts: table, offsets: table + n)
    }

    private func fold(_ slice: UnsafePointer<Float>, batch k: Int, into running: UnsafeMutablePointer<Float>, count: Int) {
        if k == 0 {
            running.update(from: slice, count: count)
        } else {
            for j in 0..<count { running[j] = running[j] + slice[j] }
        }
    }
}
