// See include/CMyopiaAllocCounter.h. glibc supports replacing malloc ("Replacing malloc" in its
// manual): a definition in the executable takes precedence for every shared library, and glibc's
// own internal calls go through it too. Ours count and forward to the __libc_* entry points glibc
// exports for exactly this, so free, malloc_usable_size and friends keep working unchanged.
#include "CMyopiaAllocCounter.h"

#include <stddef.h>
#include <stdlib.h>

#if defined(__linux__) && defined(__GLIBC__)

#include <errno.h>
#include <malloc.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

static int counting = 0;            // read relaxed on every allocation
static unsigned long allocations = 0;

static inline void count_one(void) {
    if (__atomic_load_n(&counting, __ATOMIC_RELAXED))
        __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED);
}

int myopia_alloc_counter_available(void) { return 1; }

void myopia_alloc_counting(int on) { __atomic_store_n(&counting, on ? 1 : 0, __ATOMIC_SEQ_CST); }

unsigned long myopia_alloc_count(void) { return __atomic_load_n(&allocations, __ATOMIC_SEQ_CST); }

void *malloc(size_t size) {
    count_one();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    count_one();
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    count_one();
    return __libc_realloc(pointer, size);
}

void *reallocarray(void *pointer, size_t count, size_t size) {
    size_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(pointer, bytes);
}

void *memalign(size_t alignment, size_t size) {
    count_one();
    return __libc_memalign(alignment, size);
}

static int is_power_of_two(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

int posix_memalign(void **result, size_t alignment, size_t size) {
    // POSIX: EINVAL unless a power of two multiple of sizeof(void *); ENOMEM on failure; *result
    // untouched on error.
    if (!is_power_of_two(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
    count_one();
    int saved = errno;
    void *p = __libc_memalign(alignment, size);
    if (p == NULL) {
        errno = saved;
        return ENOMEM;
    }
    *result = p;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    // C11 (as glibc implements it): any power-of-two alignment; otherwise EINVAL and NULL.
    if (!is_power_of_two(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    count_one();
    return __libc_memalign(alignment, size);
}

void *valloc(size_t size) {
    count_one();
    return __libc_valloc(size);
}

void *pvalloc(size_t size) {
    count_one();
    return __libc_pvalloc(size);
}

#else  // no interposition: the counter is unavailable

int myopia_alloc_counter_available(void) { return 0; }
void myopia_alloc_counting(int on) { (void)on; }
unsigned long myopia_alloc_count(void) { return 0; }

#endif
