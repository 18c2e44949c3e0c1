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
/// are cut into buckets of at most `bucketFloats`, from the end of the buffer (bucket 0 holds the
/// last elements: the first that backward completes), and each bucket into N owner chunks. Per
/// bucket, each rank sends every owner its shards' slices of that owner's chunk (an all-to-all;
/// they arrive in rank order, which is shard order), the owner adds them in shard order, and an
/// all-gather gives every rank the bucket's sum. Every element is added as without buckets, so
/// the bucket size changes no bit. Each rank sends (k_r + 1)·P·(N−1)/N floats a step for its k_r
/// shards: 2P(N−1)/N at S = N, as a ring all-reduce.
///
/// The exchange of a bucket starts as soon as the rank's last shard has its gradient there:
/// `lastShardComplete(from:)`, called as backward goes down the model, starts the buckets it
/// completes while the rest of backward runs, and each bucket's sum and gather follow once its
/// all-to-all is in (the all-to-alls and the gathers are two streams, each started in bucket order
/// on every rank). `finish` waits for what is left. Its buffers are allocated once; a rank with
/// one shard sends straight from the gradient buffer (no copy, no send buffer).
public final class OrderedShardSum {
    public let count: Int
    public let plan: ShardPlan
    public let group: any ProcessGroup
    /// The shards this rank computes.
    public let mine: Range<Int>
    /// Seconds spent inside the last step's `deposit`s, `lastShardComplete`s and `finish` (copies,
    /// exchange, sums, waits).
    public private(set) var lastSeconds = 0.0
    /// Bytes this rank hands MPI in one step (0 for one process).
    public let bytesPerStep: Int
    /// The buckets' element ranges, from the end of the buffer (none for one process).
    public let buckets: [Range<Int>]

    private let accumulator: UnsafeMutablePointer<Float>?   // one process, S > 1: the running sum
    private let send: UnsafeMutablePointer<Float>?          // N > 1, k > 1, per bucket: (owner q, local shard i, chunk q)
    private let receive: UnsafeMutablePointer<Float>?       // N > 1, per bucket: (shard s, own chunk)
    /// Per bucket, 6 arrays of N: send counts/offsets, receive counts/offsets (within the bucket's
    /// part of `send` and `receive`), chunk lengths/starts (within the bucket).
    private let tables: UnsafeMutablePointer<Int32>
    private let sendStart: [Int], receiveStart: [Int]
    /// Buckets whose all-to-all has started, and those summed with their gather started (prefixes).
    private var started = 0, summed = 0
    private var exchanges: [CollectiveRequest], gathers: [CollectiveRequest]
    private var spent: UInt64 = 0

    /// `bucketFloats`: the most elements a bucket holds (any size gives the same sums).
    public init(count: Int, plan: ShardPlan, group: any ProcessGroup, bucketFloats: Int = Distributed.exchange.bucketFloats) {
        precondition(plan.ranks == group.size, "a plan for \(plan.ranks) ranks in a group of \(group.size)")
        precondition(bucketFloats > 0, "a bucket holds at least one element")
        self.count = count
        self.plan = plan
        self.group = group
        let mine = plan.shards(of: group.rank)
        self.mine = mine
        let n = group.size, r = group.rank
        guard n > 1 else {
            accumulator = plan.shards > 1 ? .allocate(capacity: count) : nil
            send = nil
            receive = nil
            tables = .allocate(capacity: 1)
            sendStart = []
            receiveStart = []
            buckets = []
            exchanges = []
            gathers = []
            bytesPerStep = 0
            return
        }
        accumulator = nil
        let bucketCount = max(1, (count + bucketFloats - 1) / bucketFloats)
        buckets = (0..<bucketCount).map { b in max(0, count - (b + 1) * bucketFloats)..<(count - b * bucketFloats) }
        tables = .allocate(capacity: 6 * n * bucketCount)
        let k = mine.count
        var sendTotal = 0, receiveTotal = 0, ownTotal = 0
        var sendStart: [Int] = [], receiveStart: [Int] = []
        for (b, range) in buckets.enumerated() {
            let table = tables + 6 * n * b
            ownerChunks(count: range.count, ranks: n, lengths: table + 4 * n, starts: table + 5 * n)
            sendStart.append(sendTotal)
            receiveStart.append(receiveTotal)
            var offset = 0
            for q in 0..<n {
                table[q] = Int32(k) * table[4 * n + q]                    // send count to q
                table[n + q] = Int32(offset)                              // send offset
                offset += Int(table[q])
            }
            let own = Int(table[4 * n + r])
            var received = 0
            for q in 0..<n {
                table[2 * n + q] = Int32(plan.shards(of: q).count * own)  // receive count from q
                table[3 * n + q] = Int32(received)
                received += Int(table[2 * n + q])
            }
            sendTotal += offset
            receiveTotal += received
            ownTotal += own
        }
        self.sendStart = sendStart
        self.receiveStart = receiveStart
        // One shard: a bucket's (owner, chunk) layout is the gradient's own, which is sent as it is.
        send = k > 1 ? .allocate(capacity: max(1, sendTotal)) : nil
        receive = .allocate(capacity: max(1, receiveTotal))
        exchanges = Array(repeating: .done, count: bucketCount)
        gathers = Array(repeating: .done, count: bucketCount)
        bytesPerStep = 4 * ((sendTotal - k * ownTotal) + ownTotal * (n - 1))
    }

