// Products with weights kept quantised (ggml blocks), for decoding: a token streams the quantised
// bytes (Q8_0: 8.5 bits a weight, Q4_0: 4.5, Q4_1: 5, Q5_0: 5.5, Q5_1: 6, Q2_K: 2.625, Q3_K:
// 3.4375, Q4_K: 4.5, Q5_K: 5.5, Q6_K: 6.5625) instead of 32-bit floats. Q8_0, Q4_0 and Q4_1 blocks
// are dequantised into registers right before their products (AVX2); the other formats (and the
// portable path) dequantise one weight row at a time into a per-thread buffer of k floats that
// stays in L1/L2 while every row of A is multiplied with it.
//
// Dequantisation is exact per value and rounds as GGUFDequantizer (Swift) and gguf-py do: the f16
// scale widened exactly, d·q (exact: an 11-bit mantissa times a 4- or 8-bit integer), and for Q4_1
// one rounding of d·q + m, a multiply then an add (never fused: the pragma below keeps the compiler
// from contracting them); the K-quants' sub-block scale d·sc (and min dmin·mn) first, then its
// product with q, then the difference (GGUFQuantization.swift has the layouts). Only the sums differ from a product over the dequantised floats: each row
// of A against each weight row is summed in four 8-lane FMA chains (the portable path: 32 chains of
// multiply-then-add), whatever the number of rows, so a row's result never depends on m.
#include "CMyopiaKernels.h"
#include "scratch.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#pragma clang fp contract(off)

long myopia_quant_block_bytes(int format) {
    switch (format) {
    case MYOPIA_QUANT_Q8_0: return 34;
    case MYOPIA_QUANT_Q4_0: return 18;
    case MYOPIA_QUANT_Q4_1: return 20;
    case MYOPIA_QUANT_Q5_0: return 22;
    case MYOPIA_QUANT_Q5_1: return 24;
    case MYOPIA_QUANT_Q2_K: return 84;
    case MYOPIA_QUANT_Q3_K: return 110;
    case MYOPIA_QUANT_Q4_K: return 144;
    case MYOPIA_QUANT_Q5_K: return 176;
    case MYOPIA_QUANT_Q6_K: return 210;
    default: return 0;
    }
}

long myopia_quant_block_values(int format) {
    switch (format) {
    case MYOPIA_QUANT_Q8_0: case MYOPIA_QUANT_Q4_0: case MYOPIA_QUANT_Q4_1: case MYOPIA_QUANT_Q5_0: case MYOPIA_QUANT_Q5_1:
        return 32;
    case MYOPIA_QUANT_Q2_K: case MYOPIA_QUANT_Q3_K: case MYOPIA_QUANT_Q4_K: case MYOPIA_QUANT_Q5_K: case MYOPIA_QUANT_Q6_K:
        return 256;
    default: return 0;
    }
}

