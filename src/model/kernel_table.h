// The CPU kernels of one instruction set as a table, and the table this process runs (cpu_isa.h). The
// model's code calls kernels through kernels.h, whose functions use the active table; tests and
// benchmarks may pick a table per instruction set. Every table computes the same results up to
// floating-point summation order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/cpu_isa.h"
#include "model/tensor.h"
#include "util/aligned_vector.h"

namespace cortex::model {

// Rows up to which the small-batch products below are the faster choice (and the most the [N, K] ones
// accept; small_batch_gemm_in_major takes any number).
inline constexpr int kSmallBatchRows = 32;
// Heads that attention_heads keeps in registers at once; callers may pass more.
inline constexpr int kMaxAttentionGroup = 6;
// Query rows that attention_rows takes at once (one per vector lane); its scores need room for this many
// rows of every position.
inline constexpr int kAttentionTileRows = 16;

// One layer of a sequence's cached keys and values, as attention reads them: positions in blocks of
// block_tokens; head h's row (its D values) at position j lies at key_blocks[j / block_tokens] +
// h · head_stride + (j % block_tokens) · position_stride, its value row likewise in value_blocks. T is
// float or uint16_t (IEEE halves, widened as they are read). The KV cache stores a block's rows head by
// head (head_stride = block_tokens · D, position_stride = D: KvCache::rows()), so that a thread attending
// with some heads reads runs of memory that the hardware prefetchers follow.
template <class T>
struct CachedRows {
  const T* const* key_blocks;
  const T* const* value_blocks;
  int block_tokens;
  size_t position_stride;
  size_t head_stride;

  const T* key(int h, int j) const { return row(key_blocks, h, j); }
  const T* value(int h, int j) const { return row(value_blocks, h, j); }
  const T* row(const T* const* blocks, int h, int j) const {
    return blocks[j / block_tokens] + static_cast<size_t>(h) * head_stride +
           static_cast<size_t>(j % block_tokens) * position_stride;
  }
};

// x rounded to blocks of 32 values for the one-row Q8_0 products of the AVX2 and AVX-512 sets
// (matvec_typed.cpp says how): q[32b + e] · d[b] ≈ x[32b + e].
struct Int16Blocks {
  AlignedVector<int16_t> q;
  std::vector<float> d;
};

struct KernelTable {
  Isa isa;

  // See kernels.h.
  void (*layernorm_forward)(float* out, const float* in, const float* weight, const float* bias, int rows,
                            int cols, float eps);
  void (*gelu_forward)(float* x, size_t n);
  float (*exp_and_sum)(float* x, int n, float shift);
  float (*dot_product)(const float* a, const float* b, int n);
  void (*attention_heads)(float* out, const float* q, const CachedRows<float>& cache, int h0, int heads,
                          int n, int D, float scale, float* scores);
  void (*attention_heads_f16)(float* out, const float* q, const CachedRows<uint16_t>& cache, int h0,
                              int heads, int n, int D, float scale, float* scores);
  // Consecutive query rows of one sequence (see kernels.h), cached rows as floats or halves.
  void (*attention_rows)(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                         const CachedRows<float>& cache, int h0, int heads, int n0, int D, float scale,
                         float* scores);
  void (*attention_rows_f16)(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                             const CachedRows<uint16_t>& cache, int h0, int heads, int n0, int D, float scale,
                             float* scores);

  // F32 matrix-vector product with W stored [in, out] (in-major, Hugging Face Conv1D):
  // y[0:out] += x[i0:i1] · W[i0:i1, :], streaming rows i0..i1 of W. (W stored [out, in] goes through
  // matvec_typed.)
  void (*matvec_in_major_rows)(float* y, const float* x, const float* w, int out, int i0, int i1);

  // Products for 2..kSmallBatchRows rows (decode steps of a small batch), W read once per block of
  // rows, straight from the (mapped) weights. W stored [K, N]: out[r, n0:n1] += in[r, 0:K] · W[:, n0:n1],
  // input rows ldx floats apart (ldx >= K: a slice of K of a wider input).
  void (*small_batch_gemm_in_major)(float* out, const float* in, int ldx, const float* w, int rows, int K,
                                    int N, int n0, int n1);
  // W stored [N, K]: out[r, n] += dot(in[r, :], W[n, :]) for n in [n0, n1).
  void (*small_batch_gemm_out_major)(float* out, const float* in, const float* w, int rows, int K, int N,
                                     int n0, int n1);

