/* In-place SiLU for inference on CPU: silu(x) = x / (1 + exp(-x)), AVX2 + FMA (and AVX-512 where the
 * CPU has it), OpenMP.
 *
 * Built on first use by world_models/activation.py (see there for why and when). Accuracy:
 * within 3e-7 relative of the exact value, as torch's own silu (tests/test_activation.py).
 *
 * On a CPU with AVX-512F the loops take 16 floats a step instead of 8 (about a quarter faster on
 * the machine of benchmarks/results/plan_speed.md). Both paths compute every element with the same
 * operations in the same order (the same polynomial; 2^n built exactly either way; the last
 * width % 8 elements of a row by expf), so their results are bit-identical and the choice, made
 * once from the CPU's features, never changes a plan.
 *
 * exp(y) for y in [-87, 88]: n = round(y / ln 2), r = y - n ln 2 (ln 2 split in two parts so r is
 * exact), exp(r) by a degree-7 polynomial in r (|r| <= ln 2 / 2), times 2^n built in the exponent
 * bits. Inputs beyond the range saturate: exp(-x) of a large x is about 1e-38 (silu = x) and of a
 * very negative x about 1.6e38 (silu about 0). NaN inputs give NaN (x is the numerator).
 */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>

/* The constants of exp_avx2 and exp_avx512, in one place: the two paths are bit-identical only while
 * they share them. ln 2 = LN2_HI + LN2_LO (LN2_HI has few bits, so n * LN2_HI is exact); P0..P5 are
 * the coefficients of p(r) = (exp(r) - 1 - r) / r^2, P0 the constant term. */
#define EXP_MIN (-87.0f)
#define EXP_MAX 88.0f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)
#define P0 5.0000001201e-1f
#define P1 1.6666665459e-1f
#define P2 4.1665795894e-2f
#define P3 8.3334519073e-3f
#define P4 1.3981999507e-3f
#define P5 1.9875691500e-4f

static inline __m256 exp_avx2(__m256 y) {
    y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(EXP_MIN)), _mm256_set1_ps(EXP_MAX));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), y);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    /* exp(r) = 1 + r + r^2 * p(r), p the Taylor-like minimax coefficients of (exp(r) - 1 - r) / r^2 */
    __m256 p = _mm256_set1_ps(P5);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P0));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

#define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __m512 exp_avx512(__m512 y) {  /* exp_avx2's operations, 16 lanes */
    y = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(EXP_MIN)), _mm512_set1_ps(EXP_MAX));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), y);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(P5);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P0));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);  /* p * 2^n, exact as exp_avx2's product with the built power */
}

AVX512 static inline __m512 silu_avx512(__m512 v) {
    return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
}

/* x[0:n) in place, 16 lanes a step while they last, then 8 (masked), then expf: as silu_span. */
AVX512 static void silu_span_avx512(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm512_storeu_ps(x + i, silu_avx512(_mm512_loadu_ps(x + i)));
    }
    if (i + 8 <= n) {
        _mm512_mask_storeu_ps(x + i, 0xFF, silu_avx512(_mm512_maskz_loadu_ps(0xFF, x + i)));
        i += 8;
    }
    for (; i < n; ++i) {
        x[i] = x[i] / (1.0f + expf(-x[i]));
    }
}

AVX512 static void bias_silu_rows_avx512(float *x, const float *b, int64_t rows, int64_t width) {
    for (int64_t r = 0; r < rows; ++r) {
        float *row = x + r * width;
        int64_t i = 0;
        for (; i + 16 <= width; i += 16) {
            _mm512_storeu_ps(row + i, silu_avx512(_mm512_add_ps(_mm512_loadu_ps(row + i), _mm512_loadu_ps(b + i))));
        }
        if (i + 8 <= width) {
            const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(0xFF, row + i), _mm512_maskz_loadu_ps(0xFF, b + i));
            _mm512_mask_storeu_ps(row + i, 0xFF, silu_avx512(v));
            i += 8;
        }
        for (; i < width; ++i) {
            const float v = row[i] + b[i];
            row[i] = v / (1.0f + expf(-v));
        }
    }
}

/* 512 (AVX-512F) or 256 (AVX2): the vector width the loops use; the CPU's widest unless set. */
static int isa_bits = 0;

int rehearse_silu_isa(void) {
    if (isa_bits == 0) {
        isa_bits = __builtin_cpu_supports("avx512f") ? 512 : 256;
    }
    return isa_bits;
}

/* Force 256 (to compare the two paths); 512 is taken only where the CPU has AVX-512F. Returns the width now in use. */
int rehearse_silu_set_isa(int bits) {
    isa_bits = (bits == 512 && __builtin_cpu_supports("avx512f")) ? 512 : 256;
    return isa_bits;
}

/* Inside a parallel region: this thread's contiguous share [begin, end) of `total` items. */
static void thread_share(int64_t total, int64_t *begin, int64_t *end) {
    const int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
    *begin = total * t / k;
    *end = total * (t + 1) / k;
}

static void silu_span_avx2(float *x, int64_t begin, int64_t end) {
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

/* silu(x + b) in place on rows x[0:n) of width `width`, b[0:width) added to every row. */
static void bias_silu_rows_avx2(float *x, const float *b, int64_t rows, int64_t width) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (int64_t r = 0; r < rows; ++r) {
        float *row = x + r * width;
        int64_t i = 0;
        for (; i + 8 <= width; i += 8) {
            const __m256 v = _mm256_add_ps(_mm256_loadu_ps(row + i), _mm256_loadu_ps(b + i));
            _mm256_storeu_ps(row + i, _mm256_div_ps(v, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(zero, v)))));
        }
        for (; i < width; ++i) {
            const float v = row[i] + b[i];
            row[i] = v / (1.0f + expf(-v));
        }
    }
}

static void silu_span(float *x, int64_t begin, int64_t end) {
    if (rehearse_silu_isa() == 512) {
        silu_span_avx512(x + begin, end - begin);
    } else {
        silu_span_avx2(x, begin, end);
    }
}

static void bias_silu_rows(float *x, const float *b, int64_t rows, int64_t width) {
    if (rehearse_silu_isa() == 512) {
        bias_silu_rows_avx512(x, b, rows, width);
    } else {
        bias_silu_rows_avx2(x, b, rows, width);
    }
}

/* x: (groups, rows, width) contiguous floats, overwritten with silu(x + bias[g]) where bias is
 * (groups, width): the bias add and activation of a batched linear layer in one pass. Rows are
 * split over the threads in contiguous spans; the result does not depend on the thread count. */
void rehearse_bias_silu_(float *x, const float *bias, int64_t groups, int64_t rows, int64_t width, int threads) {
    const int64_t total = groups * rows;
    if (threads < 2 || total * width < 32768) {
        for (int64_t g = 0; g < groups; ++g) {
            bias_silu_rows(x + g * rows * width, bias + g * width, rows, width);
        }
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int64_t r, end;
        thread_share(total, &r, &end);
        while (r < end) {  /* the span may cross groups: run to the end of the group, then the next */
            const int64_t g = r / rows, stop = (g + 1) * rows < end ? (g + 1) * rows : end;
            bias_silu_rows(x + r * width, bias + g * width, stop - r, width);
            r = stop;
        }
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
        int64_t begin, end;
        thread_share(blocks, &begin, &end);
        silu_span(x, begin * 8, end * 8 < n ? end * 8 : n);
    }
}
