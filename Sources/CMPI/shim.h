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

// Non-blocking collectives, for the gradient exchange that runs while backward goes on. MPI_Request
// and MPI_Comm are handles of an implementation's own type (a pointer in Open MPI, an int in
// MPICH): Swift keeps them in storage of the sizes these report.
static inline int myopia_mpi_request_size(void) { return (int)sizeof(MPI_Request); }
static inline int myopia_mpi_comm_size_of(void) { return (int)sizeof(MPI_Comm); }

/// A second communicator over the same ranks (MPI_Comm_dup of MPI_COMM_WORLD) into `comm`: its
/// collectives are ordered apart from the world's, so two streams of them can be in flight.
static inline int myopia_mpi_comm_dup_world(void *comm) { return MPI_Comm_dup(MPI_COMM_WORLD, (MPI_Comm *)comm); }

static inline int myopia_mpi_comm_free(void *comm) { return MPI_Comm_free((MPI_Comm *)comm); }

/// MPI_Ialltoallv of floats on `comm` (NULL: MPI_COMM_WORLD); the request into `request`.
static inline int myopia_mpi_ialltoallv_floats(const float *send, const int *sendCounts, const int *sendDispls,
                                               float *recv, const int *recvCounts, const int *recvDispls,
                                               const void *comm, void *request) {
    return MPI_Ialltoallv(send, sendCounts, sendDispls, MPI_FLOAT, recv, recvCounts, recvDispls, MPI_FLOAT,
                          comm ? *(const MPI_Comm *)comm : MPI_COMM_WORLD, (MPI_Request *)request);
}

/// MPI_Iallgatherv in place on `comm` (NULL: MPI_COMM_WORLD); the request into `request`.
static inline int myopia_mpi_iallgatherv_floats_in_place(float *buffer, const int *counts, const int *displs,
                                                         const void *comm, void *request) {
    return MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer, counts, displs, MPI_FLOAT,
                           comm ? *(const MPI_Comm *)comm : MPI_COMM_WORLD, (MPI_Request *)request);
}

/// MPI_Test: 1 when the request has completed (it is then freed), 0 when not; progresses every
/// operation in flight.
static inline int myopia_mpi_test(void *request) {
    int flag = 0;
    MPI_Test((MPI_Request *)request, &flag, MPI_STATUS_IGNORE);
    return flag;
}

static inline int myopia_mpi_wait(void *request) { return MPI_Wait((MPI_Request *)request, MPI_STATUS_IGNORE); }

#endif