// IEEE binary16 -> binary32, exactly.
static inline float half_to_float(const uint8_t *p) {
    uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF, bits;
    if (exponent == 0) {
        float f = (float)mantissa * 0x1p-24f;  // subnormal (or zero): exact
        return sign ? -f : f;
    }
    if (exponent == 31) bits = sign | 0x7F800000u | (mantissa << 13);
    else bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// MARK: - Portable

static inline uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block k = 0..<8 of Q4_K / Q5_K.
static inline void scale_min_k4(const uint8_t *s, int k, int *scale, int *min) {
    if (k < 4) {
        *scale = s[k] & 63;
        *min = s[k + 4] & 63;
    } else {
        *scale = (s[k + 4] & 15) | (s[k - 4] >> 6) << 4;
        *min = (s[k + 4] >> 4) | (s[k] >> 6) << 4;
    }
}

// One block of `format` (32 or 256 values) into out, each value as gguf-py rounds it.
static void dequant_block(int format, const uint8_t *block, float *out) {
    switch (format) {
    case MYOPIA_QUANT_Q8_0: {
        const float d = half_to_float(block);
        for (int j = 0; j < 32; j++) out[j] = (float)(int8_t)block[2 + j] * d;
        break;
    }
    case MYOPIA_QUANT_Q4_0: {
        const float d = half_to_float(block);
        for (int j = 0; j < 16; j++) {
            out[j] = d * (float)((block[2 + j] & 15) - 8);
            out[j + 16] = d * (float)((block[2 + j] >> 4) - 8);
        }
        break;
    }
    case MYOPIA_QUANT_Q4_1: {
        const float d = half_to_float(block), m = half_to_float(block + 2);
        for (int j = 0; j < 16; j++) {
            out[j] = d * (float)(block[4 + j] & 15) + m;
            out[j + 16] = d * (float)(block[4 + j] >> 4) + m;
        }
        break;
    }
    case MYOPIA_QUANT_Q5_0: {
        const float d = half_to_float(block);
        const uint32_t qh = load_u32(block + 2);
        for (int j = 0; j < 16; j++) {
            out[j] = d * (float)((int)((block[6 + j] & 15) | ((qh >> j) & 1) << 4) - 16);
            out[j + 16] = d * (float)((int)((block[6 + j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16);
        }
        break;
    }
    case MYOPIA_QUANT_Q5_1: {
        const float d = half_to_float(block), m = half_to_float(block + 2);
        const uint32_t qh = load_u32(block + 4);
        for (int j = 0; j < 16; j++) {
            out[j] = d * (float)((block[8 + j] & 15) | ((qh >> j) & 1) << 4) + m;
            out[j + 16] = d * (float)((block[8 + j] >> 4) | ((qh >> (j + 16)) & 1) << 4) + m;
        }
        break;
    }
    case MYOPIA_QUANT_Q2_K: {
        const float d = half_to_float(block + 80), dmin = half_to_float(block + 82);
        for (int e = 0; e < 256; e++) {
            const int sc = block[e / 16], l = e % 32;
            const float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
            const int q = (block[16 + 32 * (e / 128) + l] >> (2 * (e % 128 / 32))) & 3;
            out[e] = dl * (float)q - ml;
        }
        break;
    }
    case MYOPIA_QUANT_Q3_K: {
        const float d = half_to_float(block + 108);
        for (int e = 0; e < 256; e++) {
            const int r = e / 16, l = e % 32, low = block[96 + r % 8], high = block[104 + r % 4];
            const int scale = (r < 8 ? low & 15 : low >> 4) | ((high >> (2 * (r / 4))) & 3) << 4;
            const float dl = d * (float)(scale - 32);
            const int q = ((block[32 + 32 * (e / 128) + l] >> (2 * (e / 32 % 4))) & 3) - (((block[l] >> (e / 32)) & 1) ? 0 : 4);
            out[e] = dl * (float)q;
        }
        break;
    }
    case MYOPIA_QUANT_Q4_K:
    case MYOPIA_QUANT_Q5_K: {
        const float d = half_to_float(block), dmin = half_to_float(block + 2);
        const int five = format == MYOPIA_QUANT_Q5_K;
        const uint8_t *qs = block + (five ? 48 : 16);
        for (int k = 0; k < 8; k++) {
            int scale, min;
            scale_min_k4(block + 4, k, &scale, &min);
            const float dk = d * (float)scale, mk = dmin * (float)min;
            for (int l = 0; l < 32; l++) {
                int q = (qs[32 * (k / 2) + l] >> (4 * (k % 2))) & 15;
                if (five) q |= ((block[16 + l] >> k) & 1) << 4;
                out[32 * k + l] = dk * (float)q - mk;
            }
        }
        break;
    }
    case MYOPIA_QUANT_Q6_K: {
        const float d = half_to_float(block + 208);
        for (int e = 0; e < 256; e++) {
            const int h = e / 128, t = e % 128 / 32, l = e % 32;
            const float ds = d * (float)(int8_t)block[192 + e / 16];
            const int low = (block[64 * h + 32 * (t % 2) + l] >> (4 * (t / 2))) & 15;
            const int high = (block[128 + 32 * h + l] >> (2 * t)) & 3;
            out[e] = ds * (float)((low | high << 4) - 32);
        }
        break;
    }
    }
}

// A weight row of k values (its blocks at wrow) into row.
static void dequant_row(int format, const uint8_t *wrow, long k, float *row) {
    const long values = myopia_quant_block_values(format), bytes = myopia_quant_block_bytes(format);
    for (long b = 0; b < k / values; b++) dequant_block(format, wrow + b * bytes, row + b * values);
}

static void qgemm_portable(int format, long m, long n, long k, const float *a, long lda, const uint8_t *w,
                           long row_bytes, float *c, long ldc, int accumulate, float *row) {
    for (long j = 0; j < n; j++) {
        dequant_row(format, w + j * row_bytes, k, row);
        for (long i = 0; i < m; i++) {
            const float *x = a + i * lda;
            float acc[32] = {0};
            for (long p = 0; p < k; p += 32)
                for (int t = 0; t < 32; t++) acc[t] = acc[t] + x[p + t] * row[p + t];
            for (int width = 16; width >= 1; width /= 2)
                for (int t = 0; t < width; t++) acc[t] = acc[t] + acc[t + width];
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[0] : acc[0];
        }
    }
}

// MARK: - AVX2 + FMA

#if defined(__x86_64__)
#define AVX2_FMA __attribute__((target("avx2,fma")))

AVX2_FMA __attribute__((always_inline))
static inline void dequant_avx2(const int format, const uint8_t *block, __m256 *v) {
    const __m256 d = _mm256_set1_ps(half_to_float(block));
    if (format == MYOPIA_QUANT_Q8_0) {
        for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(block + 2 + 8 * g)));
            v[g] = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
        }
        return;
    }
    const int offset = format == MYOPIA_QUANT_Q4_0 ? 2 : 4;
    const __m128i qs = _mm_loadu_si128((const __m128i *)(block + offset)), low4 = _mm_set1_epi8(15);
    const __m128i lo = _mm_and_si128(qs, low4), hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low4);
    __m256i q[4] = {_mm256_cvtepu8_epi32(lo), _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)),
                    _mm256_cvtepu8_epi32(hi), _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))};
    if (format == MYOPIA_QUANT_Q4_0) {
        const __m256i eight = _mm256_set1_epi32(8);
        for (int g = 0; g < 4; g++) v[g] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[g], eight)));
    } else {
        const __m256 mn = _mm256_set1_ps(half_to_float(block + 2));
        for (int g = 0; g < 4; g++) v[g] = _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q[g])), mn);
    }
}

