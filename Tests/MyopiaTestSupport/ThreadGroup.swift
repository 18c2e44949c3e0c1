import Foundation
import Myopia

/// N ranks as N threads of this process, with the collectives MPI gives (each a barrier-separated
/// exchange through shared slots): enough to run the data-parallel step and the sharded analyses
/// as an MPI job would, without MPI.
public final class ThreadGroup: ProcessGroup, @unchecked Sendable {
    final class Shared: @unchecked Sendable {
        let size: Int
        let condition = NSCondition()
        var arrived = 0, generation = 0
        var raw: [UnsafeRawPointer?], counts: [UnsafePointer<Int32>?], offsets: [UnsafePointer<Int32>?]
        init(size: Int) {
            self.size = size
            raw = Array(repeating: nil, count: size)
            counts = Array(repeating: nil, count: size)
            offsets = Array(repeating: nil, count: size)
        }
        func barrier() {
            condition.lock()
            let g = generation
            arrived += 1
            if arrived == size {
                arrived = 0
                generation += 1
                condition.broadcast()
            } else {
                while generation == g { condition.wait() }
            }
            condition.unlock()
        }
    }

    public let rank: Int
    let shared: Shared
    public var size: Int { shared.size }
    public var description: String { "\(size) threads" }

    init(rank: Int, shared: Shared) {
        self.rank = rank
        self.shared = shared
    }

    /// Runs `body` on `ranks` threads, each with its rank's group; their results in rank order.
    public static func run<R>(ranks: Int, _ body: @escaping (ThreadGroup) -> R) -> [R] {
        let shared = Shared(size: ranks)
        let results = UnsafeMutablePointer<R?>.allocate(capacity: ranks)
        results.initialize(repeating: nil, count: ranks)
        defer { results.deinitialize(count: ranks); results.deallocate() }
        let done = DispatchGroup()
        for r in 0..<ranks {
            let thread = Thread { results[r] = body(ThreadGroup(rank: r, shared: shared)); done.leave() }
            thread.stackSize = 8 << 20
            done.enter()
            thread.start()
        }
        done.wait()
        return (0..<ranks).map { results[$0]! }
    }

    private func publish(_ pointer: UnsafeRawPointer, _ counts: UnsafePointer<Int32>? = nil, _ offsets: UnsafePointer<Int32>? = nil) {
        shared.raw[rank] = pointer
        shared.counts[rank] = counts
        shared.offsets[rank] = offsets
        shared.barrier()
    }

    public func allGather(_ send: UnsafeRawPointer, count: Int, into receive: UnsafeMutableRawPointer) {
        publish(send)
        for q in 0..<size { (receive + q * count).copyMemory(from: shared.raw[q]!, byteCount: count) }
        shared.barrier()
    }

    public func allGather(_ send: UnsafeRawPointer, count: Int, into receive: UnsafeMutableRawPointer,
                   counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>) {
        publish(send)
        for q in 0..<size { (receive + Int(offsets[q])).copyMemory(from: shared.raw[q]!, byteCount: Int(counts[q])) }
        shared.barrier()
    }

    public func allToAll(_ send: UnsafePointer<Float>, sendCounts: UnsafePointer<Int32>, sendOffsets: UnsafePointer<Int32>,
                  into receive: UnsafeMutablePointer<Float>, receiveCounts: UnsafePointer<Int32>, receiveOffsets: UnsafePointer<Int32>) {
        publish(UnsafeRawPointer(send), sendCounts, sendOffsets)
        for q in 0..<size {
            let theirs = shared.raw[q]!.assumingMemoryBound(to: Float.self)
            (receive + Int(receiveOffsets[q])).update(from: theirs + Int(shared.offsets[q]![rank]), count: Int(receiveCounts[q]))
        }
        shared.barrier()
    }

    public func allGatherInPlace(_ buffer: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>) {
        publish(UnsafeRawPointer(buffer))
        for q in 0..<size where q != rank {
            let theirs = shared.raw[q]!.assumingMemoryBound(to: Float.self)
            (buffer + Int(offsets[q])).update(from: theirs + Int(offsets[q]), count: Int(counts[q]))
        }
        shared.barrier()
    }

    public func abort(code: Int32) -> Never { fatalError("rank \(rank) aborted with \(code)") }
}
