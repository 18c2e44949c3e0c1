// Products with weights kept quantised (ggml blocks), for decoding: a token streams the quantised
// bytes (Q8_0: 8.5 bits a weight, Q4_0: 4.5, Q4_1: 5, Q5_0: 5.5, Q5_1: 6, Q2_K: 2.625, Q3_K:
// 3.4375, Q4_K: 4.5, Q5_K: 5.5, Q6_K: 6.5625) instead of 32-bit floats. With AVX2 (and AVX-512)
// every format is dequantised 32 values at a time into registers right before their products (its
// integers picked out with byte shuffles, shifts and masks); the portable path dequantises one
// weight row at a time into a per-thread buffer of k floats that stays in L1/L2 while every row of
// A is multiplied with it.
//
// Dequantisation is exact per value and rounds as GGUFDequantizer (Swift) and gguf-py do: the f16
// scale widened exactly, d·q (exact: an 11-bit mantissa times a 4- or 8-bit integer), and for Q4_1
// one rounding of d·q + m, a multiply then an add (never fused: the pragma below keeps the compiler
// from contracting them); the K-quants' sub-block scale d·sc (and min dmin·mn) first, then its
// product with q, then the difference (GGUFQuantization.swift has the layouts). Only the sums differ from a product over the dequantised floats: each row
// of A against each weight row is summed in four 8-lane FMA chains (the portable path: 32 chains of
// multiply-then-add), whatever the number of rows of A or of weight rows computed together, so a
// result never depends on m or n.
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
// F16C converts the blocks' f16 scales in one instruction (exactly, as half_to_float does).
#define AVX2_FMA __attribute__((target("avx2,fma,f16c")))

AVX2_FMA __attribute__((always_inline))
static inline float half_f16c(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

// Sum of the 8 lanes in a fixed order.
AVX2_FMA __attribute__((always_inline))
static inline float lanes_sum(__m256 x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// MARK: Values 32 at a time in registers, every format
//
// Group s (32 values) of a block: its 32 integers q as bytes (q fits int8 in every format), and how
// each half of 16 values becomes floats, exactly as dequant_block computes them: scale · (float)q,
// then + offset (Q4_1, Q5_1: the block's min) or − offset (Q2_K, Q4_K, Q5_K: the sub-block's
// min), or nothing (the others; adding a zero could turn −0 into +0).
enum { KQ_MUL = 0, KQ_ADD = 1, KQ_SUB = 2 };

typedef struct {
    __m256i q;           // 32 signed bytes
    float scale[2], offset[2];
    int op;
} q_group;

// The bits of a 32-bit mask as 32 bytes of 0 or 1 (byte j = bit j).
AVX2_FMA __attribute__((always_inline))
static inline __m256i mask_bits(uint32_t bits) {
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                               _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                                                 0x0101010101010101LL, 0x0000000000000000LL));
    const __m256i select = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select), _mm256_set1_epi8(1));
}

// (x >> shift) & mask for each byte (shift ≤ 7).
AVX2_FMA __attribute__((always_inline))
static inline __m256i bytes_shift_mask(__m256i x, int shift, int mask) {
    return _mm256_and_si256(_mm256_srli_epi16(x, shift), _mm256_set1_epi8((char)mask));
}