// Sum of the 8 lanes in a fixed order.
AVX2_FMA __attribute__((always_inline))
static inline float lanes_sum(__m256 x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Rows i0 .. i0+R-1 of C's column j: four FMA chains per row, one per 8 values of each block.
// The first group of rows dequantises each block into registers (and, when more groups follow,
// leaves it in `row` for them); later groups read it back.
AVX2_FMA __attribute__((always_inline))
static inline void qgemm_rows(const int format, const int R, long k, const float *a, long lda, const uint8_t *wrow,
                              long block_bytes, float *row, int first, int keep, float *c, long ldc, int accumulate) {
    __m256 acc[2][4];
    for (int r = 0; r < R; r++)
        for (int g = 0; g < 4; g++) acc[r][g] = _mm256_setzero_ps();
    for (long b = 0, p = 0; p < k; b++, p += 32) {
        __m256 v[4];
        if (first) {
            dequant_avx2(format, wrow + b * block_bytes, v);
            if (keep)
                for (int g = 0; g < 4; g++) _mm256_store_ps(row + p + 8 * g, v[g]);
        } else {
            for (int g = 0; g < 4; g++) v[g] = _mm256_load_ps(row + p + 8 * g);
        }
        for (int r = 0; r < R; r++)
            for (int g = 0; g < 4; g++) acc[r][g] = _mm256_fmadd_ps(_mm256_loadu_ps(a + r * lda + p + 8 * g), v[g], acc[r][g]);
    }
    for (int r = 0; r < R; r++) {
        float s = lanes_sum(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3])));
        c[r * ldc] = accumulate ? c[r * ldc] + s : s;
    }
}

AVX2_FMA __attribute__((always_inline))
static inline void qgemm_avx2_format(const int format, long m, long n, long k, const float *a, long lda,
                                     const uint8_t *w, long row_bytes, float *c, long ldc, int accumulate, float *row) {
    const long block_bytes = myopia_quant_block_bytes(format);
    const int keep = m > 2;
    for (long j = 0; j < n; j++) {
        const uint8_t *wrow = w + j * row_bytes;
        long i = 0;
        for (; i + 2 <= m; i += 2)
            qgemm_rows(format, 2, k, a + i * lda, lda, wrow, block_bytes, row, i == 0, keep, c + i * ldc + j, ldc, accumulate);
        if (i < m)
            qgemm_rows(format, 1, k, a + i * lda, lda, wrow, block_bytes, row, i == 0, keep, c + i * ldc + j, ldc, accumulate);
    }
}

