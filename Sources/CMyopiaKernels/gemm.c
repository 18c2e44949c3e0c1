// Packed, register-tiled single-precision GEMM (BLIS-style loop nest).
//
//   for jc in N by NC:                      B block  KC x NC  (L3), packed once per (jc, pc)
//     for pc in K by KC:                    K blocks depend only on k -> fixed summation order
//       pack B(pc.., jc..) into NR-wide panels
//       for ic in M by MC:                  A block  MC x KC  (L2)
//         pack A(ic.., pc..) into MR-tall panels
//         for jr in NC by NR, ir in MC by MR: micro-kernel MR x NR += A panel * B panel (L1)
//
// All four transpose layouts are absorbed by the packing routines; the micro-kernels see one
// layout: A panel [kc][MR], B panel [kc][NR], zero-padded at the edges. Edge tiles are computed
// into a local MR x NR tile and only the valid part is stored, with exactly the same arithmetic as
// a full tile (one add of the block sum into C), so the result of every C element depends only on
// k, never on how the caller cut C into blocks or threads.
#include "CMyopiaKernels.h"
#include "pool.h"
#include "scratch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Two tiles: MR x NR = 6 x 16 (portable and AVX2: 12 ymm accumulators) and WIDE_MR x WIDE_NR =
// 12 x 32 (AVX-512: 24 zmm accumulators, two B vectors and a broadcast of the 32 registers). Every
// kernel sums each K block as one sequential FMA chain (the portable one as multiply-then-add), and
// all share KC_MAX, so the AVX2 and AVX-512 kernels give bitwise identical results: which of the two
// a machine picks never shows in the numbers.
#define MR MYOPIA_GEMM_MR
#define NR MYOPIA_GEMM_NR
#define KC_MAX 256
#define MC 144   /* multiple of MR; MC x KC floats = 144 KiB, sits in L2 */
#define NC 4096  /* multiple of NR; KC x NC floats = 4 MiB, sits in L3 */
#define WIDE_MR MYOPIA_GEMM_AVX512_MR
#define WIDE_NR MYOPIA_GEMM_AVX512_NR
#define WIDE_MC 192   /* multiple of WIDE_MR; 192 x KC floats = 192 KiB of L2 */
#define WIDE_NC 4096  /* multiple of WIDE_NR */
#define TILE_MAX (WIDE_MR * WIDE_NR)

typedef void (*micro_kernel_fn)(long kc, const float *a, const float *b, float *c, long ldc,
                                int overwrite);
typedef void (*pack_fn)(long rows, long cols, const float *src, long ld, int trans, float *out);

// A micro-kernel with the packing that feeds it and its blocking.
typedef struct {
    micro_kernel_fn kernel;
    pack_fn pack_a, pack_b;
    long mr, nr, mc, nc;
} gemm_kernel_t;

// MARK: - Packing (portable)

// A block: mc x kc of op(A) starting at `a` (already offset to (ic, pc)) -> ceil(mc/mr) panels of
// [kc][mr], rows past mc zero-filled.
static inline __attribute__((always_inline))
void pack_a_rows(const long mr, long mc, long kc, const float *a, long lda, int trans, float *out) {
    for (long i = 0; i < mc; i += mr) {
        long ib = mc - i < mr ? mc - i : mr;
        if (!trans) {
            for (long r = 0; r < mr; r++) {
                if (r < ib) {
                    const float *row = a + (i + r) * lda;
                    for (long p = 0; p < kc; p++) out[p * mr + r] = row[p];
                } else {
                    for (long p = 0; p < kc; p++) out[p * mr + r] = 0.0f;
                }
            }
        } else {
            for (long p = 0; p < kc; p++) {
                const float *src = a + p * lda + i;
                for (long r = 0; r < mr; r++) out[p * mr + r] = r < ib ? src[r] : 0.0f;
            }
        }
        out += kc * mr;
    }
}

// B block: kc x nc of op(B) starting at `b` (already offset to (pc, jc)) -> ceil(nc/nr) panels of
// [kc][nr], columns past nc zero-filled.
static inline __attribute__((always_inline))
void pack_b_columns(const long nr, long kc, long nc, const float *b, long ldb, int trans, float *out) {
    for (long j = 0; j < nc; j += nr) {
        long jb = nc - j < nr ? nc - j : nr;
        if (!trans) {
            for (long p = 0; p < kc; p++) {
                const float *src = b + p * ldb + j;
                float *dst = out + p * nr;
                if (jb == nr) {
                    memcpy(dst, src, (size_t)nr * sizeof(float));
                } else {
                    for (long c = 0; c < nr; c++) dst[c] = c < jb ? src[c] : 0.0f;
                }
            }
        } else {
            for (long c = 0; c < nr; c++) {
                if (c < jb) {
                    const float *col = b + (j + c) * ldb;
                    for (long p = 0; p < kc; p++) out[p * nr + c] = col[p];
                } else {
                    for (long p = 0; p < kc; p++) out[p * nr + c] = 0.0f;
                }
            }
        }
        out += kc * nr;
    }
}

static void pack_a_portable(long mc, long kc, const float *a, long lda, int trans, float *out) {
    pack_a_rows(MR, mc, kc, a, lda, trans, out);
}
static void pack_b_portable(long kc, long nc, const float *b, long ldb, int trans, float *out) {
    pack_b_columns(NR, kc, nc, b, ldb, trans, out);
}
static void pack_a_wide_portable(long mc, long kc, const float *a, long lda, int trans, float *out) {
    pack_a_rows(WIDE_MR, mc, kc, a, lda, trans, out);
}
static void pack_b_wide_portable(long kc, long nc, const float *b, long ldb, int trans, float *out) {
    pack_b_columns(WIDE_NR, kc, nc, b, ldb, trans, out);
}

// MARK: - Micro-kernels

static void kernel_portable(long kc, const float *a, const float *b, float *c, long ldc,
                            int overwrite) {
    float acc[MR][NR];
    for (long r = 0; r < MR; r++)
        for (long j = 0; j < NR; j++) acc[r][j] = 0.0f;
    for (long p = 0; p < kc; p++) {
        const float *bp = b + p * NR;
        for (long r = 0; r < MR; r++) {
            float ar = a[p * MR + r];
            for (long j = 0; j < NR; j++) acc[r][j] += ar * bp[j];
        }
    }
    for (long r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        if (overwrite) {
            for (long j = 0; j < NR; j++) cr[j] = acc[r][j];
        } else {
            for (long j = 0; j < NR; j++) cr[j] = cr[j] + acc[r][j];
        }
    }
}

#if defined(__x86_64__)

#define AVX2_FMA __attribute__((target("avx2,fma")))

AVX2_FMA
static void kernel_avx2_fma(long kc, const float *a, const float *b, float *c, long ldc,
                            int overwrite) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();

    for (long r = 0; r < MR; r++) {
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + NR - 1), _MM_HINT_T0);
    }

#define MYOPIA_STEP(p)                                                        \
    {                                                                         \
        const __m256 b0 = _mm256_load_ps(b + (p) * NR);                       \
        const __m256 b1 = _mm256_load_ps(b + (p) * NR + 8);                   \
        __m256 av;                                                            \
        av = _mm256_broadcast_ss(a + (p) * MR + 0);                           \
        c00 = _mm256_fmadd_ps(av, b0, c00);                                   \
        c01 = _mm256_fmadd_ps(av, b1, c01);                                   \
        av = _mm256_broadcast_ss(a + (p) * MR + 1);                           \
        c10 = _mm256_fmadd_ps(av, b0, c10);                                   \
        c11 = _mm256_fmadd_ps(av, b1, c11);                                   \
        av = _mm256_broadcast_ss(a + (p) * MR + 2);                           \
        c20 = _mm256_fmadd_ps(av, b0, c20);                                   \
        c21 = _mm256_fmadd_ps(av, b1, c21);                                   \
        av = _mm256_broadcast_ss(a + (p) * MR + 3);                           \
        c30 = _mm256_fmadd_ps(av, b0, c30);                                   \
        c31 = _mm256_fmadd_ps(av, b1, c31);                                   \
        av = _mm256_broadcast_ss(a + (p) * MR + 4);                           \
        c40 = _mm256_fmadd_ps(av, b0, c40);                                   \
        c41 = _mm256_fmadd_ps(av, b1, c41);                                   \
        av = _mm256_broadcast_ss(a + (p) * MR + 5);                           \
        c50 = _mm256_fmadd_ps(av, b0, c50);                                   \
        c51 = _mm256_fmadd_ps(av, b1, c51);                                   \
    }

    long p = 0;
    for (; p + 4 <= kc; p += 4) {
        MYOPIA_STEP(0)
        MYOPIA_STEP(1)
        MYOPIA_STEP(2)
        MYOPIA_STEP(3)
        a += 4 * MR;
        b += 4 * NR;
    }
    for (; p < kc; p++) {
        MYOPIA_STEP(0)
        a += MR;
        b += NR;
    }
