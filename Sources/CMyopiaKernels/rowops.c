// AVX2+FMA and AVX-512 versions of the transcendental row operations (exp, softmax, GELU).
// MyopiaKernels calls the AVX2 ones where the GEMM kernel is an FMA one and the AVX-512 ones where it
// is the AVX-512 one (so MYOPIA_KERNEL picks both), otherwise its own portable SIMD8 Swift code; off
// x86-64 these entry points are plain scalar C so that the library always links.
//
// exp: Cody–Waite reduction x = n·ln2 + r, degree-6 polynomial (Cephes expf coefficients), 2^n
// built in the exponent bits in two halves so that n in [-126, 128] stays normal. x < ln(FLT_MIN)
// (−inf included) gives 0, x > ln(FLT_MAX) gives +inf, NaN stays NaN.
#include "CMyopiaKernels.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2_FMA __attribute__((target("avx2,fma")))

AVX2_FMA
static inline __m256 exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.72283905206835f);
    const __m256 lo = _mm256_set1_ps(-87.33654475055310f);
    const __m256 magic = _mm256_set1_ps(12582912.0f);  // 1.5 · 2^23: adding it rounds to an integer
    // max/min return their second operand when unordered: NaN passes through.
    __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
    __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_fmadd_ps(r, _mm256_set1_ps(1.9875691500e-4f), _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000));
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    return y;
}

// Lanes [0, count) from p, the rest `fill`; and the matching partial store.
AVX2_FMA
static inline __m256 load_partial(const float *p, long count, float fill) {
    float tmp[8];
    for (long i = 0; i < 8; i++) tmp[i] = i < count ? p[i] : fill;
    return _mm256_loadu_ps(tmp);
}

AVX2_FMA
static inline void store_partial(float *p, __m256 v, long count) {
    float tmp[8];
    _mm256_storeu_ps(tmp, v);
    for (long i = 0; i < count; i++) p[i] = tmp[i];
}

AVX2_FMA
static inline float hsum256(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    float t[4];
    _mm_storeu_ps(t, h);
    return (t[0] + t[2]) + (t[1] + t[3]);
}

AVX2_FMA
static inline float hmax256(__m256 v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    float t[4];
    _mm_storeu_ps(t, h);
    float a = t[0] > t[1] ? t[0] : t[1], b = t[2] > t[3] ? t[2] : t[3];
    return a > b ? a : b;
}

AVX2_FMA
static void exp_avx2(const float *x, float *y, long count) {
    long i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(y + i, exp256(_mm256_loadu_ps(x + i)));
    if (i < count) store_partial(y + i, exp256(load_partial(x + i, count - i, 0.0f)), count - i);
}

// softmax in three passes. The first (scale, max) and the last (times 1/sum) are exact in any
// order; the second (exp, store, sum) fixes the rounding: its sums run in 8 lanes, chunk by chunk.
AVX2_FMA
static float softmax_scale_max(float *x, long count, float scale) {
    long body = count & ~7L, tail = count - body;
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    const __m256 vscale = _mm256_set1_ps(scale);
    for (long i = 0; i < body; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (scale != 1.0f) {
            v = _mm256_mul_ps(v, vscale);
            _mm256_storeu_ps(x + i, v);
        }
        vmax = _mm256_max_ps(vmax, v);
    }
    if (tail) {
        if (scale != 1.0f)
            for (long i = body; i < count; i++) x[i] *= scale;
        vmax = _mm256_max_ps(vmax, load_partial(x + body, tail, -INFINITY));
    }
    return hmax256(vmax);
}

