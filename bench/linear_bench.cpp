// cortex_linear_bench: the dense layers of one GPT-2 124M decode step (every layer's four products and
// the LM head, through linear_forward as the model calls it) for a few rows at once, per weight type
// and layout, on random weights. Counters: tokens/s, GFLOP/s and weight GB/s, to compare with
// `cortex bench`'s limits. Attention, LayerNorm and sampling are left out on purpose: this isolates the
// matrix kernels. Beside them: the kernels' arithmetic with W in L2 (cached_matrix), and what dividing a
// step's reading into products costs (sliced_read).
//
//   build/bench/cortex_linear_bench --benchmark_filter='q8_0/rows:8'
//   build/bench/cortex_linear_bench --benchmark_filter=sliced_read --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <immintrin.h>

#include "model/kernel_table.h"
#include "model/kernels.h"
#include "model/q8_0_groups.h"
#include "model/weight_types.h"
#include "util/aligned_vector.h"
#include "util/page_arena.h"
#include "util/thread_pool.h"

namespace cortex::bench {
namespace {

using model::DType;
using model::Linear;

struct Layout {
  const char* name;
  DType dtype;
  bool in_major;
  bool q8_0_groups = false;  // Q8_0 in groups of 16 rows, as conversion on load lays it out
};
// q8_0: llama.cpp's rows, as a Q8_0 GGUF file is mapped; q8_0_groups: as a model converted on load runs.
constexpr Layout kLayouts[] = {{"f32_in_major", DType::kF32, true},
                               {"f32_out_major", DType::kF32, false},
                               {"f16", DType::kF16, false},
                               {"q8_0", DType::kQ8_0, false},
                               {"q8_0_groups", DType::kQ8_0, false, true}};

// W (`in` × `out` values, [in, out] where in_major, else [out, in]) stored as `layout` keeps it, in
// memory from allocate(bytes); the Linear without bias.
template <class Allocate>
Linear store_matrix(const std::vector<float>& w, int in, int out, bool in_major, const Layout& layout,
                    Allocate&& allocate) {
  const int64_t n = static_cast<int64_t>(w.size());
  Linear L;
  L.in = in, L.out = out, L.in_major = in_major, L.dtype = layout.dtype, L.q8_0_groups = layout.q8_0_groups;
  void* stored = allocate(L.weight_bytes());
  if (layout.q8_0_groups) {
    std::vector<std::byte> rows(model::dtype_bytes(DType::kQ8_0, n));
    model::convert_from_f32(rows.data(), DType::kQ8_0, w.data(), n);
    model::group_q8_0_rows(stored, reinterpret_cast<const model::BlockQ8_0*>(rows.data()), out, in);
  } else {
    model::convert_from_f32(stored, layout.dtype, w.data(), n);
  }
  L.weight = stored;
  return L;
}

// The matrices of GPT-2 124M in one type and layout: 12 × (qkv, proj, fc, proj) and the LM head.
class DenseStack {
 public:
  explicit DenseStack(const Layout& layout) {
    const int C = 768, V = 50257;
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.f, 0.02f);
    auto add = [&](int in, int out, bool bias, bool in_major) {
      std::vector<float> w(static_cast<size_t>(in) * out);
      for (float& v : w) v = dist(rng);
      // On 2 MiB pages where the system allows, as the model's.
      Linear L = store_matrix(w, in, out, in_major, layout, [&](size_t n) { return storage_.allocate(n); });
      const size_t bytes = L.weight_bytes();
      if (bias) {
        biases_.emplace_back(static_cast<size_t>(out), 0.01f);
        L.bias = biases_.back().data();
      }
      layers_.push_back(L);
      bytes_ += bytes;
      flops_per_row_ += 2.0 * in * out;
    };
    for (int l = 0; l < 12; ++l) {
      add(C, 3 * C, true, layout.in_major);
      add(C, C, true, layout.in_major);
      add(C, 4 * C, true, layout.in_major);
      add(4 * C, C, true, layout.in_major);
    }
    add(C, V, false, false);  // the tied LM head is [vocab, C] in every layout
  }