#undef MYOPIA_STEP

#define MYOPIA_STORE(r, lo, hi)                                                          \
    {                                                                                    \
        float *cr = c + (r) * ldc;                                                       \
        if (overwrite) {                                                                 \
            _mm256_storeu_ps(cr, lo);                                                    \
            _mm256_storeu_ps(cr + 8, hi);                                                \
        } else {                                                                         \
            _mm256_storeu_ps(cr, _mm256_add_ps(_mm256_loadu_ps(cr), lo));                \
            _mm256_storeu_ps(cr + 8, _mm256_add_ps(_mm256_loadu_ps(cr + 8), hi));        \
        }                                                                                \
    }
    MYOPIA_STORE(0, c00, c01)
    MYOPIA_STORE(1, c10, c11)
    MYOPIA_STORE(2, c20, c21)
    MYOPIA_STORE(3, c30, c31)
    MYOPIA_STORE(4, c40, c41)
    MYOPIA_STORE(5, c50, c51)
#undef MYOPIA_STORE
}

// Packing with AVX2: 8 x 8 register transposes for the two gather layouts.

AVX2_FMA
static inline void transpose8x8(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Same result as pack_a_portable, and like it writes nothing outside its panels, so its buffers
// need no slack. The untransposed case stores 8 floats per k step (6 valid): the 2 extra land on
// the next step's slot, rewritten right after; a panel's last step stores only its 6.
AVX2_FMA
static void pack_a_avx2(long mc, long kc, const float *a, long lda, int trans, float *out) {
    for (long i = 0; i < mc; i += MR) {
        long ib = mc - i < MR ? mc - i : MR;
        if (!trans) {
            const float *rows[MR];
            for (long r = 0; r < MR; r++) rows[r] = a + (i + (r < ib ? r : 0)) * lda;
            long p = 0;
            for (; p + 8 <= kc; p += 8) {
                __m256 v[8];
                for (long r = 0; r < MR; r++)
                    v[r] = r < ib ? _mm256_loadu_ps(rows[r] + p) : _mm256_setzero_ps();
                v[6] = _mm256_setzero_ps();
                v[7] = _mm256_setzero_ps();
                transpose8x8(v);
                for (long q = 0; q < 7; q++) _mm256_storeu_ps(out + (p + q) * MR, v[q]);
                float *last = out + (p + 7) * MR;
                if (p + 8 < kc) {
                    _mm256_storeu_ps(last, v[7]);
                } else {
                    _mm_storeu_ps(last, _mm256_castps256_ps128(v[7]));
                    _mm_storel_pi((__m64 *)(last + 4), _mm256_extractf128_ps(v[7], 1));
                }
            }
            for (; p < kc; p++)
                for (long r = 0; r < MR; r++) out[p * MR + r] = r < ib ? rows[r][p] : 0.0f;
        } else if (ib == MR) {
            for (long p = 0; p < kc; p++) {
                const float *src = a + p * lda + i;
                _mm_storeu_ps(out + p * MR, _mm_loadu_ps(src));
                _mm_storel_pi((__m64 *)(out + p * MR + 4), _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)(src + 4)));
            }
        } else {
            for (long p = 0; p < kc; p++) {
                const float *src = a + p * lda + i;
                for (long r = 0; r < MR; r++) out[p * MR + r] = r < ib ? src[r] : 0.0f;
            }
        }
        out += kc * MR;
    }
}

AVX2_FMA
static void pack_b_avx2(long kc, long nc, const float *b, long ldb, int trans, float *out) {
    if (!trans) {
        // Rows of 16 contiguous floats: two unaligned loads and two aligned stores each (a memcpy
        // call per row cost ~8% of a small-M, long-K product, where B is packed for few rows of A).
        long j = 0;
        for (; j + NR <= nc; j += NR) {
            const float *src = b + j;
            for (long p = 0; p < kc; p++) {
                _mm256_store_ps(out + p * NR, _mm256_loadu_ps(src + p * ldb));
                _mm256_store_ps(out + p * NR + 8, _mm256_loadu_ps(src + p * ldb + 8));
            }
            out += kc * NR;
        }
        if (j < nc) pack_b_portable(kc, nc - j, b + j, ldb, trans, out);
        return;
    }
    for (long j = 0; j < nc; j += NR) {
        long jb = nc - j < NR ? nc - j : NR;
        const float *cols[NR];
        for (long c = 0; c < NR; c++) cols[c] = b + (j + (c < jb ? c : 0)) * ldb;
        long p = 0;
        for (; p + 8 <= kc; p += 8) {
            for (long half = 0; half < 2; half++) {
                __m256 v[8];
                for (long c = 0; c < 8; c++) {
                    long cc = half * 8 + c;
                    v[c] = cc < jb ? _mm256_loadu_ps(cols[cc] + p) : _mm256_setzero_ps();
                }
                transpose8x8(v);
                for (long q = 0; q < 8; q++) _mm256_store_ps(out + (p + q) * NR + half * 8, v[q]);
            }
        }
        for (; p < kc; p++)
            for (long c = 0; c < NR; c++) out[p * NR + c] = c < jb ? cols[c][p] : 0.0f;
        out += kc * NR;
    }
}

#endif /* __x86_64__ */

// MARK: - The 12 x 32 tile over 16-lane vectors (AVX-512, and the same source emulated)
//
// The tile is written once over clang's 16-lane vector type and compiled twice: under the AVX-512
// target each vector is one zmm register and each __builtin_elementwise_fma one vfmadd231ps
// (kernel_avx512); without it (kernel_wide_emulated, any CPU) the compiler lowers the same
// operations to narrower vectors or to fmaf calls. An FMA rounds once whatever the vector width, so
// the two builds sum every element in the same order with the same roundings and agree bit for bit
// (GEMMTests checks it where both run; elsewhere it checks the emulated build against a scalar
// model of the same sums).
typedef float wide_v __attribute__((ext_vector_type(16)));

// Vectors are moved with memcpy (unaligned loads and stores; C rows need not be aligned) and never
// passed to a function, whose vector ABI would differ between the two builds.
#define WIDE_LOAD(v, p) memcpy(&(v), (p), sizeof(wide_v))
#define WIDE_STORE(p, v) memcpy((p), &(v), sizeof(wide_v))

static inline __attribute__((always_inline))
void wide_tile(long kc, const float *a, const float *b, float *c, long ldc, int overwrite) {
    wide_v acc[WIDE_MR][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < WIDE_MR; r++) {
        acc[r][0] = acc[r][1] = (wide_v)0.0f;
        __builtin_prefetch(c + r * ldc);
        __builtin_prefetch(c + r * ldc + WIDE_NR - 1);
    }
    for (long p = 0; p < kc; p++) {
        wide_v b0, b1;
        WIDE_LOAD(b0, b + p * WIDE_NR);
        WIDE_LOAD(b1, b + p * WIDE_NR + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < WIDE_MR; r++) {
            const wide_v av = (wide_v)a[p * WIDE_MR + r];
            acc[r][0] = __builtin_elementwise_fma(av, b0, acc[r][0]);
            acc[r][1] = __builtin_elementwise_fma(av, b1, acc[r][1]);
        }
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < WIDE_MR; r++) {
        float *cr = c + r * ldc;
        if (!overwrite) {
            wide_v c0, c1;
            WIDE_LOAD(c0, cr);
            WIDE_LOAD(c1, cr + 16);
            acc[r][0] = c0 + acc[r][0];
            acc[r][1] = c1 + acc[r][1];
        }
        WIDE_STORE(cr, acc[r][0]);
        WIDE_STORE(cr + 16, acc[r][1]);
    }
}

