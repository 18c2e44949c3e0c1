// Private to CMyopiaKernels: the per-thread buffers of scratch.c.
#ifndef MYOPIA_SCRATCH_H
#define MYOPIA_SCRATCH_H

#include <stddef.h>

enum {
    MYOPIA_SCRATCH_GEMM_A = 0,      // gemm.c's packed block of A
    MYOPIA_SCRATCH_GEMM_B = 1,      // gemm.c's packed panel of B
    MYOPIA_SCRATCH_REDUCTIONS = 2,  // myopia_thread_scratch
    MYOPIA_SCRATCH_ATTENTION = 3,   // myopia_attention_scratch
    MYOPIA_SCRATCH_GEMM_SHARED = 4, // gemm.c's panels shared by a team of threads (the caller's)
    MYOPIA_SCRATCH_QGEMM = 5,       // qgemm.c's dequantised weight row (AVX-512: a tile of 4)
    MYOPIA_SCRATCH_FEW_ROWS = 6,    // gemm.c's transposed rows of A (myopia_sgemm_few_rows)
    MYOPIA_SCRATCH_SLOTS = 7,
};

/// This thread's buffer `slot`, at least `bytes` long and 64-byte aligned; its contents are kept
/// only until the next call for a larger size.
void *myopia_thread_buffer(int slot, size_t bytes);

#endif
