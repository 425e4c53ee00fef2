#include "model/kernels.h"

#include "model/small_batch_gemm.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CORTEX_AVX2 1
#endif

namespace cortex::model {

void configure_blas_threads() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void layernorm_forward(float* out, const float* in, const float* weight, const float* bias, int rows,
                       int cols, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* x = in + static_cast<size_t>(r) * cols;
    float* y = out + static_cast<size_t>(r) * cols;
    float mean = 0.f;
    for (int i = 0; i < cols; ++i) mean += x[i];
    mean /= static_cast<float>(cols);
    float var = 0.f;
    for (int i = 0; i < cols; ++i) {
      float d = x[i] - mean;
      var += d * d;
    }
    var /= static_cast<float>(cols);
    const float rstd = 1.f / std::sqrt(var + eps);
    for (int i = 0; i < cols; ++i) y[i] = (x[i] - mean) * rstd * weight[i] + bias[i];
  }
}

#ifdef CORTEX_AVX2
namespace {
// exp(x) for 8 floats: range reduction to x = k·ln2 + r, a degree-6 polynomial for e^r (Cephes' expf
// coefficients, relative error ~1e-7), then 2^k by adding k to the exponent bits.
inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
}  // namespace
#endif

// gelu(x) = 0.5·x·(1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi)·(x + 0.044715·x³).
void gelu_forward(float* x, size_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  size_t i = 0;
#ifdef CORTEX_AVX2
  const __m256 c = _mm256_set1_ps(-2.f * kSqrt2OverPi), a = _mm256_set1_ps(0.044715f),
               one = _mm256_set1_ps(1.f);
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 u = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(a, v), _mm256_mul_ps(v, v), v));
    _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, exp_avx2(u))));
  }
#endif
  for (; i < n; ++i) {
    float v = x[i];
    x[i] = v / (1.f + std::exp(-2.f * kSqrt2OverPi * (v + 0.044715f * v * v * v)));
  }
}

float exp_and_sum(float* x, int n, float shift) {
  int i = 0;
  float sum = 0.f;
#ifdef CORTEX_AVX2
  __m256 acc = _mm256_setzero_ps();
  const __m256 s = _mm256_set1_ps(shift);
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float l : lanes) sum += l;
#endif
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

float dot_product(const float* a, const float* b, int n) {
  int i = 0;
  float sum = 0.f;
#ifdef CORTEX_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  acc0 = _mm256_add_ps(acc0, acc1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  sum = _mm_cvtss_f32(s);
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy(float* out, const float* in, float w, int n) {
  for (int i = 0; i < n; ++i) out[i] += w * in[i];
}

namespace {

// y[0:out] += x[i0:i1] · W[i0:i1, :] for W stored [in, out]: streams rows i0..i1 of W contiguously,
// four at a time, into an accumulator that stays in L1.
void matvec_in_major_rows(float* __restrict y, const float* __restrict x, const float* __restrict w, int out,
                          int i0, int i1) {
  int i = i0;
  for (; i + 4 <= i1; i += 4) {
    const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
    const float* __restrict w0 = w + static_cast<size_t>(i) * out;
    const float* __restrict w1 = w0 + out;
    const float* __restrict w2 = w1 + out;
    const float* __restrict w3 = w2 + out;
    for (int o = 0; o < out; ++o) y[o] += x0 * w0[o] + x1 * w1[o] + x2 * w2[o] + x3 * w3[o];
  }
  for (; i < i1; ++i) {
    const float xi = x[i];
    const float* __restrict wi = w + static_cast<size_t>(i) * out;
    for (int o = 0; o < out; ++o) y[o] += xi * wi[o];
  }
}

// y[o] (+)= dot(x, W[o, :]) for W stored [out, in], o in [o0, o1): four rows at a time, so each load
// of x serves four weight streams.
void matvec_out_major(float* y, const float* x, const float* w, int in, int o0, int o1) {
  int o = o0;
#ifdef CORTEX_AVX2
  if (in % 8 == 0) {
    for (; o + 4 <= o1; o += 4) {
      const float* w0 = w + static_cast<size_t>(o) * in;
      const float* w1 = w0 + in;
      const float* w2 = w1 + in;
      const float* w3 = w2 + in;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
             a3 = _mm256_setzero_ps();
      for (int i = 0; i < in; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0 + i), a0);
        a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1 + i), a1);
        a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2 + i), a2);
        a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3 + i), a3);
      }
      // Horizontal sums of the four accumulators at once.
      __m256 s01 = _mm256_hadd_ps(a0, a1), s23 = _mm256_hadd_ps(a2, a3);
      __m256 s = _mm256_hadd_ps(s01, s23);
      __m128 r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
      _mm_storeu_ps(y + o, _mm_add_ps(_mm_loadu_ps(y + o), r));
    }
  }