// x[i] = exp(x[i] − m) for i ≥ from, 8 at a time then the tail, added to vsum chunk by chunk.
AVX2_FMA
static float softmax_exp_sum(float *x, long from, long count, float m, __m256 vsum) {
    long body = count & ~7L, tail = count - body;
    const __m256 vm = _mm256_set1_ps(m);
    for (long i = from; i < body; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    if (tail) {
        __m256 e = exp256(_mm256_sub_ps(load_partial(x + body, tail, -INFINITY), vm));
        store_partial(x + body, e, tail);
        vsum = _mm256_add_ps(vsum, e);
    }
    return hsum256(vsum);
}

AVX2_FMA
static void softmax_normalise(float *x, long count, float sum) {
    long body = count & ~7L;
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (long i = 0; i < body; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (long i = body; i < count; i++) x[i] *= 1.0f / sum;
}

AVX2_FMA
static float softmax_avx2(float *x, long count, float scale, float *max_out) {
    float m = softmax_scale_max(x, count, scale);
    float sum = softmax_exp_sum(x, 0, count, m, _mm256_setzero_ps());
    softmax_normalise(x, count, sum);
    *max_out = m;
    return sum;
}

// softmax_avx2's row again from its statistics: x = exp(scale·x − max) · inverse, with the same
// operations in the same order (scale, subtract, exp256, multiply), so every value is bitwise the
// one softmax_avx2 wrote. Attention's backward uses it to rebuild probabilities it did not keep.
AVX2_FMA
static void softmax_recompute_avx2(float *x, long count, float scale, float m, float inverse) {
    long body = count & ~7L, tail = count - body;
    const __m256 vscale = _mm256_set1_ps(scale), vm = _mm256_set1_ps(m), vinv = _mm256_set1_ps(inverse);
    for (long i = 0; i < body; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (scale != 1.0f) v = _mm256_mul_ps(v, vscale);
        _mm256_storeu_ps(x + i, _mm256_mul_ps(exp256(_mm256_sub_ps(v, vm)), vinv));
    }
    if (tail) {
        if (scale != 1.0f)
            for (long i = body; i < count; i++) x[i] *= scale;
        __m256 e = exp256(_mm256_sub_ps(load_partial(x + body, tail, -INFINITY), vm));
        store_partial(x + body, _mm256_mul_ps(e, vinv), tail);
    }
}

// gelu(x) = x · σ(2z) = x / (1 + e^{−2z}),  z = √(2/π)(x + 0.044715 x³)
#define GELU_K0 0.7978845608028654f
#define GELU_K1 0.044715f

AVX2_FMA
static inline __m256 gelu256(__m256 x) {
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 z = _mm256_mul_ps(_mm256_mul_ps(_mm256_fmadd_ps(x2, _mm256_set1_ps(GELU_K1), _mm256_set1_ps(1.0f)), x),
                             _mm256_set1_ps(GELU_K0));
    __m256 e = exp256(_mm256_mul_ps(z, _mm256_set1_ps(-2.0f)));
    return _mm256_div_ps(x, _mm256_add_ps(e, _mm256_set1_ps(1.0f)));
}

// d/dx [x·σ(2z)] = σ + 2·x·z′·σ·(1−σ), 1−σ = e·σ; the exponent is capped at 80 so e·σ² stays finite.
AVX2_FMA
static inline __m256 gelu_derivative256(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 z = _mm256_mul_ps(_mm256_mul_ps(_mm256_fmadd_ps(x2, _mm256_set1_ps(GELU_K1), one), x),
                             _mm256_set1_ps(GELU_K0));
    __m256 u = _mm256_min_ps(_mm256_mul_ps(z, _mm256_set1_ps(-2.0f)), _mm256_set1_ps(80.0f));
    __m256 e = exp256(u);
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(e, one));
    __m256 dz = _mm256_mul_ps(_mm256_fmadd_ps(x2, _mm256_set1_ps(3.0f * GELU_K1), one), _mm256_set1_ps(GELU_K0));
    __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(x, dz), _mm256_set1_ps(2.0f)), _mm256_mul_ps(e, s));
    return _mm256_fmadd_ps(t, s, s);
}

AVX2_FMA
static void gelu_forward_avx2(float *out, const float *in, long count) {
    long i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(out + i, gelu256(_mm256_loadu_ps(in + i)));
    if (i < count) store_partial(out + i, gelu256(load_partial(in + i, count - i, 0.0f)), count - i);
}

AVX2_FMA
static void gelu_backward_avx2(float *dx, const float *x, const float *dy, long count) {
    long i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), gelu_derivative256(_mm256_loadu_ps(x + i))));
    if (i < count) {
        long n = count - i;
        __m256 d = _mm256_mul_ps(load_partial(dy + i, n, 0.0f), gelu_derivative256(load_partial(x + i, n, 0.0f)));
        store_partial(dx + i, d, n);
    }
}