// The emulated build: plain C for the compiler's default target.
static void kernel_wide_emulated(long kc, const float *a, const float *b, float *c, long ldc, int overwrite) {
    wide_tile(kc, a, b, c, ldc, overwrite);
}

#if defined(__x86_64__)

#define AVX512 __attribute__((target("avx512f,avx2,fma")))

AVX512
static void kernel_avx512(long kc, const float *a, const float *b, float *c, long ldc, int overwrite) {
    wide_tile(kc, a, b, c, ldc, overwrite);
}

// Packing for the 12 x 32 tile, the same panels as pack_a_wide_portable / pack_b_wide_portable.
// Rows of A are turned into [kc][12] by two 8 x 8 transposes per 8 k (rows 0–7, then rows 8–11 with
// four zero rows, of which 4 floats are stored); rows of a transposed B by four per 8 k.
AVX512
static void pack_a_wide_avx512(long mc, long kc, const float *a, long lda, int trans, float *out) {
    for (long i = 0; i < mc; i += WIDE_MR) {
        long ib = mc - i < WIDE_MR ? mc - i : WIDE_MR;
        if (!trans) {
            const float *rows[WIDE_MR];
            for (long r = 0; r < WIDE_MR; r++) rows[r] = a + (i + (r < ib ? r : 0)) * lda;
            long p = 0;
            for (; p + 8 <= kc; p += 8) {
                __m256 v[8];
                for (long r = 0; r < 8; r++) v[r] = r < ib ? _mm256_loadu_ps(rows[r] + p) : _mm256_setzero_ps();
                transpose8x8(v);
                for (long q = 0; q < 8; q++) _mm256_storeu_ps(out + (p + q) * WIDE_MR, v[q]);
                for (long r = 0; r < 8; r++)
                    v[r] = r < 4 && 8 + r < ib ? _mm256_loadu_ps(rows[8 + r] + p) : _mm256_setzero_ps();
                transpose8x8(v);
                for (long q = 0; q < 8; q++) _mm_storeu_ps(out + (p + q) * WIDE_MR + 8, _mm256_castps256_ps128(v[q]));
            }
            for (; p < kc; p++)
                for (long r = 0; r < WIDE_MR; r++) out[p * WIDE_MR + r] = r < ib ? rows[r][p] : 0.0f;
        } else if (ib == WIDE_MR) {
            for (long p = 0; p < kc; p++) {
                const float *src = a + p * lda + i;
                _mm256_storeu_ps(out + p * WIDE_MR, _mm256_loadu_ps(src));
                _mm_storeu_ps(out + p * WIDE_MR + 8, _mm_loadu_ps(src + 8));
            }
        } else {
            for (long p = 0; p < kc; p++) {
                const float *src = a + p * lda + i;
                for (long r = 0; r < WIDE_MR; r++) out[p * WIDE_MR + r] = r < ib ? src[r] : 0.0f;
            }
        }
        out += kc * WIDE_MR;
    }
}

AVX512
static void pack_b_wide_avx512(long kc, long nc, const float *b, long ldb, int trans, float *out) {
    if (!trans) {
        long j = 0;
        for (; j + WIDE_NR <= nc; j += WIDE_NR) {
            const float *src = b + j;
            for (long p = 0; p < kc; p++) {
                _mm512_store_ps(out + p * WIDE_NR, _mm512_loadu_ps(src + p * ldb));
                _mm512_store_ps(out + p * WIDE_NR + 16, _mm512_loadu_ps(src + p * ldb + 16));
            }
            out += kc * WIDE_NR;
        }
        if (j < nc) pack_b_wide_portable(kc, nc - j, b + j, ldb, trans, out);
        return;
    }
    for (long j = 0; j < nc; j += WIDE_NR) {
        long jb = nc - j < WIDE_NR ? nc - j : WIDE_NR;
        const float *cols[WIDE_NR];
        for (long c = 0; c < WIDE_NR; c++) cols[c] = b + (j + (c < jb ? c : 0)) * ldb;
        long p = 0;
        for (; p + 8 <= kc; p += 8) {
            for (long part = 0; part < WIDE_NR / 8; part++) {
                __m256 v[8];
                for (long c = 0; c < 8; c++) {
                    long cc = part * 8 + c;
                    v[c] = cc < jb ? _mm256_loadu_ps(cols[cc] + p) : _mm256_setzero_ps();
                }
                transpose8x8(v);
                for (long q = 0; q < 8; q++) _mm256_store_ps(out + (p + q) * WIDE_NR + part * 8, v[q]);
            }
        }
        for (; p < kc; p++)
            for (long c = 0; c < WIDE_NR; c++) out[p * WIDE_NR + c] = c < jb ? cols[c][p] : 0.0f;
        out += kc * WIDE_NR;
    }
}

#endif /* __x86_64__ */