#endif
  for (; o < o1; ++o) y[o] += dot_product(x, w + static_cast<size_t>(o) * in, in);
}

}  // namespace

void linear_forward(float* out, const float* in, const Linear& L, int rows, bool accumulate,
                    ThreadPool& pool) {
  const int O = L.out, I = L.in;
  // Initialise the output with the bias (added to what is there when accumulating).
  auto init = [&](size_t o0, size_t o1) {
    for (int r = 0; r < rows; ++r) {
      float* y = out + static_cast<size_t>(r) * O;
      if (!accumulate) std::fill(y + o0, y + o1, 0.f);
      if (L.bias != nullptr)
        for (size_t o = o0; o < o1; ++o) y[o] += L.bias[o];
    }
  };
  constexpr size_t kAlign = 16;
  if (rows == 1 && L.in_major) {
    // Split the input rows: each thread streams one contiguous part of W into its own accumulator
    // (thread 0 into out), then the partial sums are added. Column splits would interleave the threads'
    // reads within every row and defeat the hardware prefetchers.
    const int threads = pool.size();
    // The caller's buffer, reused across calls (this runs dozens of times per decoded token). Workers
    // must reach it through this pointer: naming a thread_local inside the task would give each worker
    // its own, empty one.
    thread_local std::vector<float> partial_buffer;
    partial_buffer.assign(static_cast<size_t>(threads - 1) * O, 0.f);
    float* const partial = partial_buffer.data();
    pool.run([&](int t) {
      const int per = (I / threads + 3) / 4 * 4;
      const int i0 = std::min(I, per * t), i1 = t + 1 == threads ? I : std::min(I, i0 + per);
      float* acc = t == 0 ? out : partial + static_cast<size_t>(t - 1) * O;
      if (t == 0) init(0, static_cast<size_t>(O));
      matvec_in_major_rows(acc, in, L.weight, O, i0, i1);
    });
    for (int t = 1; t < threads; ++t) {
      const float* p = partial + static_cast<size_t>(t - 1) * O;
      for (int o = 0; o < O; ++o) out[o] += p[o];
    }
    return;
  }
  if (rows == 1) {
    pool.parallel_for(
        static_cast<size_t>(O),
        [&](size_t o0, size_t o1) {
          init(o0, o1);
          matvec_out_major(out, in, L.weight, I, static_cast<int>(o0), static_cast<int>(o1));
        },
        kAlign);
    return;
  }
  if (rows <= kSmallBatchRows) {
    pool.parallel_for(
        static_cast<size_t>(O),
        [&](size_t o0, size_t o1) {
          init(o0, o1);
          if (L.in_major)
            small_batch_gemm_in_major(out, in, L.weight, rows, I, O, static_cast<int>(o0),
                                      static_cast<int>(o1));
          else
            small_batch_gemm_out_major(out, in, L.weight, rows, I, O, static_cast<int>(o0),
                                       static_cast<int>(o1));
        },
        kAlign);
    return;
  }
  pool.parallel_for(
      static_cast<size_t>(O),
      [&](size_t o0, size_t o1) {
        init(o0, o1);
        const int n = static_cast<int>(o1 - o0);
        if (L.in_major) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, I, 1.f, in, I, L.weight + o0, O,
                      1.f, out + o0, O);
        } else {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, I, 1.f, in, I,
                      L.weight + o0 * static_cast<size_t>(I), I, 1.f, out + o0, O);
        }
      },
      kAlign);
}

}  // namespace cortex::model
