// Private to CMyopiaKernels: work items that run at the same time and wait for one another
// (pool.c), for GEMM threads that share packed panels (gemm.c).
#ifndef MYOPIA_POOL_H
#define MYOPIA_POOL_H

#include "CMyopiaKernels.h"

/// Runs fn(ctx, t) for every t in [0, threads) on `threads` threads at the same time: the caller
/// runs t = 0 and pool workers the others, one item each, never taken over by another thread, so
/// the items may wait for one another (myopia_wait_at_least). Returns 1 when all are done, or 0 at
/// once, having run nothing, where that cannot be guaranteed: threads < 2, the pool busy (a call
/// made inside a parallel-for or gang, or while another thread's is running), or fewer than
/// threads − 1 workers could be started. A caller that gets 0 does the work some other way.
int myopia_parallel_gang(long threads, myopia_task_fn fn, void *ctx);

/// Returns once *counter ≥ value, raised by another item of the gang (atomically, with release
/// order, so what it wrote before is visible here). Spins, then yields the core: the item waited
/// for may be waiting for it.
void myopia_wait_at_least(const long *counter, long value);

#endif
