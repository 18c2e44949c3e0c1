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

    init() throws {
        guard myopia_mpi_init() >= 0 else { throw DistributedError.initFailed }
        rank = Int(myopia_mpi_rank())
        size = Int(myopia_mpi_size())
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
        _ = myopia_mpi_finalize()
    }
}
#endif