// The other formats: weight row j dequantised into `row` (dequant_row), then every row of A
// against it with the same four chains (qgemm_rows reading `row`).
AVX2_FMA
static void qgemm_avx2_buffered(int format, long m, long n, long k, const float *a, long lda, const uint8_t *w,
                                long row_bytes, float *c, long ldc, int accumulate, float *row) {
    for (long j = 0; j < n; j++) {
        dequant_row(format, w + j * row_bytes, k, row);
        long i = 0;
        for (; i + 2 <= m; i += 2)
            qgemm_rows(MYOPIA_QUANT_Q8_0, 2, k, a + i * lda, lda, NULL, 0, row, 0, 0, c + i * ldc + j, ldc, accumulate);
        if (i < m)
            qgemm_rows(MYOPIA_QUANT_Q8_0, 1, k, a + i * lda, lda, NULL, 0, row, 0, 0, c + i * ldc + j, ldc, accumulate);
    }
}

AVX2_FMA
static void qgemm_avx2(int format, long m, long n, long k, const float *a, long lda, const uint8_t *w,
                       long row_bytes, float *c, long ldc, int accumulate, float *row) {
    switch (format) {
    case MYOPIA_QUANT_Q8_0: qgemm_avx2_format(MYOPIA_QUANT_Q8_0, m, n, k, a, lda, w, row_bytes, c, ldc, accumulate, row); break;
    case MYOPIA_QUANT_Q4_0: qgemm_avx2_format(MYOPIA_QUANT_Q4_0, m, n, k, a, lda, w, row_bytes, c, ldc, accumulate, row); break;
    case MYOPIA_QUANT_Q4_1: qgemm_avx2_format(MYOPIA_QUANT_Q4_1, m, n, k, a, lda, w, row_bytes, c, ldc, accumulate, row); break;
    default: qgemm_avx2_buffered(format, m, n, k, a, lda, w, row_bytes, c, ldc, accumulate, row); break;
    }
}

// MARK: - AVX-512
//
// The same sums as the AVX2 path, bit for bit: a zmm holds two of its 8-lane chains side by side
// (values 0–15 of a block, then 16–31), every lane does the same FMA on the same values, and the
// chains are added in the same order at the end. With 32 registers, up to 8 rows of A run against
// a weight row at once, so a dequantised block serves 8 rows from registers.
#define AVX512Q __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define QROWS512 8

AVX512Q __attribute__((always_inline))
static inline void dequant_avx512(const int format, const uint8_t *block, __m512 *v) {
    const __m512 d = _mm512_set1_ps(half_to_float(block));
    if (format == MYOPIA_QUANT_Q8_0) {
        for (int g = 0; g < 2; g++) {
            __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(block + 2 + 16 * g)));
            v[g] = _mm512_mul_ps(_mm512_cvtepi32_ps(q), d);
        }
        return;
    }
    const int offset = format == MYOPIA_QUANT_Q4_0 ? 2 : 4;
    const __m128i qs = _mm_loadu_si128((const __m128i *)(block + offset)), low4 = _mm_set1_epi8(15);
    __m512i q[2] = {_mm512_cvtepu8_epi32(_mm_and_si128(qs, low4)),
                    _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(qs, 4), low4))};
    if (format == MYOPIA_QUANT_Q4_0) {
        const __m512i eight = _mm512_set1_epi32(8);
        for (int g = 0; g < 2; g++) v[g] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(q[g], eight)));
    } else {
        const __m512 mn = _mm512_set1_ps(half_to_float(block + 2));
        for (int g = 0; g < 2; g++) v[g] = _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(q[g])), mn);
    }
}

AVX512Q __attribute__((always_inline))
static inline __m256 high_half(__m512 x) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)); }

