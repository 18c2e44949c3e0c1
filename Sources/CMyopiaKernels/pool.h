// Private to CMyopiaKernels: work items that run at the same time and wait for one another
// (pool.c), for GEMM threads that share packed panels (gemm.c).
#ifndef MYOPIA_POOL_H
#define MYOPIA_POOL_H

#include "CMyopiaKernels.h"

/// Runs fn(ctx, t) for every t in [0, threads) on `threads` threads at the same time: the caller
/// runs t = 0 and pool workers the others, one item each, never taken over by another thread, so
/// the items may wait for one another (myopia_barrier_wait). Returns 1 when all are done, or 0 at
/// once, having run nothing, where that cannot be guaranteed: threads < 2, the pool busy (a call
/// made inside a parallel-for or gang, or while another thread's is running), or fewer than
/// threads − 1 workers could be started. A caller that gets 0 does the work some other way.
int myopia_parallel_gang(long threads, myopia_task_fn fn, void *ctx);

/// A barrier for the `threads` items of one gang. Zero-initialise it and set `threads`.
typedef struct {
    long threads;
    long arrived;                                /* items waiting at this round (atomic) */
    char pad[64 - 2 * sizeof(long)];
    long round;                                  /* rounds completed (atomic), own cache line */
} myopia_barrier;

/// Returns once all `threads` items have called it (each once per round). Spins, then yields the
/// core: an item whose thread was descheduled gets to run.
void myopia_barrier_wait(myopia_barrier *barrier);

#endif
