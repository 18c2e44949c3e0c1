import Foundation

/// The processes of one job: `size` copies of the same command, each with its `rank` (0 ..< size),
/// that compute shares of the same work and exchange results. One process on its own is a group of
/// one (`SingleProcess`); under `mpirun` it is the MPI job (`MPIProcessGroup`, built with the MPI
/// trait). The collectives are the few the data-parallel step and the sharded analyses need, and
/// every rank calls them in the same order. None of them sums floating-point numbers itself:
/// MPI_Allreduce picks its own order of additions (ring, recursive doubling, by size and N), so
/// the callers gather and add in an order of their own (OrderedShardSum).
public protocol ProcessGroup: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// "one process", or what the launcher started, e.g. "Open MPI, 3 ranks".
    var description: String { get }
    /// Every rank's `count` bytes at `send`, rank after rank, into `receive` (size · count bytes).
    func allGather(_ send: UnsafeRawPointer, count: Int, into receive: UnsafeMutableRawPointer)
    /// Rank r's `counts[r]` bytes land at `offsets[r]` of `receive` on every rank.
    func allGather(_ send: UnsafeRawPointer, count: Int, into receive: UnsafeMutableRawPointer,
                   counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>)
    /// MPI_Alltoallv of floats: `sendCounts[q]` floats at `sendOffsets[q]` of `send` go to rank q,
    /// and rank q's arrive at `receiveOffsets[q]` of `receive` (`receiveCounts[q]` of them).
    func allToAll(_ send: UnsafePointer<Float>, sendCounts: UnsafePointer<Int32>, sendOffsets: UnsafePointer<Int32>,
                  into receive: UnsafeMutablePointer<Float>, receiveCounts: UnsafePointer<Int32>, receiveOffsets: UnsafePointer<Int32>)
    /// In place: rank r's part of `buffer` (`counts[r]` floats at `offsets[r]`) reaches every rank.
    func allGatherInPlace(_ buffer: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>)
    /// Whether `startAllToAll` and `startAllGatherInPlace` return before the exchange is done (MPI);
    /// groups that run them as they are started (one process, threads) answer false.
    var startsWithoutWaiting: Bool { get }
    /// `allToAll` started without waiting for it: the buffers stay in use until `wait` returns or
    /// `test` answers true. Every rank starts the same non-blocking collectives in the same order.
    func startAllToAll(_ send: UnsafePointer<Float>, sendCounts: UnsafePointer<Int32>, sendOffsets: UnsafePointer<Int32>,
                       into receive: UnsafeMutablePointer<Float>, receiveCounts: UnsafePointer<Int32>,
                       receiveOffsets: UnsafePointer<Int32>) -> CollectiveRequest
    /// `allGatherInPlace` started without waiting for it, in a stream of its own: gathers may be
    /// started while all-to-alls are in flight (each stream in the same order on every rank).
    func startAllGatherInPlace(_ buffer: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>,
                               offsets: UnsafePointer<Int32>) -> CollectiveRequest
    /// Whether a started collective has completed (it then needs no `wait`); moves every collective
    /// in flight on (MPI progresses only inside its calls).
    func test(_ request: CollectiveRequest) -> Bool
    /// Returns once a started collective has completed.
    func wait(_ request: CollectiveRequest)
    /// Ends every process of the job with exit status `code` (after an error on any rank: the
    /// others would otherwise wait for it in their next collective).
    func abort(code: Int32) -> Never
}

/// A collective in flight: a slot of the group that started it (`done`: one that completed as it
/// started).
public struct CollectiveRequest: Equatable, Sendable {
    public let slot: Int
    public init(slot: Int) { self.slot = slot }
    public static let done = CollectiveRequest(slot: -1)
}

/// Groups without non-blocking collectives run them as they are started (one process; threads).
extension ProcessGroup {
    public var startsWithoutWaiting: Bool { false }

    public func startAllToAll(_ send: UnsafePointer<Float>, sendCounts: UnsafePointer<Int32>, sendOffsets: UnsafePointer<Int32>,
                              into receive: UnsafeMutablePointer<Float>, receiveCounts: UnsafePointer<Int32>,
                              receiveOffsets: UnsafePointer<Int32>) -> CollectiveRequest {
        allToAll(send, sendCounts: sendCounts, sendOffsets: sendOffsets, into: receive,
                 receiveCounts: receiveCounts, receiveOffsets: receiveOffsets)
        return .done
    }

    public func startAllGatherInPlace(_ buffer: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>,
                                      offsets: UnsafePointer<Int32>) -> CollectiveRequest {
        allGatherInPlace(buffer, counts: counts, offsets: offsets)
        return .done
    }

    public func test(_ request: CollectiveRequest) -> Bool { true }
    public func wait(_ request: CollectiveRequest) {}
}

extension ProcessGroup {
    public var isLeader: Bool { rank == 0 }

    /// Every rank's bytes, in rank order (the lengths may differ). Allocates: for start-up checks
    /// and small messages, never a training step's gradients.
    public func allGather(_ bytes: [UInt8]) -> [[UInt8]] {
        var length = Int64(bytes.count)
        var lengths = [Int64](repeating: 0, count: size)
        lengths.withUnsafeMutableBytes { allGather(&length, count: 8, into: $0.baseAddress!) }
        let counts = lengths.map { Int32($0) }
        var offsets = [Int32](repeating: 0, count: size)
        for r in 1..<max(1, size) { offsets[r] = offsets[r - 1] + counts[r - 1] }
        var all = [UInt8](repeating: 0, count: Int(lengths.reduce(0, +)))
        bytes.withUnsafeBytes { send in
            all.withUnsafeMutableBytes { receive in
                allGather(send.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: bytes.count,
                          into: receive.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!, counts: counts, offsets: offsets)
            }
        }
        return (0..<size).map { Array(all[Int(offsets[$0])..<Int(offsets[$0] + counts[$0])]) }
    }

    /// Every rank's `count` doubles at `send`, rank after rank, into `receive` (size · count).
    public func allGather(doubles send: UnsafePointer<Double>, count: Int, into receive: UnsafeMutablePointer<Double>) {
        allGather(UnsafeRawPointer(send), count: count * 8, into: UnsafeMutableRawPointer(receive))
    }
}

/// A group of one: every collective is a copy or nothing.
public final class SingleProcess: ProcessGroup {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var description: String { "one process" }

    public func allGather(_ send: UnsafeRawPointer, count: Int, into receive: UnsafeMutableRawPointer) {
        receive.copyMemory(from: send, byteCount: count)
    }

    public func allGather(_ send: UnsafeRawPointer, count: Int, into receive: UnsafeMutableRawPointer,
                          counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>) {
        (receive + Int(offsets[0])).copyMemory(from: send, byteCount: count)
    }

    public func allToAll(_ send: UnsafePointer<Float>, sendCounts: UnsafePointer<Int32>, sendOffsets: UnsafePointer<Int32>,
                         into receive: UnsafeMutablePointer<Float>, receiveCounts: UnsafePointer<Int32>,
                         receiveOffsets: UnsafePointer<Int32>) {
        (receive + Int(receiveOffsets[0])).update(from: send + Int(sendOffsets[0]), count: Int(sendCounts[0]))
    }

    public func allGatherInPlace(_ buffer: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>) {}

    public func abort(code: Int32) -> Never { exit(code) }
}