int myopia_cpu_has_avx2_fma(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int myopia_cpu_has_avx512vl(void) {
#if defined(__x86_64__)
    return myopia_cpu_has_avx512() && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

int myopia_cpu_has_avx512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    // The CPU model of compiler-rt reports avx512f only where the OS saves the zmm state too.
    return myopia_cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

// MARK: - Driver

// The k range [k0, k1) of this K block [pc, pc + kc) that a row tile [r0, r1) needs under `tri`,
// or 0 when the tile is skipped altogether (MYOPIA_TRI_OUTPUT_LOWER, tile above the diagonal).
// Dropping the terms of a triangular A's zero half leaves every sum as it was: each is a sequential
// FMA chain from zero, and a zero term (0·b, b finite) adds nothing to it.
static inline int tile_k_range(int tri, long r0, long r1, long c0, long pc, long kc, long *k0, long *k1) {
    *k0 = 0;
    *k1 = kc;
    switch (tri) {
    case MYOPIA_TRI_OUTPUT_LOWER:
        return c0 <= r1 - 1;
    case MYOPIA_TRI_A_LOWER: {
        long end = r1 - pc;
        *k1 = end < 0 ? 0 : end > kc ? kc : end;
        return 1;
    }
    case MYOPIA_TRI_A_UPPER: {
        long start = r0 - pc;
        *k0 = start < 0 ? 0 : start > kc ? kc : start;
        return 1;
    }
    default:
        return 1;
    }
}

// Tile (ic + i, jc + j) of C for every MR x NR tile of an mc x nc block; `tri` as in myopia_sgemm_tri.
static void macro_kernel(const gemm_kernel_t *g, long mc, long nc, long kc, const float *apack,
                         const float *bpack, float *c, long ldc, int overwrite,
                         int tri, long ic, long jc, long pc) {
    const micro_kernel_fn kernel = g->kernel;
    float tile[TILE_MAX] __attribute__((aligned(64)));
    for (long j = 0; j < nc; j += g->nr) {
        long nb = nc - j < g->nr ? nc - j : g->nr;
        const float *bp = bpack + (j / g->nr) * kc * g->nr;
        for (long i = 0; i < mc; i += g->mr) {
            long mb = mc - i < g->mr ? mc - i : g->mr;
            const float *ap = apack + (i / g->mr) * kc * g->mr;
            float *cp = c + i * ldc + j;
            long k0 = 0, k1 = kc;
            if (tri && !tile_k_range(tri, ic + i, ic + i + mb, jc + j, pc, kc, &k0, &k1)) continue;
            if (k1 <= k0 && !overwrite) continue;  // nothing to add
            long kk = k1 > k0 ? k1 - k0 : 0;       // kk == 0 with overwrite stores zeros
            if (mb == g->mr && nb == g->nr) {
                kernel(kk, ap + k0 * g->mr, bp + k0 * g->nr, cp, ldc, overwrite);
            } else {
                kernel(kk, ap + k0 * g->mr, bp + k0 * g->nr, tile, g->nr, 1);
                for (long r = 0; r < mb; r++) {
                    float *cr = cp + r * ldc;
                    const float *tr = tile + r * g->nr;
                    if (overwrite) {
                        for (long q = 0; q < nb; q++) cr[q] = tr[q];
                    } else {
                        for (long q = 0; q < nb; q++) cr[q] = cr[q] + tr[q];
                    }
                }
            }
        }
    }
}

// The kernel, its tile and its blocking for an id of CMyopiaKernels.h (the portable one for an id
// this build or CPU lacks: the Swift side checks the CPU before it passes an id).
static const gemm_kernel_t *select_kernel(int kernel_id) {
    static const gemm_kernel_t portable = {kernel_portable, pack_a_portable, pack_b_portable, MR, NR, MC, NC};
    static const gemm_kernel_t wide_emulated = {kernel_wide_emulated, pack_a_wide_portable, pack_b_wide_portable,
                                                WIDE_MR, WIDE_NR, WIDE_MC, WIDE_NC};
#if defined(__x86_64__)
    static const gemm_kernel_t avx2 = {kernel_avx2_fma, pack_a_avx2, pack_b_avx2, MR, NR, MC, NC};
    static const gemm_kernel_t avx512 = {kernel_avx512, pack_a_wide_avx512, pack_b_wide_avx512,
                                         WIDE_MR, WIDE_NR, WIDE_MC, WIDE_NC};
    if (kernel_id == MYOPIA_KERNEL_AVX2_FMA && myopia_cpu_has_avx2_fma()) return &avx2;
    if (kernel_id == MYOPIA_KERNEL_AVX512 && myopia_cpu_has_avx512()) return &avx512;
#endif
    if (kernel_id == MYOPIA_KERNEL_AVX512_EMULATED) return &wide_emulated;
    return &portable;
}

// K blocks of (nearly) equal size; a function of k alone, so the order in which each C element
// sums its k products never depends on the caller's partition of C.
static long k_block(long k) {
    long kblocks = (k + KC_MAX - 1) / KC_MAX;
    return (k + kblocks - 1) / kblocks;
}

static void sgemm(int kernel_id, long m, long n, long k,
                  const float *a, long lda, int transA,
                  const float *b, long ldb, int transB,
                  float *c, long ldc, int accumulate, int tri) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate)
            for (long i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }

    const gemm_kernel_t *g = select_kernel(kernel_id);
    long kcb = k_block(k);

    long nc_max = n < g->nc ? n : g->nc;
    long mc_max = m < g->mc ? m : g->mc;
    // Per-thread packing buffers (scratch.c), grown once and reused.
    float *apack = (float *)myopia_thread_buffer(MYOPIA_SCRATCH_GEMM_A,
        (size_t)((mc_max + g->mr - 1) / g->mr * g->mr) * (size_t)kcb * sizeof(float));
    float *bpack = (float *)myopia_thread_buffer(MYOPIA_SCRATCH_GEMM_B,
        (size_t)((nc_max + g->nr - 1) / g->nr * g->nr) * (size_t)kcb * sizeof(float));

    for (long jc = 0; jc < n; jc += g->nc) {
        long nc = n - jc < g->nc ? n - jc : g->nc;
        for (long pc = 0; pc < k; pc += kcb) {
            long kc = k - pc < kcb ? k - pc : kcb;
            const float *bsrc = transB ? b + jc * ldb + pc : b + pc * ldb + jc;
            g->pack_b(kc, nc, bsrc, ldb, transB, bpack);
            int overwrite = (pc == 0) && !accumulate;
            for (long ic = 0; ic < m; ic += g->mc) {
                long mc = m - ic < g->mc ? m - ic : g->mc;
                // Triangular output: rows whose every tile lies above the diagonal are skipped.
                if (tri == MYOPIA_TRI_OUTPUT_LOWER && jc > ic + mc - 1) continue;
                const float *asrc = transA ? a + pc * lda + ic : a + ic * lda + pc;
                g->pack_a(mc, kc, asrc, lda, transA, apack);
                macro_kernel(g, mc, nc, kc, apack, bpack, c + ic * ldc + jc, ldc, overwrite, tri, ic, jc, pc);
            }
        }
    }
}

void myopia_sgemm(int kernel_id, long m, long n, long k,
                  const float *a, long lda, int transA,
                  const float *b, long ldb, int transB,
                  float *c, long ldc, int accumulate) {
    sgemm(kernel_id, m, n, k, a, lda, transA, b, ldb, transB, c, ldc, accumulate, MYOPIA_TRI_NONE);
}

void myopia_sgemm_tri(int kernel_id, int tri, long m, long n, long k,
                      const float *a, long lda, int transA,
                      const float *b, long ldb, int transB,
                      float *c, long ldc, int accumulate) {
    sgemm(kernel_id, m, n, k, a, lda, transA, b, ldb, transB, c, ldc, accumulate, tri);
}

// MARK: - Threads sharing packed panels
//
// myopia_sgemm_parallel gives each thread of a pool gang one band of C, whole register tiles of
// rows or of columns.
//
// Bands of rows all read every panel of B. Rather than each packing all of it, each packs a share
// of its micro-panels into one buffer the team shares, then computes its rows from the whole
// buffer, its own share first and then the others' as they are announced ready. Nobody waits at a
// barrier: a thread waits only for a share it needs that is not packed yet, or, before packing step
// s into the buffer that steps s − 2, s − 4, ... used, for the threads still computing step s − 2.
// Two buffers alternate, so a thread can pack one step ahead of the others.
//
// Bands of columns all read every block of A, but each packs its own, as myopia_sgemm does: an A
// block is read from L2 over and over, and shared blocks, half packed by another core and pulled
// from its cache, measured slower than packing them twice (2 threads: 1–3% at m = 256, more for
// m = 2048).
//
// Every C element is summed as myopia_sgemm sums it (same K blocks, same micro-kernel, one add of
// each block sum into C), so the result is the same whatever the number of threads.

// One counter per cache line: a thread's packed steps, or a shared buffer's finished uses.
typedef struct {
    long value;
    char pad[64 - sizeof(long)];
} __attribute__((aligned(64))) team_counter;

typedef struct {
    int kernel_id;
    const gemm_kernel_t *g;
    long m, n, k, kcb;
    const float *a;
    long lda;
    int transA;
    const float *b;
    long ldb;
    int transB;
    float *c;
    long ldc;
    int accumulate;
    long threads;
    long band;             /* rows (split_rows) or columns of C per thread, whole tiles */
    int split_rows;
    float *shared[2];      /* bands of rows: the shared B panels, step s uses shared[s & 1] */
    team_counter used[2];  /* per buffer: thread-steps computed from it */
    team_counter *packed;  /* per thread: steps whose share it has packed into the buffers */
} team_t;

// Share `t` of `count` micro-panels among the team's threads: [*p0, *p1).
static inline void team_share(const team_t *tm, long count, long t, long *p0, long *p1) {
    *p0 = count * t / tm->threads;
    *p1 = count * (t + 1) / tm->threads;
}

// Before a thread packs its share of step s into that step's buffer: every thread is done with the
// steps that used the buffer before, s − 2, s − 4, ... (s / 2 of them).
static inline void team_claim(team_t *tm, long s) {
    myopia_wait_at_least(&tm->used[s & 1].value, tm->threads * (s / 2));
}

// After thread t packed its share of step s, and after a thread computed its part of step s.
static inline void team_packed(team_t *tm, long t, long s) {
    __atomic_store_n(&tm->packed[t].value, s + 1, __ATOMIC_RELEASE);
}
static inline void team_computed(team_t *tm, long s) {
    __atomic_fetch_add(&tm->used[s & 1].value, 1, __ATOMIC_RELEASE);
}

// Before reading thread u's share of step s.
static inline void team_await(team_t *tm, long u, long s) {
    myopia_wait_at_least(&tm->packed[u].value, s + 1);
}