AVX2_FMA __attribute__((always_inline))
static inline __m256i load32(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

AVX2_FMA __attribute__((always_inline))
static inline q_group group_avx2(const int format, const uint8_t *block, int s) {
    q_group g;
    switch (format) {
    case MYOPIA_QUANT_Q8_0:
        g.q = load32(block + 2);
        g.scale[0] = g.scale[1] = half_f16c(block);
        g.op = KQ_MUL;
        break;
    case MYOPIA_QUANT_Q4_0:
    case MYOPIA_QUANT_Q4_1:
    case MYOPIA_QUANT_Q5_0:
    case MYOPIA_QUANT_Q5_1: {
        // d (and m for _1), Q5's 32 fifth bits, then 16 bytes of nibbles: value j low, j + 16 high.
        const int one = format == MYOPIA_QUANT_Q4_1 || format == MYOPIA_QUANT_Q5_1;
        const int five = format == MYOPIA_QUANT_Q5_0 || format == MYOPIA_QUANT_Q5_1;
        const __m128i qs = _mm_loadu_si128((const __m128i *)(block + 2 + 2 * one + 4 * five));
        g.q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), _mm256_set1_epi8(15));
        if (five) g.q = _mm256_or_si256(g.q, _mm256_slli_epi16(mask_bits(load_u32(block + 2 + 2 * one)), 4));
        if (!one) g.q = _mm256_sub_epi8(g.q, _mm256_set1_epi8(five ? 16 : 8));
        g.scale[0] = g.scale[1] = half_f16c(block);
        g.offset[0] = g.offset[1] = one ? half_f16c(block + 2) : 0;
        g.op = one ? KQ_ADD : KQ_MUL;
        break;
    }
    case MYOPIA_QUANT_Q2_K: {
        const float d = half_f16c(block + 80), dmin = half_f16c(block + 82);
        g.q = bytes_shift_mask(load32(block + 16 + 32 * (s / 4)), 2 * (s % 4), 3);
        for (int h = 0; h < 2; h++) {
            const int sc = block[2 * s + h];
            g.scale[h] = d * (float)(sc & 15);
            g.offset[h] = dmin * (float)(sc >> 4);
        }
        g.op = KQ_SUB;
        break;
    }
    case MYOPIA_QUANT_Q3_K: {
        const float d = half_f16c(block + 108);
        const __m256i low = bytes_shift_mask(load32(block + 32 + 32 * (s / 4)), 2 * (s % 4), 3);
        const __m256i hbit = bytes_shift_mask(load32(block), s, 1);
        // q = low − 4 where the hmask bit is clear: low − 4·(1 − bit)
        g.q = _mm256_sub_epi8(low, _mm256_slli_epi16(_mm256_xor_si256(hbit, _mm256_set1_epi8(1)), 2));
        for (int h = 0; h < 2; h++) {
            const int r = 2 * s + h, lo = block[96 + r % 8], hi = block[104 + r % 4];
            const int scale = (r < 8 ? lo & 15 : lo >> 4) | ((hi >> (2 * (r / 4))) & 3) << 4;
            g.scale[h] = d * (float)(scale - 32);
        }
        g.op = KQ_MUL;
        break;
    }
    case MYOPIA_QUANT_Q4_K:
    case MYOPIA_QUANT_Q5_K: {
        const int five = format == MYOPIA_QUANT_Q5_K;
        const float d = half_f16c(block), dmin = half_f16c(block + 2);
        g.q = bytes_shift_mask(load32(block + (five ? 48 : 16) + 32 * (s / 2)), 4 * (s % 2), 15);
        if (five) g.q = _mm256_or_si256(g.q, _mm256_slli_epi16(bytes_shift_mask(load32(block + 16), s, 1), 4));
        int scale, min;
        scale_min_k4(block + 4, s, &scale, &min);
        g.scale[0] = g.scale[1] = d * (float)scale;
        g.offset[0] = g.offset[1] = dmin * (float)min;
        g.op = KQ_SUB;
        break;
    }
    default: {  // MYOPIA_QUANT_Q6_K
        const float d = half_f16c(block + 208);
        const int h = s / 4, t = s % 4;
        const __m256i low = bytes_shift_mask(load32(block + 64 * h + 32 * (t % 2)), 4 * (t / 2), 15);
        const __m256i high = bytes_shift_mask(load32(block + 128 + 32 * h), 2 * t, 3);
        g.q = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), _mm256_set1_epi8(32));
        for (int e = 0; e < 2; e++) g.scale[e] = d * (float)(int8_t)block[192 + 2 * s + e];
        g.op = KQ_MUL;
        break;
    }
    }
    return g;
}

// The 32 values of a group into four ymm (values 8g .. 8g+7 in v[g]).
AVX2_FMA __attribute__((always_inline))
static inline void group_floats_avx2(const q_group *g, __m256 *v) {
    const __m128i halves[2] = {_mm256_castsi256_si128(g->q), _mm256_extracti128_si256(g->q, 1)};
    for (int i = 0; i < 4; i++) {
        const int h = i / 2;
        const __m128i bytes = i % 2 ? _mm_srli_si128(halves[h], 8) : halves[h];
        __m256 x = _mm256_mul_ps(_mm256_set1_ps(g->scale[h]), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)));
        if (g->op == KQ_ADD) x = _mm256_add_ps(x, _mm256_set1_ps(g->offset[h]));
        else if (g->op == KQ_SUB) x = _mm256_sub_ps(x, _mm256_set1_ps(g->offset[h]));
        v[i] = x;
    }
}

