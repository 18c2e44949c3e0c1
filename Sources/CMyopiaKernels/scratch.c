// Per-thread scratch memory, one growing buffer per use: GEMM's packing buffers (gemm.c), the
// block partials of MyopiaKernels' reductions and attention's strips of scores. A buffer grows
// when a call needs more (the warm-up step), so that a training step allocates nothing, and is
// freed when its thread exits.
#include "CMyopiaKernels.h"
#include "scratch.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct {
    void *memory[MYOPIA_SCRATCH_SLOTS];
    size_t bytes[MYOPIA_SCRATCH_SLOTS];
} scratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    scratch_t *s = (scratch_t *)p;
    for (int i = 0; i < MYOPIA_SCRATCH_SLOTS; i++) free(s->memory[i]);
    free(s);
}

static void scratch_make_key(void) { pthread_key_create(&scratch_key, scratch_free); }

void *myopia_thread_buffer(int slot, size_t bytes) {
    pthread_once(&scratch_once, scratch_make_key);
    scratch_t *s = (scratch_t *)pthread_getspecific(scratch_key);
    if (!s) {
        s = (scratch_t *)calloc(1, sizeof(scratch_t));
        if (!s) abort();
        pthread_setspecific(scratch_key, s);
    }
    size_t wanted = bytes > 0 ? bytes : 1;
    if (s->bytes[slot] < wanted) {
        free(s->memory[slot]);
        size_t rounded = (wanted + 63) & ~(size_t)63;
        s->memory[slot] = aligned_alloc(64, rounded);
        if (!s->memory[slot]) abort();
        s->bytes[slot] = rounded;
    }
    return s->memory[slot];
}

void *myopia_thread_scratch(long bytes) {
    return myopia_thread_buffer(MYOPIA_SCRATCH_REDUCTIONS, bytes > 0 ? (size_t)bytes : 1);
}

void *myopia_attention_scratch(long bytes) {
    return myopia_thread_buffer(MYOPIA_SCRATCH_ATTENTION, bytes > 0 ? (size_t)bytes : 1);
}