// Bands of rows: thread t owns rows [t·band, (t+1)·band) and packs a share of each B panel.
static void team_rows(team_t *tm, long t) {
    const long m = tm->m, n = tm->n, k = tm->k, kcb = tm->kcb, threads = tm->threads;
    const gemm_kernel_t *g = tm->g;
    long r0 = t * tm->band, r1 = r0 + tm->band < m ? r0 + tm->band : m;  // r1 <= r0: no rows, it only packs
    float *apack = NULL;
    if (r1 > r0) {
        long mc_max = r1 - r0 < g->mc ? r1 - r0 : g->mc;
        apack = (float *)myopia_thread_buffer(MYOPIA_SCRATCH_GEMM_A,
            (size_t)((mc_max + g->mr - 1) / g->mr * g->mr) * (size_t)kcb * sizeof(float));
    }
    long s = 0;
    for (long jc = 0; jc < n; jc += g->nc) {
        long nc = n - jc < g->nc ? n - jc : g->nc;
        long panels = (nc + g->nr - 1) / g->nr;
        for (long pc = 0; pc < k; pc += kcb, s++) {
            long kc = k - pc < kcb ? k - pc : kcb;
            float *bpack = tm->shared[s & 1];
            long p0, p1;
            team_share(tm, panels, t, &p0, &p1);
            team_claim(tm, s);
            if (p1 > p0) {
                long j0 = p0 * g->nr, j1 = p1 * g->nr < nc ? p1 * g->nr : nc, col = jc + j0;
                const float *bsrc = tm->transB ? tm->b + col * tm->ldb + pc : tm->b + pc * tm->ldb + col;
                g->pack_b(kc, j1 - j0, bsrc, tm->ldb, tm->transB, bpack + p0 * kc * g->nr);
            }
            team_packed(tm, t, s);
            int overwrite = (pc == 0) && !tm->accumulate;
            for (long ic = r0; ic < r1; ic += g->mc) {
                long mc = r1 - ic < g->mc ? r1 - ic : g->mc;
                const float *asrc = tm->transA ? tm->a + pc * tm->lda + ic : tm->a + ic * tm->lda + pc;
                g->pack_a(mc, kc, asrc, tm->lda, tm->transA, apack);
                for (long q = 0; q < threads; q++) {  // this thread's share first
                    long u = (t + q) % threads;
                    team_share(tm, panels, u, &p0, &p1);
                    if (p1 == p0) continue;
                    team_await(tm, u, s);
                    long j0 = p0 * g->nr, j1 = p1 * g->nr < nc ? p1 * g->nr : nc;
                    macro_kernel(g, mc, j1 - j0, kc, apack, bpack + p0 * kc * g->nr,
                                 tm->c + ic * tm->ldc + jc + j0, tm->ldc, overwrite, MYOPIA_TRI_NONE, ic, jc + j0, pc);
                }
            }
            team_computed(tm, s);
        }
    }
}

// Bands of columns: thread t computes columns [t·band, (t+1)·band) on its own.
static void team_columns(team_t *tm, long t) {
    long c0 = t * tm->band, c1 = c0 + tm->band < tm->n ? c0 + tm->band : tm->n;
    if (c1 <= c0) return;
    const float *b = tm->transB ? tm->b + c0 * tm->ldb : tm->b + c0;
    sgemm(tm->kernel_id, tm->m, c1 - c0, tm->k, tm->a, tm->lda, tm->transA, b, tm->ldb, tm->transB, tm->c + c0,
          tm->ldc, tm->accumulate, MYOPIA_TRI_NONE);
}

static void team_member(void *ctx, long t) {
    team_t *tm = (team_t *)ctx;
    if (tm->split_rows) team_rows(tm, t);
    else team_columns(tm, t);
}

// Whether bands of rows beat bands of columns, by the cycles of the slowest thread: its
// multiply-adds (16 a cycle) plus its packing (about one element a cycle): with rows, its own rows
// of A and its share of B; with columns, its own columns of B and all of A.
static int split_rows_faster(const gemm_kernel_t *g, long m, long n, long k, long threads) {
    double tiles_m = (double)((m + g->mr - 1) / g->mr), tiles_n = (double)((n + g->nr - 1) / g->nr), kd = (double)k;
    double rows = ceil(tiles_m / (double)threads) * g->mr, cols = ceil(tiles_n / (double)threads) * g->nr;
    double by_rows = rows * tiles_n * g->nr * kd / 16 + rows * kd * ceil((double)n / g->nc) + (double)n * kd / (double)threads;
    double by_cols = tiles_m * g->mr * cols * kd / 16 + cols * kd + tiles_m * g->mr * kd * ceil(cols / g->nc);
    return by_rows <= by_cols;
}

int myopia_sgemm_parallel(int kernel_id, long threads, long m, long n, long k,
                          const float *a, long lda, int transA,
                          const float *b, long ldb, int transB,
                          float *c, long ldc, int accumulate) {
    if (threads < 2 || m <= 0 || n <= 0 || k <= 0) return 0;
    team_t team = {0};
    team.kernel_id = kernel_id;
    const gemm_kernel_t *g = select_kernel(kernel_id);
    team.g = g;
    team.m = m;
    team.n = n;
    team.k = k;
    team.kcb = k_block(k);
    team.a = a;
    team.lda = lda;
    team.transA = transA;
    team.b = b;
    team.ldb = ldb;
    team.transB = transB;
    team.c = c;
    team.ldc = ldc;
    team.accumulate = accumulate;
    team.threads = threads;
    team.split_rows = split_rows_faster(g, m, n, k, threads);
    if (!team.split_rows) {
        team.band = ((n + g->nr - 1) / g->nr + threads - 1) / threads * g->nr;
        return myopia_parallel_gang(threads, team_member, &team);
    }
    team.band = ((m + g->mr - 1) / g->mr + threads - 1) / threads * g->mr;
    // The shared B panels live in the caller's buffer: its thread runs the team's first member and
    // nothing else until the team is done.
    long nc_max = n < g->nc ? n : g->nc;
    size_t panel = (size_t)((nc_max + g->nr - 1) / g->nr * g->nr) * (size_t)team.kcb;
    team.shared[0] = (float *)myopia_thread_buffer(MYOPIA_SCRATCH_GEMM_SHARED, 2 * panel * sizeof(float));
    team.shared[1] = team.shared[0] + panel;
    team_counter packed[threads];
    memset(packed, 0, sizeof(packed));
    team.packed = packed;
    return myopia_parallel_gang(threads, team_member, &team);
}

// MARK: - FMA peak

static double peak_portable(long iterations) {
    float acc[12][8];
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 8; j++) acc[i][j] = (float)(i + j) * 0.01f;
    const float x = 0.99999f, y = 1e-5f;
    for (long it = 0; it < iterations; it++)
        for (int i = 0; i < 12; i++)
            for (int j = 0; j < 8; j++) acc[i][j] = acc[i][j] * x + y;
    volatile float sink = 0;
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 8; j++) sink += acc[i][j];
    (void)sink;
    return (double)iterations * 12.0 * 8.0 * 2.0;
}

#if defined(__x86_64__)
AVX2_FMA
static double peak_avx2_fma(long iterations) {
    __m256 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i * 0.01f);
    const __m256 x = _mm256_set1_ps(0.99999f), y = _mm256_set1_ps(1e-5f);
    for (long it = 0; it < iterations; it++) {
        acc[0] = _mm256_fmadd_ps(acc[0], x, y);
        acc[1] = _mm256_fmadd_ps(acc[1], x, y);
        acc[2] = _mm256_fmadd_ps(acc[2], x, y);
        acc[3] = _mm256_fmadd_ps(acc[3], x, y);
        acc[4] = _mm256_fmadd_ps(acc[4], x, y);
        acc[5] = _mm256_fmadd_ps(acc[5], x, y);
        acc[6] = _mm256_fmadd_ps(acc[6], x, y);
        acc[7] = _mm256_fmadd_ps(acc[7], x, y);
        acc[8] = _mm256_fmadd_ps(acc[8], x, y);
        acc[9] = _mm256_fmadd_ps(acc[9], x, y);
        acc[10] = _mm256_fmadd_ps(acc[10], x, y);
        acc[11] = _mm256_fmadd_ps(acc[11], x, y);
    }
    __m256 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, acc[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    volatile float sink = out[0];
    (void)sink;
    return (double)iterations * 12.0 * 8.0 * 2.0;
}