// AVX-512 versions of the element-wise operations: the same operations, constants and order per
// element as the AVX2 ones, 16 lanes at a time (the rest of a row goes to the AVX2 code), so their
// results are bitwise those of the AVX2 path; softmax's sum still runs in 8 lanes, chunk by chunk.
// They pay on Zen 4 too, where a 512-bit FMA issues at the 256-bit rate: half the instructions, and
// mask blends in place of blendv (docs/kernels.md, "Row operations").
#define AVX512 __attribute__((target("avx2,fma,avx512f")))

AVX512
static inline __m512 exp512(__m512 x) {
    const __m512 hi = _mm512_set1_ps(88.72283905206835f);
    const __m512 lo = _mm512_set1_ps(-87.33654475055310f);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 xc = _mm512_min_ps(hi, _mm512_max_ps(lo, x));
    __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(1.9875691500e-4f), _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i ni = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000));
    __m512i n1 = _mm512_srai_epi32(ni, 1);
    __m512i n2 = _mm512_sub_epi32(ni, n1);
    const __m512i bias = _mm512_set1_epi32(127);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
    __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), y, _mm512_setzero_ps());
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), y, _mm512_set1_ps(INFINITY));
    return y;
}

AVX512
static inline __m512 gelu512(__m512 x) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 z = _mm512_mul_ps(_mm512_mul_ps(_mm512_fmadd_ps(x2, _mm512_set1_ps(GELU_K1), _mm512_set1_ps(1.0f)), x),
                             _mm512_set1_ps(GELU_K0));
    __m512 e = exp512(_mm512_mul_ps(z, _mm512_set1_ps(-2.0f)));
    return _mm512_div_ps(x, _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
}

AVX512
static inline __m512 gelu_derivative512(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 z = _mm512_mul_ps(_mm512_mul_ps(_mm512_fmadd_ps(x2, _mm512_set1_ps(GELU_K1), one), x),
                             _mm512_set1_ps(GELU_K0));
    __m512 u = _mm512_min_ps(_mm512_mul_ps(z, _mm512_set1_ps(-2.0f)), _mm512_set1_ps(80.0f));
    __m512 e = exp512(u);
    __m512 s = _mm512_div_ps(one, _mm512_add_ps(e, one));
    __m512 dz = _mm512_mul_ps(_mm512_fmadd_ps(x2, _mm512_set1_ps(3.0f * GELU_K1), one), _mm512_set1_ps(GELU_K0));
    __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(x, dz), _mm512_set1_ps(2.0f)), _mm512_mul_ps(e, s));
    return _mm512_fmadd_ps(t, s, s);
}

AVX512
static void exp_avx512(const float *x, float *y, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16) _mm512_storeu_ps(y + i, exp512(_mm512_loadu_ps(x + i)));
    exp_avx2(x + i, y + i, count - i);
}

AVX512
static float softmax_avx512(float *x, long count, float scale, float *max_out) {
    float m = softmax_scale_max(x, count, scale);
    const __m512 vm = _mm512_set1_ps(m);
    __m256 vsum = _mm256_setzero_ps();
    long i = 0;
    for (; i + 16 <= (count & ~7L); i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        vsum = _mm256_add_ps(vsum, _mm512_castps512_ps256(e));          // chunk i, then chunk i + 8
        vsum = _mm256_add_ps(vsum, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
    }
    float sum = softmax_exp_sum(x, i, count, m, vsum);
    softmax_normalise(x, count, sum);
    *max_out = m;
    return sum;
}

AVX512
static void softmax_recompute_avx512(float *x, long count, float scale, float m, float inverse) {
    const __m512 vscale = _mm512_set1_ps(scale), vm = _mm512_set1_ps(m), vinv = _mm512_set1_ps(inverse);
    long i = 0;
    for (; i + 16 <= (count & ~7L); i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        if (scale != 1.0f) v = _mm512_mul_ps(v, vscale);
        _mm512_storeu_ps(x + i, _mm512_mul_ps(exp512(_mm512_sub_ps(v, vm)), vinv));
    }
    softmax_recompute_avx2(x + i, count - i, scale, m, inverse);
}

AVX512
static void gelu_forward_avx512(float *out, const float *in, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16) _mm512_storeu_ps(out + i, gelu512(_mm512_loadu_ps(in + i)));
    gelu_forward_avx2(out + i, in + i, count - i);
}

