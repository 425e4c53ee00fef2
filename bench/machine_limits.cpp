#include "bench/machine_limits.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/kernels.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/page_arena.h"
#include "util/spin_wait.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define CORTEX_PROBE_AVX2 1
#endif

namespace cortex::bench {

namespace {
// Sums n floats (n a multiple of 1024) as four interleaved sequential streams: several streams per core
// keep more cache-line fills in flight than one, as the model's kernels do, so this finds the peak.
// The buffer lies on 2 MiB pages where the system gives them, as the model's converted weights do. The
// AVX2 loop prefetches each stream 1 KiB ahead into L1 when asked (ReadWay::kPrefetched): without the
// pages or the prefetching, the model's F32 and F16 decode (which prefetched so) once read faster than
// this probe (104 % and 114 % of its figure); since 2026-12-05 the model's single-row products leave it
// to the hardware, which on the Zen 5 cores read faster at some moments and slower at others.
float sum_range_portable(const float* p, size_t n) {
  const size_t q = n / 4;
  const float *p0 = p, *p1 = p + q, *p2 = p + 2 * q, *p3 = p + 3 * q;
  float s = 0;
  for (size_t i = 0; i < q; ++i) s += p0[i] + p1[i] + p2[i] + p3[i];
  return s;
}

#if defined(CORTEX_PROBE_AVX2)
// The same with 8-wide loads, on CPUs with AVX2 (the scalar loop may not keep up with memory).
template <bool Prefetch>
__attribute__((target("avx2"))) float sum_range_avx2(const float* p, size_t n) {
  const size_t q = n / 4;
  const float *p0 = p, *p1 = p + q, *p2 = p + 2 * q, *p3 = p + 3 * q;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
         a3 = _mm256_setzero_ps();
  constexpr size_t kAhead = 256;
  for (size_t i = 0; i < q; i += 16) {
    if (Prefetch && i + kAhead < q)
      for (const float* s : {p0, p1, p2, p3})
        _mm_prefetch(reinterpret_cast<const char*>(s + i + kAhead), _MM_HINT_T0);
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
}
#endif

float sum_range(const float* p, size_t n, ReadWay way) {
#if defined(CORTEX_PROBE_AVX2)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return way == ReadWay::kPrefetched ? sum_range_avx2<true>(p, n) : sum_range_avx2<false>(p, n);
#endif
  (void)way;
  return sum_range_portable(p, n);
}

constexpr int kM = 512, kK = 768, kN = 3072;  // the MLP's first product for a batch of 512 tokens
}  // namespace

struct MachineLimits::Buffers {
  std::unique_ptr<PageArena> arena;  // holds `stream`, replaced when a larger one is needed
  float* stream = nullptr;
  size_t stream_floats = 0;
  std::vector<float> a, b, c;  // sgemm operands [kM, kK], [kK, kN], [kM, kN]
};

MachineLimits::MachineLimits(int threads) : pool_(threads), buffers_(std::make_unique<Buffers>()) {
  model::configure_blas_threads();
  buffers_->a.assign(static_cast<size_t>(kM) * kK, 0.5f);
  buffers_->b.assign(static_cast<size_t>(kK) * kN, 0.25f);
  buffers_->c.assign(static_cast<size_t>(kM) * kN, 0.f);
}

void MachineLimits::set_read_bytes(size_t bytes) {
  const size_t floats = std::max<size_t>(bytes / sizeof(float) / 1024 * 1024, 1 << 20);
  Buffers& m = *buffers_;
  if (floats > m.stream_floats) {
    // The old pages go back before the new ones are taken; until the new buffer is written, none is held
    // (an allocation that throws leaves nothing to read).
    floats_ = 0, m.stream = nullptr, m.stream_floats = 0;
    m.arena.reset();
    m.arena = std::make_unique<PageArena>();
    float* s = static_cast<float*>(m.arena->allocate(floats * sizeof(float)));
    pool_.parallel_for(
        floats, [&](size_t b, size_t e) { std::fill(s + b, s + e, 1.f); }, 1024);
    m.stream = s, m.stream_floats = floats;
  }
  floats_ = floats;
}

MachineLimits::~MachineLimits() = default;

size_t MachineLimits::allocated_bytes() const {
  return buffers_->stream_floats * sizeof(float);
}

double MachineLimits::timed_read(ThreadPool& pool, ReadWay way) {
  if (floats_ == 0) throw invalid_argument("MachineLimits: no buffer to read (set_read_bytes)");
  const float* buf = buffers_->stream;
  const size_t n = floats_;
  // Pieces of 2 MiB (four streams of 512 KiB), each thread's share of them contiguous: a thread done
  // with its share takes pieces from the back of the other's, as the model's products do, so that a
  // thread slowed down for a while does not set the read's time alone (halves of fixed size did: one
  // thread then often idled for a third of the read, long enough to fall asleep before the next step).
  constexpr size_t kPieceFloats = size_t{1} << 19;
  const size_t pieces = (n + kPieceFloats - 1) / kPieceFloats, threads = static_cast<size_t>(pool.size());
  const auto first = [&](size_t share) { return pieces * share / threads; };
  std::vector<float> partial(threads);
  auto start = SteadyClock::now();
  pool.run_shares([&](int t) { return first(static_cast<size_t>(t) + 1) - first(static_cast<size_t>(t)); },
                  [&](int thread, int share, uint32_t piece) {
                    const size_t b = (first(static_cast<size_t>(share)) + piece) * kPieceFloats;
                    partial[static_cast<size_t>(thread)] +=
                        sum_range(buf + b, std::min(n, b + kPieceFloats) - b, way);
                  });
  const double seconds = seconds_since(start);
  last_read_sum_ = 0;
  for (float p : partial) last_read_sum_ += p;
  return seconds;
}

double MachineLimits::timed_round_trip(ThreadPool& pool, int trips) {
  if (pool.size() < 2 || trips < 1) return 0;
  // `ball` counts the hand-overs: odd on its way to thread 1, even back at thread 0. Each waits as the
  // pool's threads do (spin_wait.h).
  struct alignas(64) Line {
    std::atomic<int> value{0};
  };
  Line ball, ready;
  auto await = [](const std::atomic<int>& line, int value) {
    for (int spins = 0; line.load(std::memory_order_acquire) != value; ++spins) spin_pause(spins);
  };
  double seconds = 0;
  pool.run([&](int t) {
    if (t == 1) {
      ready.value.store(1, std::memory_order_release);
      for (int i = 0; i < trips; ++i) {
        await(ball.value, 2 * i + 1);
        ball.value.store(2 * i + 2, std::memory_order_release);
      }
    } else if (t == 0) {
      await(ready.value, 1);  // the fork's wake-up is not timed
      const auto start = SteadyClock::now();
      for (int i = 0; i < trips; ++i) {
        ball.value.store(2 * i + 1, std::memory_order_release);
        await(ball.value, 2 * i + 2);
      }
      seconds = seconds_since(start) / trips;
    }
  });
  return seconds;
}

double MachineLimits::read_bandwidth(int passes) {
  double best = 0;
  for (int rep = 0; rep < passes; ++rep)
    for (ReadWay way : kReadWays)
      best = std::max(best, static_cast<double>(buffer_bytes()) / timed_read(pool_, way));
  return best;
}

double MachineLimits::sgemm_flop() {
  return 2.0 * kM * kN * kK;
}

double MachineLimits::timed_sgemm(ThreadPool& pool) {
  Buffers& m = *buffers_;
  auto start = SteadyClock::now();
  pool.parallel_for(
      kN,
      [&](size_t n0, size_t n1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kM, static_cast<int>(n1 - n0), kK, 1.f,
                    m.a.data(), kK, m.b.data() + n0, kN, 0.f, m.c.data() + n0, kN);
      },
      16);
  return seconds_since(start);
}

double MachineLimits::sgemm_flops(int passes) {
  double best = 0;
  for (int rep = 0; rep < passes; ++rep) best = std::max(best, sgemm_flop() / timed_sgemm(pool_));
  return best;
}

}  // namespace cortex::bench
