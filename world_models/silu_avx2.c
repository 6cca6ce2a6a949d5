/* In-place SiLU for inference on CPU: silu(x) = x / (1 + exp(-x)), AVX2 + FMA, OpenMP.
 *
 * Built on first use by world_models/activation.py (see there for why and when). Accuracy:
 * within 3e-7 relative of the exact value, as torch's own silu (tests/test_activation.py).
 *
 * exp(y) for y in [-87, 88]: n = round(y / ln 2), r = y - n ln 2 (ln 2 split in two parts so r is
 * exact), exp(r) by a degree-7 polynomial in r (|r| <= ln 2 / 2), times 2^n built in the exponent
 * bits. Inputs beyond the range saturate: exp(-x) of a large x is about 1e-38 (silu = x) and of a
 * very negative x about 1.6e38 (silu about 0). NaN inputs give NaN (x is the numerator).
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

static inline __m256 exp_avx2(__m256 y) {
    y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), y);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    /* exp(r) = 1 + r + r^2 * p(r), p the Taylor-like minimax coefficients of (exp(r) - 1 - r) / r^2 */
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

static void silu_span(float *x, int64_t begin, int64_t end) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(zero, v)))));
    }
    for (; i < end; ++i) {
        x[i] = x[i] / (1.0f + expf(-x[i]));
    }
}

/* x: n contiguous floats, overwritten; threads: how many to use (torch's intra-op thread count).
 * Each thread takes one contiguous span, a multiple of 8 floats, so results do not depend on it. */
void rehearse_silu_(float *x, int64_t n, int threads) {
    const int64_t min_span = 16384;
    if (threads < 2 || n < 2 * min_span) {
        silu_span(x, 0, n);
        return;
    }
    const int64_t blocks = (n + 7) / 8;
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        extern int omp_get_thread_num(void);
        extern int omp_get_num_threads(void);
        const int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
#else
        const int64_t t = 0, k = 1;
#endif
        const int64_t begin = blocks * t / k * 8, end = blocks * (t + 1) / k * 8;
        silu_span(x, begin, end < n ? end : n);
    }
}