    deinit {
        accumulator?.deallocate()
        send?.deallocate()
        receive?.deallocate()
        tables.deallocate()
    }

    /// Hands over the gradient of this rank's `i`-th shard (shard `mine.lowerBound + i`), computed
    /// into `gradient`. Call for i = 0, 1, … in order, then `finish(into:)` with the same buffer.
    /// One process: on the last shard the sum is written into `gradient` itself. Over several
    /// ranks the last shard starts the exchange of every bucket `lastShardComplete` has not.
    public func deposit(_ i: Int, _ gradient: UnsafeMutablePointer<Float>) {
        precondition(i >= 0 && i < mine.count)
        let started = DispatchTime.now().uptimeNanoseconds
        defer { note(since: started) }
        let p = count
        if group.size == 1 {
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
        if i < mine.count - 1 {
            for b in buckets.indices { copy(bucket: b, shard: i, from: gradient) }
        } else {
            startBuckets(from: 0, gradient)
        }
    }

    /// During the backward of this rank's last shard: its gradient at `offset` and after is final
    /// (`Transformer.gradientsComplete`). Starts the exchange of every bucket that lies there, and
    /// moves those in flight on. Nothing for one process.
    public func lastShardComplete(from offset: Int, _ gradient: UnsafeMutablePointer<Float>) {
        guard group.size > 1 else { return }
        let started = DispatchTime.now().uptimeNanoseconds
        defer { note(since: started) }
        startBuckets(from: offset, gradient)
    }

    /// Copies and starts, in bucket order, every bucket not yet started that begins at or after
    /// `offset`; then sums and gathers each bucket whose all-to-all is in, in bucket order.
    private func startBuckets(from offset: Int, _ gradient: UnsafeMutablePointer<Float>) {
        let n = group.size
        while started < buckets.count && buckets[started].lowerBound >= offset {
            let b = started, table = tables + 6 * n * b
            let source: UnsafePointer<Float>
            if let send {
                copy(bucket: b, shard: mine.count - 1, from: gradient)
                source = UnsafePointer(send + sendStart[b])
            } else {
                source = UnsafePointer(gradient + buckets[b].lowerBound)
            }
            exchanges[b] = group.startAllToAll(source, sendCounts: table, sendOffsets: table + n,
                                               into: receive! + receiveStart[b], receiveCounts: table + 2 * n,
                                               receiveOffsets: table + 3 * n)
            started += 1
        }
        while summed < started && group.test(exchanges[summed]) { sumAndGather(summed, gradient) }
    }

    /// This rank's shards' slices of bucket `b` of shard `i`'s gradient into the send buffer.
    private func copy(bucket b: Int, shard i: Int, from gradient: UnsafeMutablePointer<Float>) {
        let n = group.size, table = tables + 6 * n * b, base = gradient + buckets[b].lowerBound
        for q in 0..<n {
            let length = Int(table[4 * n + q]), start = Int(table[5 * n + q])
            (send! + sendStart[b] + Int(table[n + q]) + i * length).update(from: base + start, count: length)
        }
    }

    /// The shards' slices of this rank's chunk of bucket `b`, arrived, added in shard order into
    /// `gradient`; then the gather of the bucket's chunks starts.
    private func sumAndGather(_ b: Int, _ gradient: UnsafeMutablePointer<Float>) {
        let n = group.size, table = tables + 6 * n * b, base = gradient + buckets[b].lowerBound
        let own = Int(table[4 * n + group.rank]), out = base + Int(table[5 * n + group.rank])
        let slices = receive! + receiveStart[b]
        out.update(from: slices, count: own)
        for s in 1..<plan.shards {
            let slice = slices + s * own
            for j in 0..<own { out[j] = out[j] + slice[j] }
        }
        gathers[b] = group.startAllGatherInPlace(base, counts: table + 4 * n, offsets: table + 5 * n)
        summed += 1
    }

    private func note(since started: UInt64) {
        spent += DispatchTime.now().uptimeNanoseconds - started
        lastSeconds = Double(spent) / 1e9
    }

    /// Leaves the ordered sum of all S shard gradients in `gradient` on every rank.
    public func finish(into gradient: UnsafeMutablePointer<Float>) {
        let started = DispatchTime.now().uptimeNanoseconds
        defer {
            note(since: started)
            spent = 0   // the next step counts afresh
        }
        guard group.size > 1 else { return }
        precondition(self.started == buckets.count, "finish before the last shard's deposit")
        while summed < buckets.count {
            group.wait(exchanges[summed])
            sumAndGather(summed, gradient)
        }
        for b in buckets.indices { group.wait(gathers[b]) }
        self.started = 0
        summed = 0
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
