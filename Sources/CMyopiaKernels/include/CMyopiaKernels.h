// CMyopiaKernels — the small C half of MyopiaKernels.
//
// It holds what Swift cannot express without unsafe compiler flags: AVX2+FMA and AVX-512 GEMM
// micro-kernels compiled with `__attribute__((target(...)))` and chosen at run time (by the Swift
// side, from the CPU's flags and a measurement), next to a portable kernel that builds on any
// machine (arm64 included). The Swift module `MyopiaKernels`
// owns the public API. The thread pool behind its parallel-for is here (pool.c), and so is the
// multi-threaded GEMM driver, whose threads share packed panels and wait for one another; everything
// else is single-threaded and thread-safe.
#ifndef CMYOPIAKERNELS_H
#define CMYOPIAKERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// Micro-kernel identifiers for `myopia_sgemm`.
enum {
    MYOPIA_KERNEL_PORTABLE = 0,
    MYOPIA_KERNEL_AVX2_FMA = 1,
    /// 12 x 32 tile on zmm registers (call only when myopia_cpu_has_avx512()).
    MYOPIA_KERNEL_AVX512 = 2,
    /// The AVX-512 kernel's tile source compiled for the default target (any CPU; tests).
    MYOPIA_KERNEL_AVX512_EMULATED = 3,
};

/// Register tile of the micro-kernels (rows x columns of C per call). Callers that split C between
/// threads cut at multiples of these so that every thread runs full tiles.
enum {
    MYOPIA_GEMM_MR = 6,
    MYOPIA_GEMM_NR = 16,
    /// Tile of MYOPIA_KERNEL_AVX512 and its emulation.
    MYOPIA_GEMM_AVX512_MR = 12,
    MYOPIA_GEMM_AVX512_NR = 32,
    /// Most rows of C `myopia_sgemm_small_m` takes.
    MYOPIA_GEMM_SMALL_M = 4,
    /// Rows of A up to which a product against a transposed B streams B once (myopia_sgemm_few_rows)
    /// instead of packing it.
    MYOPIA_GEMM_FEW_M = 64,
};

/// 1 when this CPU supports AVX2 and FMA (always 0 off x86-64).
int myopia_cpu_has_avx2_fma(void);
/// 1 when this CPU and OS run AVX-512F (zmm registers) besides AVX2 and FMA (always 0 off x86-64).
/// 1 when the CPU (and OS) support AVX-512F with AVX512VL (the few-rows and quantised kernels).
int myopia_cpu_has_avx512vl(void);
int myopia_cpu_has_avx512(void);

/// C[m x n] = (accumulate ? C : 0) + op(A) op(B), single-threaded, row-major.
/// transA: A is stored k x m (lda >= m); else m x k (lda >= k). transB: B stored n x k (ldb >= k);
/// else k x n (ldb >= n). k == 0 with accumulate == 0 zeroes C.
/// The summation order of every C element depends only on k (never on m, n or the pointers), so a
/// caller may split C into blocks, run them on any threads and get bitwise identical results. The
/// AVX2, AVX-512 and emulated AVX-512 kernels sum in the same order with the same roundings (K
/// blocks of the same size, each a sequential FMA chain) and agree bit for bit; the portable one
/// multiplies and adds separately.
/// Packing buffers are per thread (grown once, freed when the thread exits).
void myopia_sgemm(int kernel, long m, long n, long k,
                  const float *a, long lda, int transA,
                  const float *b, long ldb, int transB,
                  float *c, long ldc, int accumulate);

/// myopia_sgemm on `threads` threads at once (a gang of the pool, see myopia_parallel_run): each
/// computes one band of C, whole register tiles of rows or of columns, whichever is faster for the
/// shape; bands of rows share the packing of B's panels (gemm.c). Bitwise identical to
/// myopia_sgemm. Returns 0 at once, having done nothing, when the pool cannot run `threads` threads
/// at the same time (a call inside a parallel-for, another thread's parallel work running,
/// threads < 2) or k ≤ 0: the caller then computes C some other way. The shared panels live in a
/// buffer of the calling thread, grown once and reused.
int myopia_sgemm_parallel(int kernel, long threads, long m, long n, long k,
                          const float *a, long lda, int transA,
                          const float *b, long ldb, int transB,
                          float *c, long ldc, int accumulate);