// Where group p / 32 of a weight row starts: its block and its index within the block.
#define GROUP_AT(wrow, p, values, block_bytes) ((wrow) + (p) / (values) * (block_bytes)), (int)((p) % (values) / 32)

// Rows i0 .. i0+R-1 of C's column j: four FMA chains per row, one per 8 values of each group of 32.
// The first group of rows dequantises each group of the weight row into registers (and, when more
// groups of rows follow, leaves it in `row` for them); later groups read it back.
AVX2_FMA __attribute__((always_inline))
static inline void qgemm_rows(const int format, const int R, long k, const float *a, long lda, const uint8_t *wrow,
                              float *row, int first, int keep, float *c, long ldc, int accumulate) {
    const long values = myopia_quant_block_values(format), block_bytes = myopia_quant_block_bytes(format);
    __m256 acc[2][4];
    for (int r = 0; r < R; r++)
        for (int g = 0; g < 4; g++) acc[r][g] = _mm256_setzero_ps();
    for (long p = 0; p < k; p += 32) {
        __m256 v[4];
        if (first) {
            const q_group group = group_avx2(format, GROUP_AT(wrow, p, values, block_bytes));
            group_floats_avx2(&group, v);
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
    const int keep = m > 2;
    for (long j = 0; j < n; j++) {
        const uint8_t *wrow = w + j * row_bytes;
        long i = 0;
        for (; i + 2 <= m; i += 2)
            qgemm_rows(format, 2, k, a + i * lda, lda, wrow, row, i == 0, keep, c + i * ldc + j, ldc, accumulate);
        if (i < m)
            qgemm_rows(format, 1, k, a + i * lda, lda, wrow, row, i == 0, keep, c + i * ldc + j, ldc, accumulate);
    }
}

// One instance of `body(F)` per format, F a constant in each.
#define MYOPIA_EACH_FORMAT(format, body)                                                   \
    switch (format) {                                                                      \
    case MYOPIA_QUANT_Q8_0: body(MYOPIA_QUANT_Q8_0) break;                                 \
    case MYOPIA_QUANT_Q4_0: body(MYOPIA_QUANT_Q4_0) break;                                 \
    case MYOPIA_QUANT_Q4_1: body(MYOPIA_QUANT_Q4_1) break;                                 \
    case MYOPIA_QUANT_Q5_0: body(MYOPIA_QUANT_Q5_0) break;                                 \
    case MYOPIA_QUANT_Q5_1: body(MYOPIA_QUANT_Q5_1) break;                                 \
    case MYOPIA_QUANT_Q2_K: body(MYOPIA_QUANT_Q2_K) break;                                 \
    case MYOPIA_QUANT_Q3_K: body(MYOPIA_QUANT_Q3_K) break;                                 \
    case MYOPIA_QUANT_Q4_K: body(MYOPIA_QUANT_Q4_K) break;                                 \
    case MYOPIA_QUANT_Q5_K: body(MYOPIA_QUANT_Q5_K) break;                                 \
    default: body(MYOPIA_QUANT_Q6_K) break;                                                \
    }

AVX2_FMA
static void qgemm_avx2(int format, long m, long n, long k, const float *a, long lda, const uint8_t *w,
                       long row_bytes, float *c, long ldc, int accumulate, float *row) {
#define MYOPIA_AVX2_BODY(F) qgemm_avx2_format(F, m, n, k, a, lda, w, row_bytes, c, ldc, accumulate, row);
    MYOPIA_EACH_FORMAT(format, MYOPIA_AVX2_BODY)
#undef MYOPIA_AVX2_BODY
}

// MARK: - AVX-512
//
// The same sums as the AVX2 path, bit for bit: a zmm holds two of its 8-lane chains side by side
// (values 0–15 of a group, then 16–31), every lane does the same FMA on the same values, and the
// chains are added in the same order at the end. A few rows of A (m ≤ QFEW512) run against one
// weight row at a time, its groups dequantised into registers; more rows run in tiles: QJ512
// weight rows dequantised once into an L1 buffer (by the first QR512 rows of A, a group right
// before its products, so that the conversions overlap FMAs), then QR512 rows of A at a time
// against all of them, so that each load of A feeds the chains of QJ512 weight rows.
#define AVX512Q __attribute__((target("avx512f,avx512vl,avx2,fma,f16c")))
#define QFEW512 5
#define QJ512 4
#define QR512 3

// The 32 values of a group into two zmm (values 0–15, 16–31), as group_floats_avx2 computes them.
AVX512Q __attribute__((always_inline))
static inline void group_floats_avx512(const q_group *g, __m512 *v) {
    for (int h = 0; h < 2; h++) {
        const __m128i bytes = h ? _mm256_extracti128_si256(g->q, 1) : _mm256_castsi256_si128(g->q);
        __m512 x = _mm512_mul_ps(_mm512_set1_ps(g->scale[h]), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)));
        if (g->op == KQ_ADD) x = _mm512_add_ps(x, _mm512_set1_ps(g->offset[h]));
        else if (g->op == KQ_SUB) x = _mm512_sub_ps(x, _mm512_set1_ps(g->offset[h]));
        v[h] = x;
    }
}