AVX512
static void gelu_backward_avx512(float *dx, const float *x, const float *dy, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(dx + i, _mm512_mul_ps(_mm512_loadu_ps(dy + i), gelu_derivative512(_mm512_loadu_ps(x + i))));
    gelu_backward_avx2(dx + i, x + i, dy + i, count - i);
}

void myopia_exp_avx512(const float *x, float *y, long count) { exp_avx512(x, y, count); }

float myopia_softmax_avx512(float *x, long count, float scale, float *max_out) {
    return softmax_avx512(x, count, scale, max_out);
}

void myopia_softmax_recompute_avx512(float *x, long count, float scale, float max, float inverse) {
    softmax_recompute_avx512(x, count, scale, max, inverse);
}

void myopia_gelu_forward_avx512(float *out, const float *in, long count) { gelu_forward_avx512(out, in, count); }

void myopia_gelu_backward_avx512(float *dx, const float *x, const float *dy, long count) {
    gelu_backward_avx512(dx, x, dy, count);
}

void myopia_exp_avx2(const float *x, float *y, long count) { exp_avx2(x, y, count); }

float myopia_softmax_avx2(float *x, long count, float scale, float *max_out) {
    return softmax_avx2(x, count, scale, max_out);
}

void myopia_softmax_recompute_avx2(float *x, long count, float scale, float max, float inverse) {
    softmax_recompute_avx2(x, count, scale, max, inverse);
}

void myopia_gelu_forward_avx2(float *out, const float *in, long count) { gelu_forward_avx2(out, in, count); }

void myopia_gelu_backward_avx2(float *dx, const float *x, const float *dy, long count) {
    gelu_backward_avx2(dx, x, dy, count);
}

#else /* not x86-64: scalar stand-ins, never called by MyopiaKernels (it checks the CPU first) */

void myopia_exp_avx2(const float *x, float *y, long count) {
    for (long i = 0; i < count; i++) y[i] = expf(x[i]);
}

float myopia_softmax_avx2(float *x, long count, float scale, float *max_out) {
    float m = -INFINITY, sum = 0;
    for (long i = 0; i < count; i++) { x[i] *= scale; if (x[i] > m) m = x[i]; }
    for (long i = 0; i < count; i++) { x[i] = expf(x[i] - m); sum += x[i]; }
    for (long i = 0; i < count; i++) x[i] /= sum;
    *max_out = m;
    return sum;
}

void myopia_softmax_recompute_avx2(float *x, long count, float scale, float max, float inverse) {
    for (long i = 0; i < count; i++) x[i] = expf(x[i] * scale - max) * inverse;
}

void myopia_gelu_forward_avx2(float *out, const float *in, long count) {
    for (long i = 0; i < count; i++) {
        float x = in[i];
        out[i] = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    }
}

void myopia_gelu_backward_avx2(float *dx, const float *x, const float *dy, long count) {
    for (long i = 0; i < count; i++) {
        float v = x[i], t = tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v));
        float dz = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * dz);
    }
}

void myopia_exp_avx512(const float *x, float *y, long count) { myopia_exp_avx2(x, y, count); }
float myopia_softmax_avx512(float *x, long count, float scale, float *max_out) {
    return myopia_softmax_avx2(x, count, scale, max_out);
}
void myopia_softmax_recompute_avx512(float *x, long count, float scale, float max, float inverse) {
    myopia_softmax_recompute_avx2(x, count, scale, max, inverse);
}
void myopia_gelu_forward_avx512(float *out, const float *in, long count) { myopia_gelu_forward_avx2(out, in, count); }
void myopia_gelu_backward_avx512(float *dx, const float *x, const float *dy, long count) {
    myopia_gelu_backward_avx2(dx, x, dy, count);
}

#endif