  // One decode step's products for `rows` rows; in and out have room for rows × 4C and rows × vocab.
  void step(float* out, const float* in, int rows, ThreadPool& pool) const {
    for (const Linear& L : layers_) model::linear_forward(out, in, L, rows, false, pool);
  }
  double bytes() const { return static_cast<double>(bytes_); }
  double flops_per_row() const { return flops_per_row_; }

 private:
  PageArena storage_;
  std::vector<std::vector<float>> biases_;
  std::vector<Linear> layers_;
  size_t bytes_ = 0;
  double flops_per_row_ = 0;
};

void BM_DecodeStep(benchmark::State& state, const Layout& layout) {
  static std::unique_ptr<DenseStack> stack;  // one type's weights alive at a time (~0.5 GB for F32)
  static const Layout* built = nullptr;
  if (built != &layout) {
    stack.reset();
    stack = std::make_unique<DenseStack>(layout);
    built = &layout;
  }
  const int rows = static_cast<int>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  model::configure_blas_threads();
  ThreadPool pool(threads);
  AlignedVector<float> in(static_cast<size_t>(rows) * 4 * 768, 0.5f), out(static_cast<size_t>(rows) * 50257);
  for (auto _ : state) {
    stack->step(out.data(), in.data(), rows, pool);
    benchmark::DoNotOptimize(out.data());
  }
  const double steps = static_cast<double>(state.iterations());
  state.counters["tok/s"] = benchmark::Counter(steps * rows, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(steps * rows * stack->flops_per_row() / 1e9, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(steps * stack->bytes() / 1e9, benchmark::Counter::kIsRate);
}

// The arithmetic alone: one matrix of 393,216 values (768 KiB in F16, within one core's L2) multiplied
// again and again on one thread, so that W comes from the cache, not from memory: [512, 768] as the
// attention and MLP-up layers' inputs are wide, or [128, 3072] as the MLP-down layer's (whose input rows
// outgrow L1 for a block of 8). Set beside decode_step's figures: how much of a step is reading W and
// how much is computing.
void BM_CachedMatrix(benchmark::State& state, const Layout& layout) {
  const int rows = static_cast<int>(state.range(0));
  const int in = static_cast<int>(state.range(1)), out = 768 * 512 / in;
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.f, 0.02f);
  std::vector<float> w(static_cast<size_t>(in) * out);
  for (float& v : w) v = dist(rng);
  std::vector<std::byte> stored;
  const Linear L = store_matrix(w, in, out, layout.in_major, layout, [&](size_t n) {
    stored.resize(n);
    return static_cast<void*>(stored.data());
  });
  model::configure_blas_threads();
  ThreadPool pool(1);
  AlignedVector<float> x(static_cast<size_t>(rows) * in, 0.5f), y(static_cast<size_t>(rows) * out);
  for (auto _ : state) {
    model::linear_forward(y.data(), x.data(), L, rows, false, pool);
    benchmark::DoNotOptimize(y.data());
  }
  const double steps = static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] =
      benchmark::Counter(steps * rows * 2.0 * in * out / 1e9, benchmark::Counter::kIsRate);
}

// What a decode step's division into products costs, apart from their arithmetic: 125 MB of [out, 768]
// Q8_0 rows (about a Q8_0 step's weights) read by two threads with fixed halves, each as four streams a
// quarter of its half apart (matvec_typed_quarters, as single-row products read), whole and in `slices`
// parts four ways, the five reads in turn in every iteration so that they share the machine's moments
// (on a shared machine reads minutes apart differ by more than what is measured here):
// - whole: one fork, each stream read from start to end;
// - forks_new_streams: a fork per slice, each slice a contiguous range of rows, so that every fork's
//   streams start at new addresses (as a step's products do);
// - forks_running_streams: a fork per slice, each slice the next rows of every stream, so that the
//   streams run on from one fork to the next;
// - one_fork_new_streams: one fork, each thread taking the slices of forks_new_streams in turn;
// - barriers_new_streams: the same with the threads meeting at a barrier after each slice (what a step
//   run as one fork with barriers between its products would do in place of a fork per product).
// Counters: each read's GB/s and its time over the whole read's.
void BM_SlicedRead(benchmark::State& state) {
  const int slices = static_cast<int>(state.range(0));
  constexpr int K = 768, O = 8 * 19200;  // rows: 8 streams of 19,200, a multiple of every slice count
  static AlignedVector<std::byte> w;
  const size_t bytes = model::dtype_bytes(DType::kQ8_0, static_cast<int64_t>(O) * K);
  if (w.empty()) {
    w.resize(bytes);
    std::vector<float> row(K, 0.01f);
    for (int o = 0; o < O; ++o)
      model::convert_from_f32(w.data() + bytes / O * o, DType::kQ8_0, row.data(), K);
  }
  const model::KernelTable& k = model::kernels();
  std::vector<float> x(K, 0.5f), y(O);
  model::Int16Blocks xb[2];
  for (auto& b : xb) k.round_to_int16_blocks(&b, x.data(), K);
  ThreadPool pool(2);
  const int Q = O / 8, c = Q / slices;  // rows per stream; per stream and slice
  auto read = [&](int t, int o0, int q, int i0, int i1) {
    k.matvec_typed_quarters(y.data(), x.data(), &xb[t], w.data(), DType::kQ8_0, K, o0, q, i0, i1);
  };
  auto slice = [&](int t, int i) { read(t, i * 8 * c + t * 4 * c, c, 0, c); };
  const std::function<void()> reads[5] = {
      [&] { pool.run([&](int t) { read(t, t * 4 * Q, Q, 0, Q); }); },
      [&] {
        for (int i = 0; i < slices; ++i) pool.run([&](int t) { slice(t, i); });
      },
      [&] {
        for (int i = 0; i < slices; ++i) pool.run([&](int t) { read(t, t * 4 * Q, Q, i * c, (i + 1) * c); });
      },
      [&] {
        pool.run([&](int t) {
          for (int i = 0; i < slices; ++i) slice(t, i);
        });
      },
      [&] {
        std::atomic<int> arrived{0};
        pool.run([&](int t) {
          for (int i = 0; i < slices; ++i) {
            slice(t, i);
            arrived.fetch_add(1, std::memory_order_acq_rel);
            while (arrived.load(std::memory_order_acquire) < 2 * (i + 1)) _mm_pause();
          }
        });
      }};
  double seconds[5] = {0, 0, 0, 0, 0};
  int turn = 0;
  for (auto _ : state) {
    for (int j = 0; j < 5; ++j) {
      const int r = (turn + j) % 5;  // each read first in turn
      const auto start = std::chrono::steady_clock::now();
      reads[r]();
      seconds[r] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    ++turn;
    benchmark::DoNotOptimize(y.data());
  }
  const char* names[5] = {"whole", "forks_new_streams", "forks_running_streams", "one_fork_new_streams",
                          "barriers_new_streams"};
  const double n = static_cast<double>(state.iterations());
  for (int r = 0; r < 5; ++r) {
    state.counters[std::string(names[r]) + "_GB/s"] = n * static_cast<double>(bytes) / seconds[r] / 1e9;
    if (r > 0) state.counters[std::string(names[r]) + "_time/whole"] = seconds[r] / seconds[0];
  }
}

const bool registered = [] {
  for (const Layout& layout : kLayouts)
    benchmark::RegisterBenchmark((std::string("decode_step/") + layout.name).c_str(), BM_DecodeStep, layout)
        ->ArgNames({"rows", "threads"})
        ->ArgsProduct({{1, 4, 8, 16, 32}, {1, 2}})
        ->UseRealTime()
        ->MinTime(0.5)
        ->Repetitions(5)
        ->ReportAggregatesOnly(true)
        ->Unit(benchmark::kMillisecond);
  for (const Layout& layout : kLayouts)
    benchmark::RegisterBenchmark((std::string("cached_matrix/") + layout.name).c_str(), BM_CachedMatrix,
                                 layout)
        ->ArgNames({"rows", "in"})
        ->ArgsProduct({{1, 4, 8, 16}, {768, 3072}})
        ->UseRealTime()
        ->MinTime(0.2)
        ->Repetitions(3)
        ->ReportAggregatesOnly(true)
        ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("sliced_read/q8_0", BM_SlicedRead)
      ->ArgNames({"slices"})
      ->Arg(12)
      ->Arg(48)
      ->Arg(192)
      ->UseRealTime()
      ->MinTime(1.0)
      ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
}  // namespace cortex::bench

BENCHMARK_MAIN();