  // One row: weights stored [N, K] as F32, F16 or Q8_0 (K a multiple of 32 for Q8_0), widened to F32 in
  // registers: y[o] += dot(x[0:K], W[o, :]) for o in [o0, o1).
  void (*matvec_typed)(float* y, const float* x, const void* w, DType t, int K, int o0, int o1);
  // The same for a piece of a range read as four streams q rows apart (matvec_typed reads [o0, o0 + 4q)
  // so): rows o0 + j·q + i for j in 0..3 and i in [i0, i1), i1 <= q; each stream prefetched a fixed
  // distance ahead across its rows (within the quarter), so pieces taken front to back keep the
  // prefetching running ahead across them.
  // xi: x rounded by round_to_int16_blocks, for Q8_0 weights (a product's pieces then share one rounding);
  // nullptr has the call round x itself. Ignored for other types and by the portable set.
  void (*matvec_typed_quarters)(float* y, const float* x, const Int16Blocks* xi, const void* w, DType t,
                                int K, int o0, int q, int i0, int i1);
  // *out = x[0:K] rounded to int16 blocks (K a multiple of 32), as matvec_typed_quarters takes it: what its
  // Q8_0 rows read, in the sets that read such blocks; the portable set, which reads x as it is, leaves
  // *out empty.
  void (*round_to_int16_blocks)(Int16Blocks* out, const float* x, int K);
  // out[r, n] += dot(in[r, :], W[n, :]) for 2..kSmallBatchRows rows and n in [n0, n1).
  void (*small_batch_gemm_out_major_typed)(float* out, const float* in, const void* w, DType t, int rows,
                                           int K, int N, int n0, int n1);
  // Rows [n0, n1) of W (stored [N, K] as F16 or Q8_0) converted to F32 into a per-thread buffer
  // [n1 - n0, K], valid until the thread's next call.
  const float* (*dequantize_rows)(const void* w, DType t, int K, int n0, int n1);
  // out[0:n] = the n values at src stored as F16 (any alignment) or Q8_0 (n a multiple of 32).
  void (*widen_to_f32)(float* out, DType t, const void* src, int64_t n);
  // out[0:n] = in[0:n] as IEEE halves, rounded to nearest even; beyond F16's range saturated at ±65504
  // (NaN stays NaN). The F16 KV cache's writes.
  void (*narrow_to_f16)(uint16_t* out, const float* in, int64_t n);

  // Q8_0 weights in groups of 16 rows (q8_0_groups.h), W [N, K] (K a multiple of 32), groups of rows
  // numbered from 0; outputs of rows past N (a last group's zeros) are not written.
  // `rows` rows: out[r, n] += dot(in[r, :], W[n, :]) for the rows n of groups [g0, g1), read front to
  // back, one group after another; xs: each input row rounded by round_to_int16_blocks (the portable set
  // reads `in` instead, and xs may be null). One row is a decode step's product (OneRowProduct). With
  // AVX-512 the rows go through a group up to eight at a time, its values widened once for them all; each
  // row's results are the same to the bit whatever the rows beside it.
  void (*q8_0_group_products)(float* out, const float* in, const Int16Blocks* xs, const void* w, int rows,
                              int K, int N, int g0, int g1);
  // One row: out[n] += dot(in, W[n, :]) for the rows n of groups [ga, ga + count) and [gb, gb + count),
  // the two ranges read in lockstep, block by block, as two streams (x rounded as above): on the Zen 5
  // cores 10–20 % faster from memory than one stream. The same results to the bit as q8_0_group_products.
  void (*q8_0_group_pair_products)(float* out, const float* in, const Int16Blocks* x, const void* w, int K,
                                   int N, int ga, int gb, int count);
  // Rows [n0, n1) of such a W converted to F32, as dequantize_rows returns them.
  const float* (*dequantize_q8_0_groups)(const void* w, int K, int n0, int n1);

  // Input rows up to which products go through the small-batch kernels rather than sgemm, whose packing
  // of W costs more than it saves for short prompts: small_batch_gemm_in_major takes them at once,
  // small_batch_gemm_out_major_typed kSmallBatchRows at a time. kSmallBatchRows, or more where this
  // set's kernels keep their arithmetic rate for more rows. (F32 weights stored [N, K] switch to sgemm
  // past kSmallBatchRows regardless.)
  int small_batch_prompt_rows;
  // Input rows up to which products of Q8_0 in groups go through q8_0_group_products rather than sgemm
  // on the groups widened to F32. AVX-512 (with VNNI or without): any number. 124M's prompts of 256,
  // 512 and 1000 tokens ran 1.43×, 1.31× and 1.21× as fast as through sgemm with VNNI, 512 tokens 1.11×
  // without; AVX2's ran 1.35× at 64 tokens, 1.06× at 128 and 0.92× at 512 (alternating runs).
  int q8_0_group_prompt_rows;
};

// The table of the process's instruction set: CORTEX_ISA's, else the best this CPU supports. Chosen at
// the first call; throws invalid_argument when CORTEX_ISA names an unknown or unsupported set.
const KernelTable& kernels();
// The table of `isa`; throws invalid_argument when this CPU or build does not support it.
const KernelTable& kernel_table(Isa isa);
// Makes `isa` the process's instruction set from now on (tests, benchmarks); throws as kernel_table().
// Must not run while a kernel runs.
void select_isa(Isa isa);

}  // namespace cortex::model
