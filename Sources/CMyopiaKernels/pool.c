// A small persistent thread pool behind MyopiaKernels' parallel-for.
//
// Why not DispatchQueue.concurrentPerform: on Linux, back-to-back calls often find the worker
// thread not yet back in the pool, and the caller then runs every iteration itself (measured: every
// other 5 ms GEMM ran at one-thread speed). Here the workers are persistent, spin briefly after each
// job (then sleep on a condition variable), and a static schedule binds work item t to participant t
// so the caller never takes a late worker's share.
//
// One job at a time: a call made while the pool is busy (a nested parallel-for, or a second thread
// calling at the same moment) runs its items inline on the calling thread. A gang (GEMM threads
// sharing packed panels) needs its items to run at the same time, since they wait for one another:
// it starts only when the pool is free and has a worker for every item, and is refused otherwise
// (myopia_parallel_gang returns 0), never run inline.
#include "CMyopiaKernels.h"
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_WORKERS 256
#define WORKER_SPIN_NS 200000L /* spin this long for the next job before sleeping */

typedef struct {
    myopia_task_fn fn;
    void *ctx;
    long count;
    long participants; /* caller + workers 1..participants-1 */
    int dynamic;
    long next;         /* dynamic schedule: next item (atomic) */
    long active;       /* workers still running this job (atomic) */
} job_t;

/* Each worker has its own mailbox: the caller posts a job only to the workers that take part, so a
   worker never looks at a job it is not part of, and the job can live on the caller's stack. */
typedef struct {
    long posted;       /* jobs posted so far (atomic) */
    job_t *job;
    char pad[64 - sizeof(long) - sizeof(job_t *)];
} mailbox_t;

static mailbox_t mailboxes[MAX_WORKERS + 1];
static pthread_mutex_t pool_busy = PTHREAD_MUTEX_INITIALIZER;  /* held for the duration of a job */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;  /* guards sleeping workers' waits */
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static long pool_workers = 0;                                  /* threads started (under pool_busy) */

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void run_share(job_t *job, long participant) {
    if (job->dynamic) {
        for (;;) {
            long i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
            if (i >= job->count) break;
            job->fn(job->ctx, i);
        }
    } else {
        for (long i = participant; i < job->count; i += job->participants) job->fn(job->ctx, i);
    }
}

static void *worker_main(void *arg) {
    long index = (long)arg;
    mailbox_t *box = &mailboxes[index];
    long seen = 0;
    for (;;) {
        // Wait for a new post: spin first, then sleep.
        long start = now_ns();
        long spins = 0;
        while (__atomic_load_n(&box->posted, __ATOMIC_ACQUIRE) == seen) {
            CPU_RELAX();
            if ((++spins & 255) == 0 && now_ns() - start > WORKER_SPIN_NS) {
                pthread_mutex_lock(&pool_lock);
                while (__atomic_load_n(&box->posted, __ATOMIC_ACQUIRE) == seen)
                    pthread_cond_wait(&pool_wake, &pool_lock);
                pthread_mutex_unlock(&pool_lock);
                break;
            }
        }
        seen++;
        job_t *job = box->job;
        run_share(job, index);
        __atomic_fetch_sub(&job->active, 1, __ATOMIC_RELEASE);  // job may vanish after this
    }
    return NULL;
}

static long ensure_workers(long wanted) {
    if (wanted > MAX_WORKERS) wanted = MAX_WORKERS;
    while (pool_workers < wanted) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&thread, &attr, worker_main, (void *)(pool_workers + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        pool_workers++;
    }
    return pool_workers;
}

// Runs `job` on its participants: the caller (participant 0) and workers 1..participants-1. The
// caller holds pool_busy, released here once every worker is done.
static void run_job(job_t *job) {
    long threads = job->participants;
    for (long w = 1; w < threads; w++) {
        mailboxes[w].job = job;
        __atomic_fetch_add(&mailboxes[w].posted, 1, __ATOMIC_RELEASE);
    }
    // Taking the lock orders the posts before any sleeping worker's re-check.
    if (threads > 1) {
        pthread_mutex_lock(&pool_lock);
        pthread_cond_broadcast(&pool_wake);
        pthread_mutex_unlock(&pool_lock);
    }

    run_share(job, 0);

    long spins = 0;
    while (__atomic_load_n(&job->active, __ATOMIC_ACQUIRE) > 0) {
        if (++spins < 4096) CPU_RELAX();
        else sched_yield();  // a worker may be waiting for this core (threads > cores)
    }
    pthread_mutex_unlock(&pool_busy);
}

void myopia_parallel_run(long threads, long count, int dynamic, myopia_task_fn fn, void *ctx) {
    if (count <= 0) return;
    if (threads > count) threads = count;
    if (threads <= 1 || pthread_mutex_trylock(&pool_busy) != 0) {
        for (long i = 0; i < count; i++) fn(ctx, i);
        return;
    }
    long workers = ensure_workers(threads - 1);
    if (threads > workers + 1) threads = workers + 1;
    job_t job = {fn, ctx, count, threads, dynamic, 0, threads - 1};
    run_job(&job);
}

// Every item runs on its own thread: the static schedule with count == participants binds item t
// to participant t, and each worker taking part was idle (the previous job ended before pool_busy
// was released), so it picks its item up as soon as it sees the post.
int myopia_parallel_gang(long threads, myopia_task_fn fn, void *ctx) {
    if (threads < 2 || pthread_mutex_trylock(&pool_busy) != 0) return 0;
    if (ensure_workers(threads - 1) < threads - 1) {
        pthread_mutex_unlock(&pool_busy);
        return 0;
    }
    job_t job = {fn, ctx, threads, threads, 0, 0, threads - 1};
    run_job(&job);
    return 1;
}

void myopia_wait_at_least(const long *counter, long value) {
    long spins = 0;
    while (__atomic_load_n(counter, __ATOMIC_ACQUIRE) < value) {
        if (++spins < 4096) CPU_RELAX();
        else sched_yield();  // the item we wait for may be waiting for this core
    }
}
