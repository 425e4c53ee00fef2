#include "model/kernels.h"

#include <cblas.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "model/blas_cores.h"
#include "util/aligned_vector.h"
#include "util/error.h"

namespace cortex::model {

void configure_blas_threads() {
  static std::once_flag once;
  std::call_once(once, [] {
    openblas_set_num_threads(1);
    if (const std::string warning = blas_core_warning(); !warning.empty()) spdlog::warn("{}", warning);
  });
}

void layernorm_forward(float* out, const float* in, const float* weight, const float* bias, int rows,
                       int cols, float eps) {
  kernels().layernorm_forward(out, in, weight, bias, rows, cols, eps);
}

void gelu_forward(float* x, size_t n) {
  kernels().gelu_forward(x, n);
}

float exp_and_sum(float* x, int n, float shift) {
  return kernels().exp_and_sum(x, n, shift);
}

float dot_product(const float* a, const float* b, int n) {
  return kernels().dot_product(a, b, n);
}

void attention_heads(float* out, const float* q, const CachedRows<float>& cache, int h0, int heads, int n,
                     int D, float scale, float* scores) {
  kernels().attention_heads(out, q, cache, h0, heads, n, D, scale, scores);
}

void attention_heads(float* out, const float* q, const CachedRows<uint16_t>& cache, int h0, int heads, int n,
                     int D, float scale, float* scores) {
  kernels().attention_heads_f16(out, q, cache, h0, heads, n, D, scale, scores);
}

void attention_rows(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                    const CachedRows<float>& cache, int h0, int heads, int n0, int D, float scale,
                    float* scores) {
  kernels().attention_rows(out, out_stride, q, q_stride, m, cache, h0, heads, n0, D, scale, scores);
}

void attention_rows(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                    const CachedRows<uint16_t>& cache, int h0, int heads, int n0, int D, float scale,
                    float* scores) {
  kernels().attention_rows_f16(out, out_stride, q, q_stride, m, cache, h0, heads, n0, D, scale, scores);
}

// Below this many output columns per thread (rows of W shorter than 4 KiB, one page), batched products
// split W by rows across the threads rather than by columns.
constexpr int kMinColumnsPerThread = 1024;

// Most bytes of W converted to F32 at a time per thread in prompt processing (linear_forward below).
constexpr size_t kPrefillPanelBytes = size_t{8} << 20;

// Column splits (threads' parts, pieces) fall on multiples of this (see linear_forward).
constexpr size_t kColumnAlign = 16;

// Bytes of W per stream in one piece of a single-row product (below): a piece (four streams) is ~512
// KiB, ~15 us of reading on one core. On Zen 5 cores, a decode step's products took 1–3 % less time than
// with 32 KiB per stream (and 5–12 % less than with 8 KiB) in runs alternating step by step, and about as
// long as with 256 KiB; one piece per thread (fixed halves) took 0–5 % longer. A small layer's share is
// then one or a few pieces (Q8_0's attention projection: one per thread, so nothing to take there).
constexpr size_t kPieceStreamBytes = 128 << 10;

// Bytes of W in one piece of a single-row product of Q8_0 weights in groups (below; both streams
// together): as much as a piece of four streams. Read as one stream, with 256 KiB to 2 MiB a decode step
// took as long (0.98–1.01×, alternating step by step at 64–68 GB/s).
constexpr size_t kGroupPieceBytes = 512 << 10;

// Batched products of F16 and Q8_0 weights of up to this many rows (dot-product tiles, whose only
// preparation per call is a copy of the input rows) run in pieces of kBatchPieceValues values of W
// (512 KiB of F16, 272 KiB of Q8_0; for_pieces below). Alternating runs of cortex_linear_bench's decode
// steps of 8 rows, best of 4–5: F16 3–9 % and Q8_0 6–8 % less time than fixed halves, in three sets.
// F32's LM head (stored [out, in]) read 7 % slower in pieces of 256 KiB and mixed in pieces of 1 MiB
// (+10 % to -16 %), and stays in fixed halves.
constexpr int kPieceRowsTyped = 16;
constexpr size_t kBatchPieceValues = size_t{256} << 10;

// Calls fn(a, b) for pieces [a, b) of [0, n) that cover it: each thread's part (ThreadPool::part, `align`)
// in pieces of `piece` (a multiple of align), taken as ThreadPool::run_shares hands them out. A thread
// whose core another tenant's work slowed is helped by the other, where fixed halves left the faster one
// waiting: in a profile of a server at 8 clients, each thread spent ~6 % of its time waiting for the
// other at the end of products.
template <class F>
void for_pieces(ThreadPool& pool, size_t n, size_t piece, size_t align, F&& fn) {
  if (pool.size() == 1) return fn(size_t{0}, n);  // nothing to share: one call, one copy of the input
  piece = std::max(align, piece / align * align);
  pool.run_shares(
      [&](int t) {
        const auto [b, e] = pool.part(n, t, align);
        return (e - b + piece - 1) / piece;
      },
      [&](int, int t, uint32_t p) {
        const auto [b, e] = pool.part(n, t, align);
        const size_t a = b + p * piece;
        fn(a, std::min(e, a + piece));
      });
}

namespace {
// The calling thread's buffer for x rounded to int16 blocks. A thread_local declared in linear_forward
// itself would not do: the pool's workers run only its lambdas, never pass its declaration, and their
// copies would then never be destroyed (LeakSanitizer reports their buffers at exit).
Int16Blocks& thread_x_blocks() {
  thread_local Int16Blocks blocks;
  return blocks;
}
}  // namespace

// One row, W stored [out, in] (any type): a share of W's rows per thread (as ThreadPool::part splits
// them, or in proportion to the threads' speeds where the caller gives them), each read as four streams a
// quarter apart (matvec_typed_quarters) in pieces of `grain_` rows per stream, or for Q8_0 in groups as
// two streams a half apart read in lockstep (q8_0_group_pair_products) in pieces of `grain_` groups per
// stream; a thread done with its share takes pieces from the back of another's (ThreadPool::Shares).
// Q8_0 groups as two streams in lockstep rather than one front to back: read alone by two threads, groups
// of 768 values came 10–20 % faster and of 3072 values up to 20 %; decode steps, with the shares following
// the threads' speeds as well, 1.02–1.08× the fraction of the reads' rate in three comparisons with the
// build before (docs/performance.md, 2026-12-06). Earlier, one stream against four streams taking whole
// groups in turn: 0.95–0.97× the time (two streams one after the other in each piece, 1.05–1.08×).
// With fixed shares, one thread waited 5–10 % of each product for the other on this shared machine. Each
// output column is one row's dot product, whichever thread computes it: the results do not depend on who
// took what.
OneRowProduct::OneRowProduct(float* out, const Linear& L, bool accumulate, Activation activation, int threads,
                             std::span<const float> split)
    : out_(out),
      L_(L),
      accumulate_(accumulate),
      activation_(activation),
      threads_(threads),
      split_(split),
      grain_(std::max(
          1,
          static_cast<int>(
              L.q8_0_groups ? kGroupPieceBytes / 2 / std::max<size_t>(1, q8_0_group_bytes(kQ8GroupRows, L.in))
                            : kPieceStreamBytes / std::max<size_t>(1, dtype_bytes(L.dtype, L.in))))) {
  if (L.in_major) throw invalid_argument("OneRowProduct: W must be stored [out, in]");
  if (!split.empty() &&
      (split.size() != static_cast<size_t>(threads) ||
       !std::all_of(split.begin(), split.end(), [](float v) { return std::isfinite(v) && v > 0.f; })))
    throw invalid_argument("OneRowProduct: one speed above 0 per thread");
  static_assert(kColumnAlign % kQ8GroupRows == 0);  // shares begin on a group
}

OneRowProduct::Share OneRowProduct::share(int t) const {
  const auto [begin, end] = split_.empty()
                                ? ThreadPool::part(static_cast<size_t>(L_.out), threads_, t, kColumnAlign)
                                : ThreadPool::part(static_cast<size_t>(L_.out), split_, t, kColumnAlign);
  // Q8_0 in groups: the share's groups in two streams, halves (its last group may end past W's last row);
  // other rows: quarters.
  const int q = L_.q8_0_groups ? static_cast<int>(q8_0_groups(static_cast<int64_t>(end)) -
                                                  q8_0_groups(static_cast<int64_t>(begin))) /
                                     2
                               : static_cast<int>(end - begin) / 4;
  Share h{static_cast<int>(begin), static_cast<int>(end), q, 0};
  h.pieces = h.end > h.begin ? std::max(1, (h.stream_units + grain_ - 1) / grain_) : 0;
  return h;
}

int OneRowProduct::pieces(int share_index) const {
  return share(share_index).pieces;
}

size_t OneRowProduct::run(int share_index, uint32_t piece, const float* in, uint8_t* rounded) const {
  const KernelTable& k = kernels();
  const int I = L_.in;
  float* const out = out_;
  // Output columns [a, b) of the row: zeroed (unless accumulating) before a kernel adds to them, the
  // bias added and the activation applied after. The bias is read once per token, and the stream of W
  // has evicted it since: loaded before the kernel, each of its lines stalled the thread for a read
  // from memory (~2 % of a Q8_0 decode's samples on the bias's loads), so its lines are prefetched
  // here and added once the kernel's reading has hidden their latency.
  auto begin_columns = [&](int a, int b) {
    if (!accumulate_) std::fill(out + a, out + b, 0.f);
    if (L_.bias != nullptr && b > a) {  // a line per 64 bytes from a, and the line of b - 1
      for (int o = a; o < b; o += 16) __builtin_prefetch(L_.bias + o, 0, 3);
      __builtin_prefetch(L_.bias + b - 1, 0, 3);
    }
  };
  auto end_columns = [&](int a, int b) {
    if (L_.bias != nullptr)
      for (int o = a; o < b; ++o) out[o] += L_.bias[o];
    if (activation_ == Activation::kGelu) k.gelu_forward(out + a, static_cast<size_t>(b - a));
  };
  const Share h = share(share_index);
  const int a = static_cast<int>(piece) * grain_, b = std::min(h.stream_units, a + grain_);
  // Q8_0's kernels read x rounded to int16 blocks: each thread rounds it once, at its first piece, into
  // a buffer of its own that its next products reuse (thread_x_blocks).
  Int16Blocks* x_blocks = nullptr;
  if (L_.dtype == DType::kQ8_0) {
    x_blocks = &thread_x_blocks();
    if (!*rounded) {
      k.round_to_int16_blocks(x_blocks, in, I);
      *rounded = 1;
    }
  }
  if (L_.q8_0_groups) {
    // Groups gb + [a, b) and gb + q + [a, b), in lockstep; piece 0 also the group left over when the share
    // has an odd number of them.
    const int gb = h.begin / kQ8GroupRows, q = h.stream_units;
    const int ge = static_cast<int>(q8_0_groups(static_cast<int64_t>(h.end)));
    auto rows_of = [&](int g0, int g1) {
      return std::pair{g0 * kQ8GroupRows, std::min(L_.out, g1 * kQ8GroupRows)};
    };
    size_t groups = 0;
    if (b > a) {
      const auto [a0, a1] = rows_of(gb + a, gb + b);
      const auto [b0, b1] = rows_of(gb + q + a, gb + q + b);
      begin_columns(a0, a1);
      begin_columns(b0, b1);
      k.q8_0_group_pair_products(out, in, x_blocks, L_.weight, I, L_.out, gb + a, gb + q + a, b - a);
      end_columns(a0, a1);
      end_columns(b0, b1);
      groups += 2 * static_cast<size_t>(b - a);
    }
    if (piece == 0 && gb + 2 * q < ge) {
      const auto [r0, r1] = rows_of(gb + 2 * q, ge);
      begin_columns(r0, r1);
      k.q8_0_group_products(out, in, x_blocks, L_.weight, 1, I, L_.out, gb + 2 * q, ge);
      end_columns(r0, r1);
      groups += static_cast<size_t>(ge - gb - 2 * q);
    }
    return groups * q8_0_group_bytes(kQ8GroupRows, I);
  }
  size_t rows = 0;
  if (b > a) {
    for (int j = 0; j < 4; ++j)
      begin_columns(h.begin + j * h.stream_units + a, h.begin + j * h.stream_units + b);
    k.matvec_typed_quarters(out, in, x_blocks, L_.weight, L_.dtype, I, h.begin, h.stream_units, a, b);
    for (int j = 0; j < 4; ++j)
      end_columns(h.begin + j * h.stream_units + a, h.begin + j * h.stream_units + b);
    rows += 4 * static_cast<size_t>(b - a);
  }
  const int rest = h.begin + 4 * h.stream_units;
  if (piece == 0 && rest < h.end) {
    begin_columns(rest, h.end);
    k.matvec_typed(out, in, L_.weight, L_.dtype, I, rest, h.end);
    end_columns(rest, h.end);
    rows += static_cast<size_t>(h.end - rest);
  }
  return rows * dtype_bytes(L_.dtype, I);
}

void linear_forward(float* out, const float* in, const Linear& L, int rows, bool accumulate, ThreadPool& pool,
                    Activation activation) {
  const KernelTable& k = kernels();
  const int O = L.out, I = L.in;
  // The activation of n outputs at p (elementwise), and of columns [o0, o1) of every row, once a thread
  // has written them.
  auto activate_run = [&](float* p, size_t n) {
    if (activation == Activation::kGelu) k.gelu_forward(p, n);
  };
  auto activate = [&](size_t o0, size_t o1) {
    for (int r = 0; r < rows; ++r) activate_run(out + static_cast<size_t>(r) * O + o0, o1 - o0);
  };
  // Initialise the output with the bias (added to what is there when accumulating).
  auto init = [&](size_t o0, size_t o1) {
    for (int r = 0; r < rows; ++r) {
      float* y = out + static_cast<size_t>(r) * O;
      if (!accumulate) std::fill(y + o0, y + o1, 0.f);
      if (L.bias != nullptr)
        for (size_t o = o0; o < o1; ++o) y[o] += L.bias[o];
    }
  };
  // Column splits (threads' parts, pieces) fall on multiples of kAlign. Some kernels treat the columns of
  // a range differently by their place in it (AVX2's Q8_0 tiles of 16 rows of W from its start, GELU's
  // scalar tail after its last vector): on multiples of 16, a column's arithmetic, and so its last bits,
  // do not depend on where a piece begins or ends.
  constexpr size_t kAlign = kColumnAlign;
  static_assert(kAlign % 16 == 0);
  const int threads = pool.size();
  if (rows == 1 && !L.in_major) {
    const OneRowProduct product(out, L, accumulate, activation, threads);
    // Per thread: x rounded for Q8_0 yet (run() neither reads nor writes it for the other types).
    std::vector<uint8_t> rounded(L.dtype == DType::kQ8_0 ? static_cast<size_t>(threads) : 0);
    uint8_t unused = 0;
    pool.run_shares([&](int t) { return product.pieces(t); },
                    [&](int thread, int t, uint32_t piece) {
                      product.run(t, piece, in,
                                  rounded.empty() ? &unused : &rounded[static_cast<size_t>(thread)]);
                    });
    return;
  }
  if (L.dtype != DType::kF32) {
    // F16 and Q8_0 weights, stored [out, in]: output columns split across the threads (contiguous rows
    // of W each).
    if (L.in_major) throw invalid_argument("F16 and Q8_0 weights must be stored [out, in]");
    if (L.q8_0_groups && rows <= k.q8_0_group_prompt_rows) {
      // Q8_0 in groups: every input row rounded once (a prompt's across the threads), then pieces of
      // whole groups (for_pieces: columns on multiples of 16, the last piece ending at O). The calling
      // thread's buffer, reached by the others through `xs` (see partial_buffer below).
      thread_local std::vector<Int16Blocks> rounded_rows;
      if (rounded_rows.size() < static_cast<size_t>(rows)) rounded_rows.resize(static_cast<size_t>(rows));
      Int16Blocks* const xs = rounded_rows.data();
      auto round = [&](size_t r0, size_t r1) {
        for (size_t r = r0; r < r1; ++r) k.round_to_int16_blocks(&xs[r], in + r * I, I);
      };
      if (rows >= kSmallBatchRows)
        pool.parallel_for(static_cast<size_t>(rows), round);
      else
        round(0, static_cast<size_t>(rows));
      for_pieces(pool, static_cast<size_t>(O), kBatchPieceValues / std::max(1, I), kAlign,
                 [&](size_t o0, size_t o1) {
                   init(o0, o1);
                   k.q8_0_group_products(out, in, xs, L.weight, rows, I, O,
                                         static_cast<int>(o0 / kQ8GroupRows),
                                         static_cast<int>(q8_0_groups(static_cast<int64_t>(o1))));
                   activate(o0, o1);
                 });
      return;
    }
    if (rows <= kPieceRowsTyped) {
      for_pieces(pool, static_cast<size_t>(O), kBatchPieceValues / std::max(1, I), kAlign,
                 [&](size_t o0, size_t o1) {
                   init(o0, o1);
                   k.small_batch_gemm_out_major_typed(out, in, L.weight, L.dtype, rows, I, O,
                                                      static_cast<int>(o0), static_cast<int>(o1));
                   activate(o0, o1);
                 });
      return;
    }
    pool.parallel_for(
        static_cast<size_t>(O),
        [&](size_t o0, size_t o1) {
          init(o0, o1);
          const int a = static_cast<int>(o0), b = static_cast<int>(o1);
          if (rows <= k.small_batch_prompt_rows) {
            // Decode steps, and short prompts kSmallBatchRows rows at a time (W read once per block).
            for (int r0 = 0; r0 < rows; r0 += kSmallBatchRows)
              k.small_batch_gemm_out_major_typed(out + static_cast<size_t>(r0) * O,
                                                 in + static_cast<size_t>(r0) * I, L.weight, L.dtype,
                                                 std::min(kSmallBatchRows, rows - r0), I, O, a, b);
          } else {
            // Prefill: panels of W's rows converted to F32, each multiplied by sgemm for all the rows.
            // sgemm packs the input again for every call: panels as wide as kPrefillPanelBytes allows
            // (124M on two threads: a thread's whole part of W, 4.5 MiB at most). Narrow panels (64 rows)
            // cost ~12 % of F16's pp512 against 512 rows, and 512 rows ~4 % against whole parts (alternating
            // runs).
            const int panel = std::max(1, static_cast<int>(kPrefillPanelBytes / (sizeof(float) * I)));
            for (int n = a; n < b; n += panel) {
              const int m = std::min(panel, b - n);
              const float* wf = L.q8_0_groups ? k.dequantize_q8_0_groups(L.weight, I, n, n + m)
                                              : k.dequantize_rows(L.weight, L.dtype, I, n, n + m);
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, m, I, 1.f, in, I, wf, I, 1.f,
                          out + n, O);
            }
          }
          activate(o0, o1);
        },
        kAlign);
    return;
  }
  if (rows == 1 && L.in_major) {
    // Split the input rows: each thread streams one contiguous part of W into its own accumulator
    // (thread 0 into out), then the partial sums are added. Column splits would interleave the threads'
    // reads within every row and defeat the hardware prefetchers. The parts are fixed: taken in pieces
    // (as above), which rows end in which accumulator would vary between runs, and with it the last
    // bits of the sums, and the same seed would no longer always give the same text.
    // The caller's buffer, reused across calls (this runs dozens of times per decoded token). Workers
    // must reach it through this pointer: naming a thread_local inside the task would give each worker
    // its own, empty one.
    thread_local AlignedVector<float> partial_buffer;
    partial_buffer.assign(static_cast<size_t>(threads - 1) * O, 0.f);
    float* const partial = partial_buffer.data();
    pool.run([&](int t) {
      const auto [b, e] = pool.part(static_cast<size_t>(I), t, 4);
      const int i0 = static_cast<int>(b), i1 = static_cast<int>(e);
      float* acc = t == 0 ? out : partial + static_cast<size_t>(t - 1) * O;
      if (t == 0) init(0, static_cast<size_t>(O));
      k.matvec_in_major_rows(acc, in, L.f32(), O, i0, i1);
    });
    for (int t = 1; t < threads; ++t) {
      const float* p = partial + static_cast<size_t>(t - 1) * O;
      for (int o = 0; o < O; ++o) out[o] += p[o];
    }
    activate(0, static_cast<size_t>(O));  // one row: a few microseconds, less than another fork-join
    return;
  }
  const bool small = rows <= (L.in_major ? k.small_batch_prompt_rows : kSmallBatchRows);
  if (small && L.in_major && threads > 1 && O / threads < kMinColumnsPerThread) {
    // Few output columns (W's rows short): split W by its rows instead, so that each thread streams one
    // contiguous block of W; the threads' partial products are added afterwards.
    thread_local AlignedVector<float> partial_buffer;  // reached through `partial` (see above)
    const size_t out_floats = static_cast<size_t>(rows) * O;
    partial_buffer.resize(static_cast<size_t>(threads - 1) * out_floats);
    float* const partial = partial_buffer.data();
    pool.run([&](int t) {
      const auto [b, e] = pool.part(static_cast<size_t>(I), t, 16);
      const int i0 = static_cast<int>(b), i1 = static_cast<int>(e);
      float* acc = t == 0 ? out : partial + static_cast<size_t>(t - 1) * out_floats;
      if (t == 0)
        init(0, static_cast<size_t>(O));
      else
        std::fill(acc, acc + out_floats, 0.f);
      if (i1 > i0)
        k.small_batch_gemm_in_major(acc, in + i0, I, L.f32() + static_cast<size_t>(i0) * O, rows, i1 - i0, O,
                                    0, O);
    });
    pool.parallel_for(
        out_floats,
        [&](size_t b, size_t e) {
          for (int t = 1; t < threads; ++t) {
            const float* p = partial + static_cast<size_t>(t - 1) * out_floats;
            for (size_t i = b; i < e; ++i) out[i] += p[i];
          }
          activate_run(out + b, e - b);  // elementwise: any range of the flat output
        },
        kAlign);
    return;
  }
  if (small) {
    pool.parallel_for(
        static_cast<size_t>(O),
        [&](size_t o0, size_t o1) {
          init(o0, o1);
          if (L.in_major)
            k.small_batch_gemm_in_major(out, in, I, L.f32(), rows, I, O, static_cast<int>(o0),
                                        static_cast<int>(o1));
          else
            k.small_batch_gemm_out_major(out, in, L.f32(), rows, I, O, static_cast<int>(o0),
                                         static_cast<int>(o1));
          activate(o0, o1);
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
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, I, 1.f, in, I, L.f32() + o0, O, 1.f,
                      out + o0, O);
        } else {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, I, 1.f, in, I,
                      L.f32() + o0 * static_cast<size_t>(I), I, 1.f, out + o0, O);
        }
        activate(o0, o1);
      },
      kAlign);
}

}  // namespace cortex::model
