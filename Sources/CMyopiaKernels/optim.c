// The optimiser's pass over the flat parameter buffer: gradient clipping's scale and one AdamW
// step fused, so that weights, gradients and both moments stream through memory once.
//
// Every element gets exactly the arithmetic of the scalar loop it replaced, operation by operation
// and rounded after each (no contraction into FMAs; vsqrtps and vdivps are correctly rounded like
// their scalar forms), so the vector and scalar paths agree bit for bit:
//   g ← g·scale (when scale ≠ 1);  w ← w·decay;  m ← m + a·(g − m);  v ← v·b2 + (c·g)·g;
//   w ← w − step·(m / (√v / bc2 + eps)).
// The same pass checks that the new w, m and v are finite (x − x is 0 for a finite x and NaN
// otherwise), so training needs no separate pass over them to stop on a NaN or an overflow.
#include "CMyopiaKernels.h"

#include <math.h>

#pragma clang fp contract(off)

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2_FMA __attribute__((target("avx2,fma")))

AVX2_FMA
static int adamw_avx2(float *w, float *g, float *m, float *v, long count, const myopia_adamw_params *p) {
    const __m256 scale = _mm256_set1_ps(p->grad_scale), decay = _mm256_set1_ps(p->decay);
    const __m256 a = _mm256_set1_ps(p->lerp_weight), b2 = _mm256_set1_ps(p->beta2);
    const __m256 c = _mm256_set1_ps(p->one_minus_beta2), step = _mm256_set1_ps(p->step_size);
    const __m256 bc2 = _mm256_set1_ps(p->bias_correction2_sqrt), eps = _mm256_set1_ps(p->eps);
    const int scaled = p->grad_scale != 1.0f;
    __m256 finite = _mm256_setzero_ps();
    long i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i);
        if (scaled) {
            gi = _mm256_mul_ps(gi, scale);
            _mm256_storeu_ps(g + i, gi);
        }
        __m256 wi = _mm256_mul_ps(_mm256_loadu_ps(w + i), decay);
        __m256 mi = _mm256_loadu_ps(m + i);
        mi = _mm256_add_ps(mi, _mm256_mul_ps(a, _mm256_sub_ps(gi, mi)));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2), _mm256_mul_ps(_mm256_mul_ps(c, gi), gi));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
        wi = _mm256_sub_ps(wi, _mm256_mul_ps(step, _mm256_div_ps(mi, den)));
        _mm256_storeu_ps(w + i, wi);
        finite = _mm256_add_ps(finite, _mm256_add_ps(_mm256_sub_ps(wi, wi),
                                                     _mm256_add_ps(_mm256_sub_ps(mi, mi), _mm256_sub_ps(vi, vi))));
    }
    // Zero in every lane exactly when every element so far was finite (NaN ≠ NaN).
    int ok = _mm256_movemask_ps(_mm256_cmp_ps(finite, _mm256_setzero_ps(), _CMP_NEQ_UQ)) == 0;
    if (i < count) ok &= myopia_adamw_portable(w + i, g + i, m + i, v + i, count - i, p);
    return ok;
}
#endif

int myopia_adamw_portable(float *w, float *g, float *m, float *v, long count, const myopia_adamw_params *p) {
    const float scale = p->grad_scale, decay = p->decay, a = p->lerp_weight, b2 = p->beta2;
    const float c = p->one_minus_beta2, step = p->step_size, bc2 = p->bias_correction2_sqrt, eps = p->eps;
    const int scaled = scale != 1.0f;
    float finite = 0;
    for (long i = 0; i < count; i++) {
        float gi = g[i];
        if (scaled) {
            gi = gi * scale;
            g[i] = gi;
        }
        float wi = w[i] * decay;
        float mi = m[i] + a * (gi - m[i]);
        float vi = v[i] * b2 + c * gi * gi;
        m[i] = mi;
        v[i] = vi;
        wi = wi - step * (mi / (sqrtf(vi) / bc2 + eps));
        w[i] = wi;
        finite += (wi - wi) + ((mi - mi) + (vi - vi));
    }
    return finite == 0;
}

int myopia_adamw(float *w, float *g, float *m, float *v, long count, const myopia_adamw_params *p) {
#if defined(__x86_64__)
    if (myopia_cpu_has_avx2_fma()) return adamw_avx2(w, g, m, v, count, p);
#endif
    return myopia_adamw_portable(w, g, m, v, count, p);
}