// qgemm_rows with R ≤ QROWS512 rows and two chains a register.
AVX512Q __attribute__((always_inline))
static inline void qgemm_rows512(const int format, const int R, long k, const float *a, long lda, const uint8_t *wrow,
                                 long block_bytes, float *row, int first, int keep, float *c, long ldc, int accumulate) {
    __m512 acc[QROWS512][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (long b = 0, p = 0; p < k; b++, p += 32) {
        __m512 v[2];
        if (first) {
            dequant_avx512(format, wrow + b * block_bytes, v);
            if (keep) {
                _mm512_store_ps(row + p, v[0]);
                _mm512_store_ps(row + p + 16, v[1]);
            }
        } else {
            v[0] = _mm512_load_ps(row + p);
            v[1] = _mm512_load_ps(row + p + 16);
        }
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            acc[r][0] = _mm512_fmadd_ps(_mm512_loadu_ps(a + r * lda + p), v[0], acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_loadu_ps(a + r * lda + p + 16), v[1], acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        __m256 c01 = _mm256_add_ps(_mm512_castps512_ps256(acc[r][0]), high_half(acc[r][0]));
        __m256 c23 = _mm256_add_ps(_mm512_castps512_ps256(acc[r][1]), high_half(acc[r][1]));
        float s = lanes_sum(_mm256_add_ps(c01, c23));
        c[r * ldc] = accumulate ? c[r * ldc] + s : s;
    }
}

AVX512Q
static void qgemm_rows512_any(const int format, int R, long k, const float *a, long lda, const uint8_t *wrow,
                              long block_bytes, float *row, int first, int keep, float *c, long ldc, int accumulate) {
#define MYOPIA_Q_CASE(F, N)                                                                                   \
    case N:                                                                                                   \
        qgemm_rows512(F, N, k, a, lda, wrow, block_bytes, row, first, keep, c, ldc, accumulate);              \
        break;
#define MYOPIA_Q_FORMAT(F)                                                                                    \
    switch (R) {                                                                                              \
        MYOPIA_Q_CASE(F, 1) MYOPIA_Q_CASE(F, 2) MYOPIA_Q_CASE(F, 3) MYOPIA_Q_CASE(F, 4)                       \
        MYOPIA_Q_CASE(F, 5) MYOPIA_Q_CASE(F, 6) MYOPIA_Q_CASE(F, 7) MYOPIA_Q_CASE(F, 8)                       \
    }                                                                                                         \
    break;
    switch (first ? format : MYOPIA_QUANT_Q8_0) {  // later groups only read `row`
    case MYOPIA_QUANT_Q4_0: MYOPIA_Q_FORMAT(MYOPIA_QUANT_Q4_0)
    case MYOPIA_QUANT_Q4_1: MYOPIA_Q_FORMAT(MYOPIA_QUANT_Q4_1)
    default: MYOPIA_Q_FORMAT(MYOPIA_QUANT_Q8_0)
    }
#undef MYOPIA_Q_FORMAT
#undef MYOPIA_Q_CASE
}

// Every weight row against the rows of A in groups of QROWS512: Q8_0, Q4_0 and Q4_1 dequantised
// into registers by the first group (kept in `row` for the others), the other formats first
// dequantised into `row` (dequant_row).
AVX512Q
static void qgemm_avx512(int format, long m, long n, long k, const float *a, long lda, const uint8_t *w,
                         long row_bytes, float *c, long ldc, int accumulate, float *row) {
    const int in_registers = format == MYOPIA_QUANT_Q8_0 || format == MYOPIA_QUANT_Q4_0 || format == MYOPIA_QUANT_Q4_1;
    const long block_bytes = myopia_quant_block_bytes(format);
    const int keep = m > QROWS512;
    for (long j = 0; j < n; j++) {
        const uint8_t *wrow = w + j * row_bytes;
        if (!in_registers) dequant_row(format, wrow, k, row);
        for (long i = 0; i < m; i += QROWS512) {
            int R = m - i < QROWS512 ? (int)(m - i) : QROWS512;
            qgemm_rows512_any(format, R, k, a + i * lda, lda, wrow, block_bytes, row, in_registers && i == 0, keep,
                              c + i * ldc + j, ldc, accumulate);
        }
    }
}
#endif

void myopia_qgemm(int format, int simd, long m, long n, long k, const float *a, long lda, const void *w,
                  long row_bytes, float *c, long ldc, int accumulate) {
    const long values = myopia_quant_block_values(format);
    if (m <= 0 || n <= 0 || k <= 0 || values == 0 || k % values != 0) return;
    float *row = (float *)myopia_thread_buffer(MYOPIA_SCRATCH_QGEMM, (size_t)k * sizeof(float));
#if defined(__x86_64__)
    if (simd == 2 && myopia_cpu_has_avx512vl()) {
        qgemm_avx512(format, m, n, k, a, lda, (const uint8_t *)w, row_bytes, c, ldc, accumulate, row);
        return;
    }
    if (simd && myopia_cpu_has_avx2_fma()) {
        qgemm_avx2(format, m, n, k, a, lda, (const uint8_t *)w, row_bytes, c, ldc, accumulate, row);
        return;
    }
#else
    (void)simd;
#endif
    qgemm_portable(format, m, n, k, a, lda, (const uint8_t *)w, row_bytes, c, ldc, accumulate, row);
}