// The same loop on zmm registers: 12 independent 16-wide chains, enough to fill two 512-bit FMA
// units of 4 cycles' latency (a CPU that splits 512-bit operations in two shows half the rate per
// instruction here, the same FLOP/s as with ymm).
AVX512
static double peak_avx512(long iterations) {
    __m512 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i * 0.01f);
    const __m512 x = _mm512_set1_ps(0.99999f), y = _mm512_set1_ps(1e-5f);
    for (long it = 0; it < iterations; it++) {
        acc[0] = _mm512_fmadd_ps(acc[0], x, y);
        acc[1] = _mm512_fmadd_ps(acc[1], x, y);
        acc[2] = _mm512_fmadd_ps(acc[2], x, y);
        acc[3] = _mm512_fmadd_ps(acc[3], x, y);
        acc[4] = _mm512_fmadd_ps(acc[4], x, y);
        acc[5] = _mm512_fmadd_ps(acc[5], x, y);
        acc[6] = _mm512_fmadd_ps(acc[6], x, y);
        acc[7] = _mm512_fmadd_ps(acc[7], x, y);
        acc[8] = _mm512_fmadd_ps(acc[8], x, y);
        acc[9] = _mm512_fmadd_ps(acc[9], x, y);
        acc[10] = _mm512_fmadd_ps(acc[10], x, y);
        acc[11] = _mm512_fmadd_ps(acc[11], x, y);
    }
    __m512 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)iterations * 12.0 * 16.0 * 2.0;
}
#endif

double myopia_fma_peak_loop(long iterations) {
#if defined(__x86_64__)
    if (myopia_cpu_has_avx2_fma()) return peak_avx2_fma(iterations);
#endif
    return peak_portable(iterations);
}

double myopia_fma_peak_loop_width(int width, long iterations) {
#if defined(__x86_64__)
    if (width == 8 && myopia_cpu_has_avx2_fma()) return peak_avx2_fma(iterations);
    if (width == 16 && myopia_cpu_has_avx512()) return peak_avx512(iterations);
#else
    (void)width;
    (void)iterations;
#endif
    return 0;
}

// MARK: - Memory read rate
//
// The ceiling of a decode step that streams every weight once: `count` floats read in order, as
// wide as the CPU reads, into 8 independent sums (the result only keeps the loads from being
// dropped).

#if defined(__x86_64__)
AVX512
static float stream_read_avx512(const float *p, long count) {
    __m512 s[8];
    for (int i = 0; i < 8; i++) s[i] = _mm512_setzero_ps();
    long i = 0;
    for (; i + 128 <= count; i += 128)
        for (int j = 0; j < 8; j++) s[j] = _mm512_add_ps(s[j], _mm512_loadu_ps(p + i + 16 * j));
    for (int j = 1; j < 8; j++) s[0] = _mm512_add_ps(s[0], s[j]);
    float total = _mm512_reduce_add_ps(s[0]);
    for (; i < count; i++) total += p[i];
    return total;
}

AVX2_FMA
static float stream_read_avx2(const float *p, long count) {
    __m256 s[8];
    for (int i = 0; i < 8; i++) s[i] = _mm256_setzero_ps();
    long i = 0;
    for (; i + 64 <= count; i += 64)
        for (int j = 0; j < 8; j++) s[j] = _mm256_add_ps(s[j], _mm256_loadu_ps(p + i + 8 * j));
    for (int j = 1; j < 8; j++) s[0] = _mm256_add_ps(s[0], s[j]);
    float lanes[8], total = 0;
    _mm256_storeu_ps(lanes, s[0]);
    for (int j = 0; j < 8; j++) total += lanes[j];
    for (; i < count; i++) total += p[i];
    return total;
}
#endif

float myopia_stream_read(const float *p, long count) {
#if defined(__x86_64__)
    if (myopia_cpu_has_avx512()) return stream_read_avx512(p, count);
    if (myopia_cpu_has_avx2_fma()) return stream_read_avx2(p, count);
#endif
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= count; i += 8)
        for (int j = 0; j < 8; j++) s[j] += p[i + j];
    for (; i < count; i++) s[0] += p[i];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

// MARK: - Few rows of C (decoding)
//
// With m ≤ MYOPIA_GEMM_SMALL_M rows (one new token, a short window) the packed path spends most of
// its time packing B, which it then reads once. Here B is streamed straight from memory. Each C
// element is summed exactly as the packed path sums it — K blocks of the same size, each a
// sequential FMA chain from zero over the block's k, then one add into C — so the two paths give
// bitwise identical results, and a caller may use either for any rows.

#ifndef SMALL_M_PREFETCH_HINT
#define SMALL_M_PREFETCH_HINT _MM_HINT_T1
#endif

#if defined(__x86_64__)
// C (M x n) (+)= A (M x kc) B, B stored kc x n (row stride ldb).
AVX2_FMA __attribute__((always_inline))
static inline void small_m_nn(const long M, long n, long kc, const float *a, long lda, const float *b, long ldb,
                              float *c, long ldc, int overwrite) {
    long j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 acc[MYOPIA_GEMM_SMALL_M][2];
        for (long i = 0; i < M; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        for (long p = 0; p < kc; p++) {
            const __m256 b0 = _mm256_loadu_ps(b + p * ldb + j), b1 = _mm256_loadu_ps(b + p * ldb + j + 8);
            for (long i = 0; i < M; i++) {
                const __m256 av = _mm256_broadcast_ss(a + i * lda + p);
                acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
            }
        }
        for (long i = 0; i < M; i++) {
            float *cr = c + i * ldc + j;
            if (overwrite) {
                _mm256_storeu_ps(cr, acc[i][0]);
                _mm256_storeu_ps(cr + 8, acc[i][1]);
            } else {
                _mm256_storeu_ps(cr, _mm256_add_ps(_mm256_loadu_ps(cr), acc[i][0]));
                _mm256_storeu_ps(cr + 8, _mm256_add_ps(_mm256_loadu_ps(cr + 8), acc[i][1]));
            }
        }
    }
    for (; j < n; j++) {
        for (long i = 0; i < M; i++) {
            float s = 0;
            for (long p = 0; p < kc; p++) s = __builtin_fmaf(a[i * lda + p], b[p * ldb + j], s);
            c[i * ldc + j] = overwrite ? s : c[i * ldc + j] + s;
        }
    }
}

// Columns [j0, n) of C against B stored n x k, one sequential chain per element and K block: the
// columns the vector paths leave over.
static void few_columns_scalar(long m, long j0, long n, long k, long kcb, const float *a, long lda, const float *b,
                               long ldb, float *c, long ldc, int accumulate) {
    for (long j = j0; j < n; j++) {
        for (long pc = 0; pc < k; pc += kcb) {
            long p1 = k - pc < kcb ? k : pc + kcb;
            int overwrite = pc == 0 && !accumulate;
            for (long i = 0; i < m; i++) {
                float s = 0;
                for (long p = pc; p < p1; p++) s = __builtin_fmaf(a[i * lda + p], b[j * ldb + p], s);
                c[i * ldc + j] = overwrite ? s : c[i * ldc + j] + s;
            }
        }
    }
}

// One K block of 8 rows of B (stored n x k, row stride ldb) against M rows of A: acc[i] lane q
// = Σ_p A[i, p] B[j + q, p] over p in [p0, p1), a sequential FMA chain from zero. Eight rows are
// read contiguously and turned into columns by an 8 x 8 register transpose.
AVX2_FMA __attribute__((always_inline))
static inline void small_m_nt_block(const long M, const float *a, long lda, const float *bj, long ldb, long p0, long p1,
                                    __m256 *acc, const float *next) {
    for (long i = 0; i < M; i++) acc[i] = _mm256_setzero_ps();
    long p = p0;
    for (; p + 8 <= p1; p += 8) {
        // The next 8 rows of B, a group ahead, as they will be read: a line of each every 16 k.
        if (next && (p & 8) == 0)
            for (long q = 0; q < 8; q++) _mm_prefetch((const char *)(next + q * ldb + p), SMALL_M_PREFETCH_HINT);
        __m256 r[8];
        for (long q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(bj + q * ldb + p);
        transpose8x8(r);
        for (long q = 0; q < 8; q++) {
            for (long i = 0; i < M; i++) acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i * lda + p + q), r[q], acc[i]);
        }
    }
    for (; p < p1; p++) {
        const __m256 col = _mm256_set_ps(bj[7 * ldb + p], bj[6 * ldb + p], bj[5 * ldb + p], bj[4 * ldb + p],
                                         bj[3 * ldb + p], bj[2 * ldb + p], bj[ldb + p], bj[p]);
        for (long i = 0; i < M; i++) acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i * lda + p), col, acc[i]);
    }
}

