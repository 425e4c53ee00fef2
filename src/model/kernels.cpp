#include "model/kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CORTEX_AVX2 1
#endif

namespace cortex::model {

void configure_blas_threads() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void layernorm_forward(float* out, const float* in, const float* weight, const float* bias, int rows, int cols,
                       float eps) {
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

void gelu_forward(float* x, size_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (size_t i = 0; i < n; ++i) {
    float v = x[i];
    x[i] = 0.5f * v * (1.f + std::tanh(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
  }
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

// y[o0:o1] (+)= x · W[:, o0:o1] for W stored [in, out]: streams rows of W, 4 at a time.
void matvec_in_major(float* y, const float* x, const float* w, int in, int out, int o0, int o1) {
  const int n = o1 - o0;
  float* yy = y + o0;
  int i = 0;
  for (; i + 4 <= in; i += 4) {
    const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
    const float* w0 = w + static_cast<size_t>(i) * out + o0;
    const float* w1 = w0 + out;
    const float* w2 = w1 + out;
    const float* w3 = w2 + out;
    for (int o = 0; o < n; ++o) yy[o] += x0 * w0[o] + x1 * w1[o] + x2 * w2[o] + x3 * w3[o];
  }
  for (; i < in; ++i) {
    const float xi = x[i];
    const float* wi = w + static_cast<size_t>(i) * out + o0;
    for (int o = 0; o < n; ++o) yy[o] += xi * wi[o];
  }
}

// y[o] (+)= dot(x, W[o, :]) for W stored [out, in], o in [o0, o1).
void matvec_out_major(float* y, const float* x, const float* w, int in, int o0, int o1) {
  for (int o = o0; o < o1; ++o) y[o] += dot_product(x, w + static_cast<size_t>(o) * in, in);
}

}  // namespace

void linear_forward(float* out, const float* in, const Linear& L, int rows, bool accumulate, ThreadPool& pool) {
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
  if (rows == 1) {
    pool.parallel_for(
        static_cast<size_t>(O),
        [&](size_t o0, size_t o1) {
          init(o0, o1);
          if (L.in_major)
            matvec_in_major(out, in, L.weight, I, O, static_cast<int>(o0), static_cast<int>(o1));
          else
            matvec_out_major(out, in, L.weight, I, static_cast<int>(o0), static_cast<int>(o1));
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
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, I, 1.f, in, I, L.weight + o0, O, 1.f,
                      out + o0, O);
        } else {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, I, 1.f, in, I,
                      L.weight + o0 * static_cast<size_t>(I), I, 1.f, out + o0, O);
        }
      },
      kAlign);
}

}  // namespace cortex::model
