// Per-thread scratch memory for the reductions of MyopiaKernels (their block partials), so that a
// training step allocates nothing: each thread's buffer grows when a call needs more (the warm-up
// step) and is freed when the thread exits, like gemm.c's packing buffers.
#include "CMyopiaKernels.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct {
    void *memory;
    size_t bytes;
} scratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    scratch_t *s = (scratch_t *)p;
    free(s->memory);
    free(s);
}

static void scratch_make_key(void) { pthread_key_create(&scratch_key, scratch_free); }

void *myopia_thread_scratch(long bytes) {
    pthread_once(&scratch_once, scratch_make_key);
    scratch_t *s = (scratch_t *)pthread_getspecific(scratch_key);
    if (!s) {
        s = (scratch_t *)calloc(1, sizeof(scratch_t));
        if (!s) abort();
        pthread_setspecific(scratch_key, s);
    }
    size_t wanted = bytes > 0 ? (size_t)bytes : 1;
    if (s->bytes < wanted) {
        free(s->memory);
        size_t rounded = (wanted + 63) & ~(size_t)63;
        s->memory = aligned_alloc(64, rounded);
        if (!s->memory) abort();
        s->bytes = rounded;
    }
    return s->memory;
}