// C (M x n) (+)= A (M x k) Bᵀ, B stored n x k (row stride ldb), K blocks of kcb. Each group of 8 rows
// of B is read once, start to end (all its K blocks in turn), so memory sees 8 sequential streams.
AVX2_FMA __attribute__((always_inline))
static inline void small_m_nt(const long M, long n, long k, long kcb, const float *a, long lda, const float *b,
                              long ldb, float *c, long ldc, int accumulate) {
    long j = 0;
    for (; j + 8 <= n; j += 8) {
        const float *bj = b + j * ldb, *next = j + 16 <= n ? bj + 8 * ldb : NULL;
        for (long pc = 0; pc < k; pc += kcb) {
            long p1 = k - pc < kcb ? k : pc + kcb;
            __m256 acc[MYOPIA_GEMM_SMALL_M];
            small_m_nt_block(M, a, lda, bj, ldb, pc, p1, acc, next);
            int overwrite = pc == 0 && !accumulate;
            for (long i = 0; i < M; i++) {
                float *cr = c + i * ldc + j;
                _mm256_storeu_ps(cr, overwrite ? acc[i] : _mm256_add_ps(_mm256_loadu_ps(cr), acc[i]));
            }
        }
    }
    few_columns_scalar(M, j, n, k, kcb, a, lda, b, ldb, c, ldc, accumulate);
}

AVX2_FMA
static void small_m_nn_block(long m, long n, long kc, const float *a, long lda, const float *b, long ldb,
                             float *c, long ldc, int overwrite) {
#define MYOPIA_SMALL_CASE(M)                                                               \
    case M:                                                                                \
        small_m_nn(M, n, kc, a, lda, b, ldb, c, ldc, overwrite);                           \
        break;
    switch (m) {
        MYOPIA_SMALL_CASE(1)
        MYOPIA_SMALL_CASE(2)
        MYOPIA_SMALL_CASE(3)
        MYOPIA_SMALL_CASE(4)
    }
#undef MYOPIA_SMALL_CASE
}

AVX2_FMA
static void small_m_nt_all(long m, long n, long k, long kcb, const float *a, long lda, const float *b, long ldb,
                           float *c, long ldc, int accumulate) {
#define MYOPIA_SMALL_CASE(M)                                                               \
    case M:                                                                                \
        small_m_nt(M, n, k, kcb, a, lda, b, ldb, c, ldc, accumulate);                      \
        break;
    switch (m) {
        MYOPIA_SMALL_CASE(1)
        MYOPIA_SMALL_CASE(2)
        MYOPIA_SMALL_CASE(3)
        MYOPIA_SMALL_CASE(4)
    }
#undef MYOPIA_SMALL_CASE
}
#endif

// MARK: - Several rows of C against a transposed B (decoding a batch of samples)
//
// C (m x n) (+)= A (m x k) Bᵀ, B stored n x k, for m beyond MYOPIA_GEMM_SMALL_M. With AVX2 a tile of
// 8 rows of B is transposed once per K block into a small buffer, [kc][8], that stays in L1 while
// every group of rows of A runs over it (AVX-512: below). B is read from memory once for all
// m rows and never packed whole. Each C element is the sequential FMA chain from zero over each
// K block's k, added into C block after block, as in the packed and small-M paths: bitwise the
// same results, whatever m and however the rows are grouped.

// The AVX-512 kernels here mix zmm and ymm work on the same values: with AVX512VL every one of the
// 32 registers serves both (without it the ymm side confines them to 16, and accumulators spill).
#define AVX512VL __attribute__((target("avx512f,avx512vl,avx2,fma")))

#define FEW_GROUP8 12   /* rows of A per pass over an 8-wide tile: 12 accumulators + B + broadcast */

#if defined(__x86_64__)
// buf[(p - p0) * 8 + q] = B[j + q, p] for p in [p0, p1): 8 rows of B from bj, transposed 8 k at a time.
AVX2_FMA
static void few_transpose8(const float *bj, long ldb, long p0, long p1, float *buf) {
    long p = p0;
    for (; p + 8 <= p1; p += 8) {
        __m256 r[8];
        for (long q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(bj + q * ldb + p);
        transpose8x8(r);
        for (long q = 0; q < 8; q++) _mm256_storeu_ps(buf + (p - p0 + q) * 8, r[q]);
    }
    for (; p < p1; p++)
        for (long q = 0; q < 8; q++) buf[(p - p0) * 8 + q] = bj[q * ldb + p];
}

// G rows of A against an 8-wide tile buffer over kc k: C rows (G x 8) (+)= the chains.
AVX2_FMA __attribute__((always_inline))
static inline void few_rows8(const long G, long kc, const float *a, long lda, const float *buf, float *c, long ldc,
                             int overwrite) {
    __m256 acc[FEW_GROUP8];
#pragma clang loop unroll(full)
    for (long i = 0; i < G; i++) acc[i] = _mm256_setzero_ps();
    for (long p = 0; p < kc; p++) {
        const __m256 bv = _mm256_loadu_ps(buf + p * 8);
#pragma clang loop unroll(full)
        for (long i = 0; i < G; i++) acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i * lda + p), bv, acc[i]);
    }
    for (long i = 0; i < G; i++) {
        float *cr = c + i * ldc;
        _mm256_storeu_ps(cr, overwrite ? acc[i] : _mm256_add_ps(_mm256_loadu_ps(cr), acc[i]));
    }
}

AVX2_FMA
static void few_rows8_any(long g, long kc, const float *a, long lda, const float *buf, float *c, long ldc, int overwrite) {
#define MYOPIA_FEW_CASE(G)                                                                 \
    case G:                                                                                \
        few_rows8(G, kc, a, lda, buf, c, ldc, overwrite);                                  \
        break;
    switch (g) {
        MYOPIA_FEW_CASE(1) MYOPIA_FEW_CASE(2) MYOPIA_FEW_CASE(3) MYOPIA_FEW_CASE(4)
        MYOPIA_FEW_CASE(5) MYOPIA_FEW_CASE(6) MYOPIA_FEW_CASE(7) MYOPIA_FEW_CASE(8)
        MYOPIA_FEW_CASE(9) MYOPIA_FEW_CASE(10) MYOPIA_FEW_CASE(11) MYOPIA_FEW_CASE(12)
    }
#undef MYOPIA_FEW_CASE
}

// The 8-wide tiles of columns [j0, j1) (a multiple of 8 apart).
AVX2_FMA
static void few_tiles8(long m, long j0, long j1, long k, long kcb, const float *a, long lda, const float *b, long ldb,
                       float *c, long ldc, int accumulate, float *buf) {
    for (long j = j0; j < j1; j += 8) {
        for (long pc = 0; pc < k; pc += kcb) {
            long p1 = k - pc < kcb ? k : pc + kcb;
            few_transpose8(b + j * ldb, ldb, pc, p1, buf);
            int overwrite = pc == 0 && !accumulate;
            for (long i = 0; i < m; i += FEW_GROUP8) {
                long g = m - i < FEW_GROUP8 ? m - i : FEW_GROUP8;
                few_rows8_any(g, p1 - pc, a + i * lda + pc, lda, buf, c + i * ldc + j, ldc, overwrite);
            }
        }
    }
}

// With AVX-512 the roles turn: the rows of A, transposed once into at[G][k][16] (16 rows a lane
// group, zero lanes past m), are the vectors, and each weight row of B is read straight from
// memory, one broadcast a k step, sequentially: 16 weight rows at once, 16 accumulators holding
// C[rows of the group][j .. j+15] column by column, turned into rows of C by four 8 x 8 transposes.
// Lane i of accumulator jj is element (i, j + jj)'s sequential chain: the same sums as above.

