// The few MPI calls Myopia makes, as plain functions: MPI_COMM_WORLD, MPI_FLOAT and the other
// handles are macros (pointers to globals in Open MPI) that Swift cannot import. Every call works
// on MPI_COMM_WORLD; the default error handler (MPI_ERRORS_ARE_FATAL) ends the job on a failure.
#ifndef MYOPIA_CMPI_SHIM_H
#define MYOPIA_CMPI_SHIM_H

#include <mpi.h>
#include <stdint.h>

/// MPI_Init_thread asking for MPI_THREAD_FUNNELED: only the main thread calls MPI (the kernels'
/// worker threads never do). Returns the level provided, or -1 when initialisation failed.
static inline int myopia_mpi_init(void) {
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return -1;
    return provided;
}

static inline int myopia_mpi_rank(void) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

static inline int myopia_mpi_size(void) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}

static inline int myopia_mpi_finalize(void) { return MPI_Finalize(); }

static inline void myopia_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

static inline int myopia_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

/// Every rank's `count` bytes, rank after rank, into `recv` (size · count bytes).
static inline int myopia_mpi_allgather_bytes(const void *send, int count, void *recv) {
    return MPI_Allgather(send, count, MPI_BYTE, recv, count, MPI_BYTE, MPI_COMM_WORLD);
}

/// Rank r's `counts[r]` bytes at `displs[r]` of `recv`.
static inline int myopia_mpi_allgatherv_bytes(const void *send, int count, void *recv, const int *counts, const int *displs) {
    return MPI_Allgatherv(send, count, MPI_BYTE, recv, counts, displs, MPI_BYTE, MPI_COMM_WORLD);
}

static inline int myopia_mpi_alltoallv_floats(const float *send, const int *sendCounts, const int *sendDispls,
                                              float *recv, const int *recvCounts, const int *recvDispls) {
    return MPI_Alltoallv(send, sendCounts, sendDispls, MPI_FLOAT, recv, recvCounts, recvDispls, MPI_FLOAT, MPI_COMM_WORLD);
}

/// In place: each rank's own part of `buffer` (counts[rank] floats at displs[rank]) reaches every rank.
static inline int myopia_mpi_allgatherv_floats_in_place(float *buffer, const int *counts, const int *displs) {
    return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer, counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
}

#endif