/// Triangular structure `myopia_sgemm_tri` exploits (causal attention), with row i and column j of
/// C and p the summed index.
enum {
    MYOPIA_TRI_NONE = 0,
    /// Only C's lower triangle (j ≤ i) is wanted: MR x NR tiles wholly above the diagonal are left
    /// as they were (S = Q·Kᵀ, dP = dZ·Vᵀ).
    MYOPIA_TRI_OUTPUT_LOWER = 1,
    /// op(A) is lower triangular (zero for p > i): each row tile sums p < its last row + 1 only
    /// (Z = P·V, dQ = dS·K). The zeros must be there: tiles still read up to MR − 1 of them.
    MYOPIA_TRI_A_LOWER = 2,
    /// op(A) is upper triangular (zero for p < i): each row tile sums p ≥ its first row only
    /// (dV = Pᵀ·dZ, dK = dSᵀ·Q).
    MYOPIA_TRI_A_UPPER = 3,
};

/// myopia_sgemm with the work a triangular structure makes unnecessary skipped. Every element it
/// computes equals myopia_sgemm's (skipped terms are exact zeros of a sequential chain); with
/// MYOPIA_TRI_OUTPUT_LOWER the tiles above the diagonal are not written.
void myopia_sgemm_tri(int kernel, int tri, long m, long n, long k,
                      const float *a, long lda, int transA,
                      const float *b, long ldb, int transB,
                      float *c, long ldc, int accumulate);

/// The same product for 1 ≤ m ≤ MYOPIA_GEMM_SMALL_M rows of an untransposed A, streaming B
/// without packing (decoding: one new token). Bitwise identical to myopia_sgemm with the AVX2+FMA
/// and AVX-512 kernels. Returns 0, doing nothing, where it does not apply (m out of range, no AVX2+FMA).
int myopia_sgemm_small_m(long m, long n, long k, const float *a, long lda, const float *b, long ldb, int transB,
                         float *c, long ldc, int accumulate);

/// C (m x n) (+)= A (m x k) Bᵀ, B stored n x k, for any m ≥ 1 with the AVX2+FMA or AVX-512 kernel
/// (`kernel`): B is read once for all rows, a tile of it at a time transposed into an L1 buffer
/// (decoding a batch of samples, short prompts). Bitwise identical to myopia_sgemm and
/// myopia_sgemm_small_m. Returns 0, doing nothing, with another kernel or without AVX2+FMA.
int myopia_sgemm_few_rows(int kernel, long m, long n, long k, const float *a, long lda, const float *b, long ldb,
                          float *c, long ldc, int accumulate);

/// ggml block formats `myopia_qgemm` reads (32 values a block; the K-quants 256).
enum {
    MYOPIA_QUANT_Q8_0 = 0,
    MYOPIA_QUANT_Q4_0 = 1,
    MYOPIA_QUANT_Q4_1 = 2,
    MYOPIA_QUANT_Q5_0 = 3,
    MYOPIA_QUANT_Q5_1 = 4,
    MYOPIA_QUANT_Q2_K = 5,
    MYOPIA_QUANT_Q3_K = 6,
    MYOPIA_QUANT_Q4_K = 7,
    MYOPIA_QUANT_Q5_K = 8,
    MYOPIA_QUANT_Q6_K = 9,
};

/// Bytes of one block of `format` (0: not a format of myopia_qgemm).
long myopia_quant_block_bytes(int format);
/// Values of one block of `format`: 32, 256 for the K-quants (0: not a format of myopia_qgemm).
long myopia_quant_block_values(int format);

/// C[m x n] = (accumulate ? C : 0) + A[m x k] Wᵀ, single-threaded, where W is n rows of k values
/// (k a multiple of the block's values) stored as ggml blocks of `format`, row j at w + j·row_bytes.
/// Each value is dequantised exactly (as gguf-py does) right before use; fp32 products and sums.
/// simd != 0 uses AVX2+FMA where the CPU has it (four 8-lane FMA chains a row), simd == 2 the same
/// chains on AVX-512 registers (beyond 5 rows of A: tiles of 4 weight rows × 3 rows of A) where it
/// has that, else portable C (32 chains of multiply-then-add); AVX2 and AVX-512 give the same bits.
/// Either way each element of C is summed the same way for any m and n (qgemm.c).
void myopia_qgemm(int format, int simd, long m, long n, long k, const float *a, long lda, const void *w,
                  long row_bytes, float *c, long ldc, int accumulate);