// at[g][p][i] = A[16 g + i, p] for p in [0, k), 0 for 16 g + i ≥ m.
AVX512VL
static void few_transpose_a(long m, long k, const float *a, long lda, float *at) {
    const long groups = (m + 15) / 16;
    for (long g = 0; g < groups; g++) {
        float *out = at + g * k * 16;
        for (long h = 0; h < 16; h += 8) {
            const long i0 = g * 16 + h;
            long p = 0;
            if (i0 + 8 <= m) {
                for (; p + 8 <= k; p += 8) {
                    __m256 r[8];
                    for (long q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(a + (i0 + q) * lda + p);
                    transpose8x8(r);
                    for (long q = 0; q < 8; q++) _mm256_storeu_ps(out + (p + q) * 16 + h, r[q]);
                }
            }
            for (; p < k; p++)
                for (long q = 0; q < 8; q++) out[p * 16 + h + q] = i0 + q < m ? a[(i0 + q) * lda + p] : 0.0f;
        }
    }
}

// Rows [i0, i0 + rows) of C, columns [j, j + 16): (+)= the 16 accumulators (one a column, lane = row).
AVX512VL __attribute__((always_inline))
static inline void few_store_columns(const __m512 *acc, long rows, float *c, long ldc, int overwrite) {
    for (long h = 0; h < 16 && h < rows; h += 8) {
        for (long half = 0; half < 16; half += 8) {
            __m256 r[8];
            for (long q = 0; q < 8; q++) {
                __m512 x = acc[half + q];
                r[q] = h == 0 ? _mm512_castps512_ps256(x)
                              : _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
            }
            transpose8x8(r);  // r[q] = row h + q, columns half .. half + 7
            for (long q = 0; q < 8 && h + q < rows; q++) {
                float *cr = c + (h + q) * ldc + half;
                _mm256_storeu_ps(cr, overwrite ? r[q] : _mm256_add_ps(_mm256_loadu_ps(cr), r[q]));
            }
        }
    }
}

// Columns [j0, j1) of C (a multiple of 16 apart) for all m rows, from at (few_transpose_a). Each
// K block of the 16 weight rows is first copied into buf ([16][kc], long sequential reads while
// the next block's lines are prefetched), then broadcast from there to every lane group; rows sit
// KC_MAX apart, so every broadcast is one address with a constant offset.
AVX512VL
static void few_columns16(long m, long j0, long j1, long k, long kcb, const float *at, const float *b, long ldb,
                          float *c, long ldc, int accumulate, float *buf) {
    const long groups = (m + 15) / 16;
    for (long j = j0; j < j1; j += 16) {
        for (long pc = 0; pc < k; pc += kcb) {
            const long p1 = k - pc < kcb ? k : pc + kcb, kc = p1 - pc;
            for (long jj = 0; jj < 16; jj++) memcpy(buf + jj * KC_MAX, b + (j + jj) * ldb + pc, (size_t)kc * sizeof(float));
            // The next block, and the one after it (on its way into L2 a block earlier).
            const float *next = p1 < k ? b + j * ldb + p1 : j + 16 < j1 ? b + (j + 16) * ldb : NULL, *later = NULL;
            if (next) {
                const long nj = p1 < k ? j : j + 16, np = p1 < k ? p1 : 0;
                later = np + kcb < k ? b + nj * ldb + np + kcb : nj + 16 < j1 ? b + (nj + 16) * ldb : NULL;
            }
            int overwrite = pc == 0 && !accumulate;
            for (long g = 0; g < groups; g++) {
                const float *ag = at + g * k * 16;
                __m512 acc[16];
#pragma clang loop unroll(full)
                for (long jj = 0; jj < 16; jj++) acc[jj] = _mm512_setzero_ps();
                for (long p = 0; p < kc; p++) {
                    // One line of the next block a step covers its 16 rows x (kc / 16) lines.
                    if (next && g == 0) _mm_prefetch((const char *)(next + (p & 15) * ldb + (p >> 4) * 16), _MM_HINT_T0);
                    if (later && g == 0) _mm_prefetch((const char *)(later + (p & 15) * ldb + (p >> 4) * 16), _MM_HINT_T1);
                    const __m512 av = _mm512_loadu_ps(ag + (pc + p) * 16);
#pragma clang loop unroll(full)
                    for (long jj = 0; jj < 16; jj++) acc[jj] = _mm512_fmadd_ps(av, _mm512_set1_ps(buf[jj * KC_MAX + p]), acc[jj]);
                }
                long rows = m - g * 16 < 16 ? m - g * 16 : 16;
                few_store_columns(acc, rows, c + g * 16 * ldc + j, ldc, overwrite);
            }
        }
    }
}
#endif

// What the streaming entry points share: with n ≤ 0 nothing to do, with k ≤ 0 C zeroed (or kept,
// accumulating) — 1, done; else 0, and the packed path's K block size in *kcb.
__attribute__((unused)) static int stream_prologue(long m, long n, long k, float *c, long ldc, int accumulate, long *kcb) {
    if (n <= 0) return 1;
    if (k <= 0) {
        if (!accumulate)
            for (long i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return 1;
    }
    long kblocks = (k + KC_MAX - 1) / KC_MAX;
    *kcb = (k + kblocks - 1) / kblocks;
    return 0;
}

int myopia_sgemm_few_rows(int kernel_id, long m, long n, long k, const float *a, long lda, const float *b, long ldb,
                          float *c, long ldc, int accumulate) {
#if defined(__x86_64__)
    if (m < 1 || !myopia_cpu_has_avx2_fma() ||
        (kernel_id != MYOPIA_KERNEL_AVX2_FMA && kernel_id != MYOPIA_KERNEL_AVX512))
        return 0;
    long kcb;
    if (stream_prologue(m, n, k, c, ldc, accumulate, &kcb)) return 1;
    float buf[KC_MAX * 16] __attribute__((aligned(64)));
    long j = 0;
    if (kernel_id == MYOPIA_KERNEL_AVX512 && myopia_cpu_has_avx512vl()) {
        j = n / 16 * 16;
        if (j > 0) {
            float *at = (float *)myopia_thread_buffer(MYOPIA_SCRATCH_FEW_ROWS, (size_t)((m + 15) / 16 * 16 * k) * sizeof(float));
            few_transpose_a(m, k, a, lda, at);
            few_columns16(m, 0, j, k, kcb, at, b, ldb, c, ldc, accumulate, buf);
        }
    }
    long j8 = j + (n - j) / 8 * 8;
    few_tiles8(m, j, j8, k, kcb, a, lda, b, ldb, c, ldc, accumulate, buf);
    few_columns_scalar(m, j8, n, k, kcb, a, lda, b, ldb, c, ldc, accumulate);
    return 1;
#else
    (void)kernel_id; (void)m; (void)n; (void)k; (void)a; (void)lda; (void)b; (void)ldb; (void)c; (void)ldc;
    (void)accumulate;
    return 0;
#endif
}

int myopia_sgemm_small_m(long m, long n, long k, const float *a, long lda, const float *b, long ldb, int transB,
                         float *c, long ldc, int accumulate) {
#if defined(__x86_64__)
    if (m < 1 || m > MYOPIA_GEMM_SMALL_M || !myopia_cpu_has_avx2_fma()) return 0;
    long kcb;
    if (stream_prologue(m, n, k, c, ldc, accumulate, &kcb)) return 1;
    if (transB) {
        small_m_nt_all(m, n, k, kcb, a, lda, b, ldb, c, ldc, accumulate);
        return 1;
    }
    for (long pc = 0; pc < k; pc += kcb) {
        long kc = k - pc < kcb ? k - pc : kcb;
        small_m_nn_block(m, n, kc, a + pc, lda, b + pc * ldb, ldb, c, ldc, pc == 0 && !accumulate);
    }
    return 1;
#else
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)b; (void)ldb; (void)transB; (void)c; (void)ldc;
    (void)accumulate;
    return 0;
#endif
}
