import Dispatch

/// How the S shards of every global batch are spread over the N ranks: rank r computes the
/// contiguous shards ⌊r·S/N⌋ ..< ⌊(r+1)·S/N⌋ (S = 4 over N = 3: 1, 1 and 2 shards). S ≥ N, so
/// every rank has at least one.
public struct ShardPlan: Equatable, Sendable {
    public let shards: Int
    public let ranks: Int

    public init(shards: Int, ranks: Int) {
        precondition(shards >= ranks && ranks >= 1, "\(shards) shards cannot be spread over \(ranks) ranks")
        self.shards = shards
        self.ranks = ranks
    }

    public func shards(of rank: Int) -> Range<Int> {
        (rank * shards / ranks)..<((rank + 1) * shards / ranks)
    }

    /// The rank that computes shard `s`.
    public func rank(of shard: Int) -> Int {
        (0..<ranks).first { shards(of: $0).contains(shard) }!
    }
}

/// The sum of the S shard gradients of a step, g₀ + g₁ + … + g_{S−1} added left to right in shard
/// order — ((g₀ + g₁) + g₂) + … — on every rank, whatever N: the same bits as one process that
/// computes the S shards one after another. Floating-point addition is not associative, so the
/// order is fixed here rather than left to MPI_Allreduce.
///
/// One process folds as it goes (one extra buffer, none for S = 1). Over N ranks the P elements
/// are cut into N owner chunks; each rank sends every owner its shards' slices of that owner's
/// chunk (one all-to-all; they arrive in rank order, which is shard order), the owner adds them in
/// shard order, and an all-gather gives every rank the whole sum. Each rank sends
/// (k_r + 1)·P·(N−1)/N floats a step for its k_r shards: 2P(N−1)/N at S = N, as a ring all-reduce.
/// Its buffers are allocated once.
public final class OrderedShardSum {
    public let count: Int
    public let plan: ShardPlan
    public let group: any ProcessGroup
    /// The shards this rank computes.
    public let mine: Range<Int>
    /// Seconds spent inside the last step's `deposit`s and `finish` (copies, exchange, sums).
    public private(set) var lastSeconds = 0.0
    /// Bytes this rank hands MPI in one step (0 for one process).
    public let bytesPerStep: Int

    private let accumulator: UnsafeMutablePointer<Float>?   // one process, S > 1: the running sum
    private let send: UnsafeMutablePointer<Float>?          // N > 1: (owner q, local shard i, chunk q)
    private let receive: UnsafeMutablePointer<Float>?       // N > 1: (shard s, own chunk)
    private let counts: UnsafeMutablePointer<Int32>         // 6 arrays of N: send counts/offsets, receive counts/offsets, chunk lengths/starts
    private var spent: UInt64 = 0

    public init(count: Int, plan: ShardPlan, group: any ProcessGroup) {
        precondition(plan.ranks == group.size, "a plan for \(plan.ranks) ranks in a group of \(group.size)")
        self.count = count
        self.plan = plan
        self.group = group
        let mine = plan.shards(of: group.rank)
        self.mine = mine
        let n = group.size, r = group.rank
        let table = UnsafeMutablePointer<Int32>.allocate(capacity: 6 * n)
        counts = table
        ownerChunks(count: count, ranks: n, lengths: table + 4 * n, starts: table + 5 * n)
        guard n > 1 else {
            accumulator = plan.shards > 1 ? .allocate(capacity: count) : nil
            send = nil
            receive = nil
            bytesPerStep = 0
            return
        }
        accumulator = nil
        let k = mine.count, own = Int(table[4 * n + r])
        var offset = 0
        for q in 0..<n {
            table[q] = Int32(k) * table[4 * n + q]                    // send count to q
            table[n + q] = Int32(offset)                              // send offset
            offset += Int(table[q])
        }
        send = .allocate(capacity: max(1, offset))
        var received = 0
        for q in 0..<n {
            table[2 * n + q] = Int32(plan.shards(of: q).count * own)  // receive count from q
            table[3 * n + q] = Int32(received)
            received += Int(table[2 * n + q])
        }
        receive = .allocate(capacity: max(1, received))
        bytesPerStep = 4 * ((offset - k * own) + own * (n - 1))
    }

    deinit {
        accumulator?.deallocate()
        send?.deallocate()
        receive?.deallocate()
        counts.deallocate()
    }

    /// Hands over the gradient of this rank's `i`-th shard (shard `mine.lowerBound + i`), computed
    /// into `gradient`. Call for i = 0, 1, … in order, then `finish(into:)` with the same buffer.
    /// One process: on the last shard the sum is written into `gradient` itself.
    public func deposit(_ i: Int, _ gradient: UnsafeMutablePointer<Float>) {
        precondition(i >= 0 && i < mine.count)
        let started = DispatchTime.now().uptimeNanoseconds
        if i == 0 { spent = 0 }
        defer { note(since: started) }
        let n = group.size, p = count
        if n == 1 {
            guard let acc = accumulator else { return }     // S = 1: the gradient is the sum
            if i == 0 {
                acc.update(from: gradient, count: p)
            } else if i == mine.count - 1 {
                for j in 0..<p { gradient[j] = acc[j] + gradient[j] }
            } else {
                for j in 0..<p { acc[j] = acc[j] + gradient[j] }
            }
            return
        }
        for q in 0..<n {
            let length = Int(counts[4 * n + q]), start = Int(counts[5 * n + q])
            (send! + Int(counts[n + q]) + i * length).update(from: gradient + start, count: length)
        }
    }

    private func note(since started: UInt64) {
        spent += DispatchTime.now().uptimeNanoseconds - started
        lastSeconds = Double(spent) / 1e9
    }

    /// Leaves the ordered sum of all S shard gradients in `gradient` on every rank.
    public func finish(into gradient: UnsafeMutablePointer<Float>) {
        let started = DispatchTime.now().uptimeNanoseconds
        defer { note(since: started) }
        let n = group.size
        guard n > 1, let send, let receive else { return }
        group.allToAll(send, sendCounts: counts, sendOffsets: counts + n, into: receive,
                       receiveCounts: counts + 2 * n, receiveOffsets: counts + 3 * n)
        let own = Int(counts[4 * n + group.rank]), out = gradient + Int(counts[5 * n + group.rank])
        out.update(from: receive, count: own)
        for s in 1..<plan.shards {
            let slice = receive + s * own
            for j in 0..<own { out[j] = out[j] + slice[j] }
        }
        group.allGatherInPlace(gradient, counts: counts + 4 * n, offsets: counts + 5 * n)
    }
}

/// The P elements cut into N owner chunks, rank q owning ⌊q·P/N⌋ ..< ⌊(q+1)·P/N⌋: their lengths
/// and starts (N each).
func ownerChunks(count: Int, ranks n: Int, lengths: UnsafeMutablePointer<Int32>, starts: UnsafeMutablePointer<Int32>) {
    for q in 0..<n {
        let lo = q * count / n, hi = (q + 1) * count / n
        lengths[q] = Int32(hi - lo)
        starts[q] = Int32(lo)
    }
}
