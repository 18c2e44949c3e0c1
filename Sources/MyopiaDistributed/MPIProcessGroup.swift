#if MPI
import CMPI
import Foundation

/// The MPI job this process belongs to (MPI_COMM_WORLD), joined by `Distributed.start()` when a
/// launcher started it. Only the main thread calls MPI (MPI_THREAD_FUNNELED); the default error
/// handler ends the whole job on a failed call, and a rank that dies is reported by the launcher
/// (Open MPI's mpirun names it and stops the others).
final class MPIProcessGroup: ProcessGroup {
    let rank: Int
    let size: Int
    private var finalized = false
    /// The communicator of the gathers started without waiting (a duplicate of the world's, so
    /// they and the world's all-to-alls form two streams, each ordered on its own).
    private let gathers: UnsafeMutableRawPointer
    /// MPI_Request storage, one slot per collective in flight; freed slots are reused, so a steady
    /// run of steps allocates none.
    private var requests: [UnsafeMutableRawPointer] = []
    private var free: [Int] = []

    init() throws {
        guard myopia_mpi_init() >= 0 else { throw DistributedError.initFailed }
        rank = Int(myopia_mpi_rank())
        size = Int(myopia_mpi_size())
        gathers = .allocate(byteCount: Int(myopia_mpi_comm_size_of()), alignment: 16)
        _ = myopia_mpi_comm_dup_world(gathers)
    }

    var startsWithoutWaiting: Bool { true }

    private func slot() -> (CollectiveRequest, UnsafeMutableRawPointer) {
        if let i = free.popLast() { return (CollectiveRequest(slot: i), requests[i]) }
        requests.append(.allocate(byteCount: Int(myopia_mpi_request_size()), alignment: 16))
        return (CollectiveRequest(slot: requests.count - 1), requests[requests.count - 1])
    }

    func startAllToAll(_ send: UnsafePointer<Float>, sendCounts: UnsafePointer<Int32>, sendOffsets: UnsafePointer<Int32>,
                       into receive: UnsafeMutablePointer<Float>, receiveCounts: UnsafePointer<Int32>,
                       receiveOffsets: UnsafePointer<Int32>) -> CollectiveRequest {
        let (request, storage) = slot()
        _ = myopia_mpi_ialltoallv_floats(send, sendCounts, sendOffsets, receive, receiveCounts, receiveOffsets, nil, storage)
        return request
    }

    func startAllGatherInPlace(_ buffer: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>,
                               offsets: UnsafePointer<Int32>) -> CollectiveRequest {
        let (request, storage) = slot()
        _ = myopia_mpi_iallgatherv_floats_in_place(buffer, counts, offsets, gathers, storage)
        return request
    }

    func test(_ request: CollectiveRequest) -> Bool {
        guard request != .done else { return true }
        guard myopia_mpi_test(requests[request.slot]) != 0 else { return false }
        free.append(request.slot)
        return true
    }

    func wait(_ request: CollectiveRequest) {
        guard request != .done else { return }
        _ = myopia_mpi_wait(requests[request.slot])
        free.append(request.slot)
    }

    var description: String { "MPI, \(size) rank\(size == 1 ? "" : "s")" }

    func allGather(_ send: UnsafeRawPointer, count: Int, into receive: UnsafeMutableRawPointer) {
        _ = myopia_mpi_allgather_bytes(send, Int32(count), receive)
    }

    func allGather(_ send: UnsafeRawPointer, count: Int, into receive: UnsafeMutableRawPointer,
                   counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>) {
        _ = myopia_mpi_allgatherv_bytes(send, Int32(count), receive, counts, offsets)
    }

    func allToAll(_ send: UnsafePointer<Float>, sendCounts: UnsafePointer<Int32>, sendOffsets: UnsafePointer<Int32>,
                  into receive: UnsafeMutablePointer<Float>, receiveCounts: UnsafePointer<Int32>, receiveOffsets: UnsafePointer<Int32>) {
        _ = myopia_mpi_alltoallv_floats(send, sendCounts, sendOffsets, receive, receiveCounts, receiveOffsets)
    }

    func allGatherInPlace(_ buffer: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>) {
        _ = myopia_mpi_allgatherv_floats_in_place(buffer, counts, offsets)
    }

    func abort(code: Int32) -> Never {
        myopia_mpi_abort(code)
        exit(code)
    }

    func finalize() {
        guard !finalized else { return }
        finalized = true
        _ = myopia_mpi_comm_free(gathers)
        _ = myopia_mpi_finalize()
    }
}
#endif