AVX512Q __attribute__((always_inline))
static inline __m256 high_half(__m512 x) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)); }

// The sum of one (row, weight row)'s two chain registers, as qgemm_rows adds its four chains.
AVX512Q __attribute__((always_inline))
static inline float chains_sum512(const __m512 *acc) {
    __m256 c01 = _mm256_add_ps(_mm512_castps512_ps256(acc[0]), high_half(acc[0]));
    __m256 c23 = _mm256_add_ps(_mm512_castps512_ps256(acc[1]), high_half(acc[1]));
    return lanes_sum(_mm256_add_ps(c01, c23));
}

// chains_sum512 of four outputs at once (acc[j][0..1], j < 4), each addition the same one on the
// same operands: each output's eight lanes as chains_sum512 adds them, then lanes_sum's three
// steps on two outputs a ymm (a 128-bit half each), then on four.
AVX512Q __attribute__((always_inline))
static inline __m128 chains_sum4_512(const __m512 (*acc)[2]) {
    __m256 x[4];
    for (int j = 0; j < 4; j++) {
        const __m256 c01 = _mm256_add_ps(_mm512_castps512_ps256(acc[j][0]), high_half(acc[j][0]));
        const __m256 c23 = _mm256_add_ps(_mm512_castps512_ps256(acc[j][1]), high_half(acc[j][1]));
        x[j] = _mm256_add_ps(c01, c23);
    }
    // half h of s[i]: lanes 0–3 + lanes 4–7 of output 2i + h
    __m256 s[2];
    for (int i = 0; i < 2; i++)
        s[i] = _mm256_add_ps(_mm256_permute2f128_ps(x[2 * i], x[2 * i + 1], 0x20), _mm256_permute2f128_ps(x[2 * i], x[2 * i + 1], 0x31));
    // half h: [0 + 2, 1 + 3] of output h, then of output 2 + h
    const __m256 t = _mm256_add_ps(_mm256_shuffle_ps(s[0], s[1], _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(s[0], s[1], _MM_SHUFFLE(3, 2, 3, 2)));
    // half h: the sums of output h and 2 + h
    const __m256 u = _mm256_add_ps(_mm256_shuffle_ps(t, t, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(t, t, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm_unpacklo_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

// Rows 0 ..< R (≤ QFEW512) of A against one weight row: C's column at c.
AVX512Q __attribute__((always_inline))
static inline void qgemm_rows512(const int format, const int R, long k, const float *a, long lda, const uint8_t *wrow,
                                 float *c, long ldc, int accumulate) {
    const long values = myopia_quant_block_values(format), block_bytes = myopia_quant_block_bytes(format);
    __m512 acc[QFEW512][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (long p = 0; p < k; p += 32) {
        __m512 v[2];
        const q_group group = group_avx2(format, GROUP_AT(wrow, p, values, block_bytes));
        group_floats_avx512(&group, v);
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            acc[r][0] = _mm512_fmadd_ps(_mm512_loadu_ps(a + r * lda + p), v[0], acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_loadu_ps(a + r * lda + p + 16), v[1], acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        const float s = chains_sum512(acc[r]);
        c[r * ldc] = accumulate ? c[r * ldc] + s : s;
    }
}

// Group p / 32 of weight row j (of J ≤ QJ512, at w) into `tile`, at tile + p·J + 32·j.
AVX512Q __attribute__((always_inline))
static inline void dequant_group512(const int format, int J, int j, long p, const uint8_t *w, long row_bytes, float *tile) {
    const long values = myopia_quant_block_values(format), block_bytes = myopia_quant_block_bytes(format);
    const q_group group = group_avx2(format, GROUP_AT(w + j * row_bytes, p, values, block_bytes));
    __m512 v[2];
    group_floats_avx512(&group, v);
    _mm512_store_ps(tile + p * J + 32 * j, v[0]);
    _mm512_store_ps(tile + p * J + 32 * j + 16, v[1]);
}

// Rows 0 ..< R of A against the J weight rows of `tile`: C's R × J block at c. Each (row, weight
// row) has qgemm_rows512's two chains and sum; a load of A feeds J of them. With `first`, each
// group of the J weight rows (at w) is dequantised into the tile right before its products (the
// conversions overlap the FMAs of the group before).
AVX512Q __attribute__((always_inline))
static inline void qgemm_tile512(const int format, const int first, const int J, const int R, long k,
                                 const float *a, long lda, const uint8_t *w, long row_bytes, float *tile,
                                 float *c, long ldc, int accumulate) {
    __m512 acc[QR512][QJ512][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++)
#pragma clang loop unroll(full)
        for (int j = 0; j < J; j++) acc[r][j][0] = acc[r][j][1] = _mm512_setzero_ps();
    for (long p = 0; p < k; p += 32) {
        const float *wp = tile + p * J;
        if (first)
#pragma clang loop unroll(full)
            for (int j = 0; j < J; j++) dequant_group512(format, J, j, p, w, row_bytes, tile);
#pragma clang loop unroll(full)
        for (int h = 0; h < 2; h++) {
            __m512 v[QJ512];
#pragma clang loop unroll(full)
            for (int j = 0; j < J; j++) v[j] = _mm512_load_ps(wp + 32 * j + 16 * h);
#pragma clang loop unroll(full)
            for (int r = 0; r < R; r++) {
                const __m512 x = _mm512_loadu_ps(a + r * lda + p + 16 * h);
#pragma clang loop unroll(full)
                for (int j = 0; j < J; j++) acc[r][j][h] = _mm512_fmadd_ps(x, v[j], acc[r][j][h]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++) {
        if (J == QJ512) {
            const __m128 s = chains_sum4_512(acc[r]);
            _mm_storeu_ps(c + r * ldc, accumulate ? _mm_add_ps(_mm_loadu_ps(c + r * ldc), s) : s);
        } else {
            for (int j = 0; j < J; j++) {
                const float s = chains_sum512(acc[r][j]);
                c[r * ldc + j] = accumulate ? c[r * ldc + j] + s : s;
            }
        }
    }
}

// Every row of A against the J (≤ QJ512) weight rows of `tile`.
AVX512Q
static void qgemm_tiles512(int J, long m, long k, const float *a, long lda, float *tile, float *c, long ldc,
                           int accumulate) {
    // ⌈m / QR512⌉ passes, their row counts differing by at most one (16 rows: 3, 3, 3, 3, 2, 2)
    const long passes = (m + QR512 - 1) / QR512;
    for (long pass = 0, i = 0; pass < passes; pass++) {
        const int R = (int)(m / passes + (pass < m % passes));
        const float *ai = a + i * lda;
        float *ci = c + i * ldc;
#define MYOPIA_Q_TILE(JJ, RR)                                                                                 \
    case (JJ) * 8 + (RR): qgemm_tile512(MYOPIA_QUANT_Q8_0, 0, JJ, RR, k, ai, lda, NULL, 0, tile, ci, ldc, accumulate); break;
        switch (J * 8 + R) {
            MYOPIA_Q_TILE(1, 1) MYOPIA_Q_TILE(1, 2) MYOPIA_Q_TILE(1, 3)
            MYOPIA_Q_TILE(2, 1) MYOPIA_Q_TILE(2, 2) MYOPIA_Q_TILE(2, 3)
            MYOPIA_Q_TILE(3, 1) MYOPIA_Q_TILE(3, 2) MYOPIA_Q_TILE(3, 3)
            MYOPIA_Q_TILE(4, 1) MYOPIA_Q_TILE(4, 2) MYOPIA_Q_TILE(4, 3)
        }
#undef MYOPIA_Q_TILE
        i += R;
    }
}

AVX512Q __attribute__((always_inline))
static inline void qgemm_avx512_format(const int format, long m, long n, long k, const float *a, long lda,
                                       const uint8_t *w, long row_bytes, float *c, long ldc, int accumulate, float *tile) {
    if (m <= QFEW512) {
        for (long j = 0; j < n; j++) {
            const uint8_t *wrow = w + j * row_bytes;
#define MYOPIA_Q_ROWS(RR)                                                                                     \
    case RR: qgemm_rows512(format, RR, k, a, lda, wrow, c + j, ldc, accumulate); break;
            switch (m) { MYOPIA_Q_ROWS(1) MYOPIA_Q_ROWS(2) MYOPIA_Q_ROWS(3) MYOPIA_Q_ROWS(4) MYOPIA_Q_ROWS(5) }
#undef MYOPIA_Q_ROWS
        }
        return;
    }
    for (long j = 0; j < n; j += QJ512) {
        const int J = n - j < QJ512 ? (int)(n - j) : QJ512;
        // the blocks of the tile after the next into L1 while these run (a batch's weights stream from memory)
        if (j + 3 * QJ512 <= n) {
            const char *ahead = (const char *)(w + (j + 2 * QJ512) * row_bytes);
            for (long b = 0; b < QJ512 * row_bytes; b += 64) _mm_prefetch(ahead + b, _MM_HINT_T0);
        }
        if (J == QJ512) {
            // the first QR512 rows dequantise the tile as they go; the others read it
            qgemm_tile512(format, 1, QJ512, QR512, k, a, lda, w + j * row_bytes, row_bytes, tile, c + j, ldc, accumulate);
            qgemm_tiles512(J, m - QR512, k, a + QR512 * lda, lda, tile, c + QR512 * ldc + j, ldc, accumulate);
        } else {
            for (long p = 0; p < k; p += 32)
                for (int jj = 0; jj < J; jj++) dequant_group512(format, J, jj, p, w + j * row_bytes, row_bytes, tile);
            qgemm_tiles512(J, m, k, a, lda, tile, c + j, ldc, accumulate);
        }
    }
}

AVX512Q
static void qgemm_avx512(int format, long m, long n, long k, const float *a, long lda, const uint8_t *w,
                         long row_bytes, float *c, long ldc, int accumulate, float *row) {
#define MYOPIA_AVX512_BODY(F) qgemm_avx512_format(F, m, n, k, a, lda, w, row_bytes, c, ldc, accumulate, row);
    MYOPIA_EACH_FORMAT(format, MYOPIA_AVX512_BODY)
#undef MYOPIA_AVX512_BODY
}
#endif

void myopia_qgemm(int format, int simd, long m, long n, long k, const float *a, long lda, const void *w,
                  long row_bytes, float *c, long ldc, int accumulate) {
    const long values = myopia_quant_block_values(format);
    if (m <= 0 || n <= 0 || k <= 0 || values == 0 || k % values != 0) return;
    // a dequantised weight row (AVX2, portable) or QJ512 of them (AVX-512's tiles)
    float *row = (float *)myopia_thread_buffer(MYOPIA_SCRATCH_QGEMM, (size_t)k * 4 * sizeof(float));
#if defined(__x86_64__)
    const int f16c = myopia_cpu_has_avx2_fma() && __builtin_cpu_supports("f16c");
    if (simd == 2 && f16c && myopia_cpu_has_avx512vl()) {
        qgemm_avx512(format, m, n, k, a, lda, (const uint8_t *)w, row_bytes, c, ldc, accumulate, row);
        return;
    }
    if (simd && f16c) {
        qgemm_avx2(format, m, n, k, a, lda, (const uint8_t *)w, row_bytes, c, ldc, accumulate, row);
        return;
    }
#else
    (void)simd;
#endif
    qgemm_portable(format, m, n, k, a, lda, (const uint8_t *)w, row_bytes, c, ldc, accumulate, row);
}
