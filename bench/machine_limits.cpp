#include "bench/machine_limits.h"

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/kernels.h"
#include "util/clock.h"
#include "util/thread_pool.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace cortex::bench {

namespace {
// Sums n floats (n a multiple of 1024) as four interleaved sequential streams: several streams per core
// keep more cache-line fills in flight than one, as the model's kernels do, so this finds the peak.
float sum_range(const float* p, size_t n) {
  const size_t q = n / 4;
  const float *p0 = p, *p1 = p + q, *p2 = p + 2 * q, *p3 = p + 3 * q;
#if defined(__AVX2__)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
         a3 = _mm256_setzero_ps();
  for (size_t i = 0; i < q; i += 16) {
    a0 = _mm256_add_ps(a0, _mm256_add_ps(_mm256_load_ps(p0 + i), _mm256_load_ps(p0 + i + 8)));
    a1 = _mm256_add_ps(a1, _mm256_add_ps(_mm256_load_ps(p1 + i), _mm256_load_ps(p1 + i + 8)));
    a2 = _mm256_add_ps(a2, _mm256_add_ps(_mm256_load_ps(p2 + i), _mm256_load_ps(p2 + i + 8)));
    a3 = _mm256_add_ps(a3, _mm256_add_ps(_mm256_load_ps(p3 + i), _mm256_load_ps(p3 + i + 8)));
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  float s = 0;
  for (float v : out) s += v;
  return s;
#else
  float s = 0;
  for (size_t i = 0; i < q; ++i) s += p0[i] + p1[i] + p2[i] + p3[i];
  return s;
#endif
}

}  // namespace

double measure_read_bandwidth(int threads, size_t bytes) {
  const size_t n = std::max<size_t>(bytes / sizeof(float) / 1024 * 1024, 1 << 20);
  auto deleter = [](float* p) { std::free(p); };
  std::unique_ptr<float, decltype(deleter)> buf(
      static_cast<float*>(std::aligned_alloc(64, n * sizeof(float))), deleter);
  ThreadPool pool(threads);
  pool.parallel_for(
      n, [&](size_t b, size_t e) { std::fill(buf.get() + b, buf.get() + e, 1.f); }, 1024);
  double best = 0;
  volatile float sink = 0;
  for (int rep = 0; rep < 6; ++rep) {
    std::vector<float> partial(static_cast<size_t>(pool.size()));
    auto start = SteadyClock::now();
    pool.run([&](int t) {
      size_t per = n / static_cast<size_t>(pool.size()) / 1024 * 1024;
      size_t b = per * static_cast<size_t>(t), e = t + 1 == pool.size() ? n : b + per;
      partial[static_cast<size_t>(t)] = sum_range(buf.get() + b, e - b);
    });
    double s = seconds_since(start);
    for (float p : partial) sink = sink + p;
    best = std::max(best, static_cast<double>(n * sizeof(float)) / s);
  }
  return best;
}

double measure_sgemm_flops(int threads) {
  model::configure_blas_threads();
  ThreadPool pool(threads);
  const int M = 512, K = 768, N = 3072;  // the MLP's first product for a batch of 512 tokens
  std::vector<float> a(static_cast<size_t>(M) * K, 0.5f), b(static_cast<size_t>(K) * N, 0.25f),
      c(static_cast<size_t>(M) * N);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto start = SteadyClock::now();
    pool.parallel_for(
        N,
        [&](size_t n0, size_t n1) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, static_cast<int>(n1 - n0), K, 1.f,
                      a.data(), K, b.data() + n0, N, 0.f, c.data() + n0, N);
        },
        16);
    best = std::max(best, 2.0 * M * N * K / seconds_since(start));
  }
  return best;
}

}  // namespace cortex::bench
