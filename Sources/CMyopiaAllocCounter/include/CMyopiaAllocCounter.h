// CMyopiaAllocCounter — counts heap allocations in-process, for the "no allocation in the step"
// check (tests and `myopia bench`).
//
// On Linux with glibc it defines malloc, calloc, realloc, reallocarray, posix_memalign,
// aligned_alloc, memalign, valloc and pvalloc, forwarding to glibc's own exported implementations
// (__libc_malloc, ...; free stays glibc's), so every allocation of the process — Swift runtime,
// Foundation, C code, any thread — goes through them. Link it only into executables (the `myopia`
// CLI, test bundles): a library must not replace its users' malloc. Elsewhere it compiles to a
// stub whose counter is unavailable.
#ifndef CMYOPIAALLOCCOUNTER_H
#define CMYOPIAALLOCCOUNTER_H

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when this build interposes the allocator (Linux, glibc), else 0 (the count stays 0).
int myopia_alloc_counter_available(void);

/// Switches counting on (non-zero) or off (0, the default: then an allocation costs one load more).
void myopia_alloc_counting(int on);

/// Allocations (calls of the functions above) counted so far, on every thread, while counting was on.
unsigned long myopia_alloc_count(void);

#ifdef __cplusplus
}
#endif

#endif