/// Runs `iterations` rounds of 12 independent 8-wide FMA chains (AVX2+FMA when available,
/// portable C otherwise) and returns the number of floating-point operations performed.
double myopia_fma_peak_loop(long iterations);
/// The same loop on `width`-float vectors: 8 (ymm, AVX2+FMA) or 16 (zmm, AVX-512). Returns 0,
/// running nothing, where the CPU lacks that width.
double myopia_fma_peak_loop_width(int width, long iterations);
/// Reads `count` floats in order, as wide as the CPU reads, and returns their sum: the memory
/// read rate a decode step that streams its weights cannot beat.
float myopia_stream_read(const float *p, long count);

/// AVX2+FMA row operations (call only when myopia_cpu_has_avx2_fma(); off x86-64 they are scalar).
/// y[i] = exp(x[i]), y may equal x.
void myopia_exp_avx2(const float *x, float *y, long count);
/// In place x = softmax(scale * x); returns sum_j exp(scale*x_j - max) and writes max = max_j scale*x_j.
float myopia_softmax_avx2(float *x, long count, float scale, float *max_out);
/// In place x = exp(scale * x - max) * inverse: the row myopia_softmax_avx2 wrote, bitwise, from its
/// max and 1 / sum.
void myopia_softmax_recompute_avx2(float *x, long count, float scale, float max, float inverse);
/// out[i] = gelu_tanh(in[i]).
void myopia_gelu_forward_avx2(float *out, const float *in, long count);
/// dx[i] = dy[i] * gelu_tanh'(x[i]); dx may alias dy.
void myopia_gelu_backward_avx2(float *dx, const float *x, const float *dy, long count);
/// The same five with 16-lane AVX-512 vectors (call only where the CPU has avx512f): bitwise the
/// AVX2 ones' results.
void myopia_exp_avx512(const float *x, float *y, long count);
float myopia_softmax_avx512(float *x, long count, float scale, float *max_out);
void myopia_softmax_recompute_avx512(float *x, long count, float scale, float max, float inverse);
void myopia_gelu_forward_avx512(float *out, const float *in, long count);
void myopia_gelu_backward_avx512(float *dx, const float *x, const float *dy, long count);

/// One AdamW step's constants (see AdamW.swift) and the clipping factor applied to the gradient.
typedef struct {
    float grad_scale;             // 1: gradients unchanged; else g ← g·grad_scale, stored back
    float decay;                  // 1 − lr·weight_decay (1 without decay)
    float lerp_weight;            // 1 − β1
    float beta2;
    float one_minus_beta2;
    float step_size;              // lr / (1 − β1ᵗ)
    float bias_correction2_sqrt;  // √(1 − β2ᵗ)
    float eps;
} myopia_adamw_params;

/// One fused AdamW update of `count` elements (single-threaded; AVX2 where available). Both paths
/// round every operation as written in optim.c and give bitwise identical results. Returns 1 when
/// every updated weight and moment is finite, 0 otherwise.
int myopia_adamw(float *w, float *g, float *m, float *v, long count, const myopia_adamw_params *p);
/// The scalar path of myopia_adamw (tests compare the two).
int myopia_adamw_portable(float *w, float *g, float *m, float *v, long count, const myopia_adamw_params *p);

/// Sets *flag to 0 from any thread (work items reporting a failure into one shared flag).
static inline void myopia_flag_clear(int *flag) { __atomic_store_n(flag, 0, __ATOMIC_RELAXED); }

/// Work item callback of the thread pool.
typedef void (*myopia_task_fn)(void *ctx, long index);

/// Runs fn(ctx, i) for i in [0, count) on `threads` participants (the caller plus persistent pool
/// workers) and returns when all are done. dynamic != 0: items handed out by an atomic counter;
/// dynamic == 0: participant t runs items t, t + threads, ... A call made while the pool is busy
/// (nested, or from another thread at the same time) runs all items inline on the caller.
void myopia_parallel_run(long threads, long count, int dynamic, myopia_task_fn fn, void *ctx);

/// Scratch memory of the calling thread: at least `bytes` bytes, 64-byte aligned, grown when too
/// small (the only time it allocates) and freed when the thread exits. Valid until the same
/// thread's next call, so one user at a time per thread: a reduction holds it for its block
/// partials while its work items (which never call this) run.
void *myopia_thread_scratch(long bytes);

/// Like myopia_thread_scratch, a second buffer of the calling thread: the strips of scores one
/// attention work item holds while its GEMMs (which use their own buffers) run.
void *myopia_attention_scratch(long bytes);

/// Atomic fetch-and-add on a shared counter (used by the Swift parallel-for for dynamic scheduling).
static inline long myopia_atomic_fetch_add(long *counter, long value) {
    return __atomic_fetch_add(counter, value, __ATOMIC_RELAXED);
}

#ifdef __cplusplus
}
#endif

#endif
