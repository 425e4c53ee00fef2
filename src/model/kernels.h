// CPU kernels of the GPT-2 forward pass, run with the instruction set chosen for this process
// (kernel_table.h). Arguments follow one order: output first, then inputs, then sizes. Matrices are
// row-major; shapes are given in comments as [rows, cols].
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "model/gpt2_weights.h"
#include "model/kernel_table.h"
#include "util/thread_pool.h"

namespace cortex::model {

// Makes OpenBLAS single-threaded: parallelism comes from ThreadPool, which gives each thread its own
// slice of output columns, so BLAS threads never compete with ours. Idempotent. The first call logs
// blas_core_warning() (blas_cores.h) when there is one.
void configure_blas_threads();

// out[rows, cols] = (in - mean) / sqrt(var + eps) * weight + bias, per row. out may alias in.
void layernorm_forward(float* out, const float* in, const float* weight, const float* bias, int rows,
                       int cols, float eps);

// x[n] = gelu(x) with GPT-2's tanh approximation, in place.
void gelu_forward(float* x, size_t n);

// What linear_forward applies to its outputs before it returns.
enum class Activation { kNone, kGelu };

// out[rows, L.out] = in[rows, L.in] · W + b, or out += ... when accumulate (fused residual add); then
// activation(out), each thread on the outputs it has just written (still in its cache), in the same
// fork-join. Output columns are split across the pool's threads.
void linear_forward(float* out, const float* in, const Linear& layer, int rows, bool accumulate,
                    ThreadPool& pool, Activation activation = Activation::kNone);

// linear_forward for one row of W stored [out, in] (any type), divided for `threads` threads: share t
// (t < threads) is a range of W's rows, in pieces(t) pieces; run() computes one piece's output columns
// (zeroed first unless accumulating, the bias added and the activation applied after). linear_forward
// hands the pieces to its pool's threads (ThreadPool::run_shares); a caller running several products
// inside one ThreadPool::run hands them out itself (ThreadPool::Shares). Every piece of every share must
// run once; each output column comes from one piece, so the results do not depend on which thread ran it.
class OneRowProduct {
 public:
  // `split`: the threads' relative speeds (`threads` values above 0), each share's rows in proportion
  // (on multiples of 16 rows); empty: equal shares.
  OneRowProduct(float* out, const Linear& layer, bool accumulate, Activation activation, int threads,
                std::span<const float> split = {});
  int pieces(int share) const;
  // On the calling thread, with x = in; `rounded` is that thread's flag for this product, 0 before its
  // first piece: Q8_0's kernels take x rounded to int16 blocks, which a thread does once per product.
  // Returns the bytes of W the piece read.
  size_t run(int share, uint32_t piece, const float* in, uint8_t* rounded) const;

 private:
  struct Share {
    int begin, end;  // W's rows
    // Each stream's length, in the units pieces are counted in (grain_): rows per quarter (piece 0 also
    // does the rows after the quarters); Q8_0 in groups: the one stream's groups.
    int stream_units;
    int pieces;
  };
  Share share(int t) const;
  float* out_;
  Linear L_;
  bool accumulate_;
  Activation activation_;
  int threads_;
  std::span<const float> split_;
  int grain_;  // rows per stream in a piece (Q8_0 in groups: groups)
};

// x[i] = exp(x[i] - shift) for i < n; returns the sum of the results (softmax's denominator).
float exp_and_sum(float* x, int n, float shift);

// Dot product of two float vectors of length n.
float dot_product(const float* a, const float* b, int n);

// Attention of one query over n cached positions, for heads [h0, h0 + heads): for each head h,
// out[h·D : (h+1)·D] = Σ_j p_j · v_j(h) with p = softmax(scale · q[h·D : (h+1)·D] · k_j(h)), k_j(h) and
// v_j(h) head h's key and value rows at position j in `cache` (kernel_table.h says where they lie). The
// heads go in groups of up to kMaxAttentionGroup, a group's rows of each position read together. out and
// q point at the query's row (head 0); scores has room for kMaxAttentionGroup · n floats.
void attention_heads(float* out, const float* q, const CachedRows<float>& cache, int h0, int heads, int n,
                     int D, float scale, float* scores);
// The same with the cached rows stored as IEEE halves (an F16 KV cache), widened as they are read.
void attention_heads(float* out, const float* q, const CachedRows<uint16_t>& cache, int h0, int heads, int n,
                     int D, float scale, float* scores);

// Attention of m consecutive query rows of one sequence (a prompt's tokens): row r, its query at
// q + r·q_stride and its output at out + r·out_stride (each pointing at head 0), attends to positions
// 0 .. n0 + r, as attention_heads with n = n0 + r + 1 would (the same results up to rounding: the tiles
// sum in another order and scale the query before its products rather than after).
// With 64-value heads and AVX-512, kAttentionTileRows rows at a time: every cached row is read once per
// tile and its products with the tile's queries run across vector lanes, with no horizontal sums. scores
// has room for max(kAttentionTileRows, kMaxAttentionGroup) · (n0 + m) floats.
void attention_rows(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                    const CachedRows<float>& cache, int h0, int heads, int n0, int D, float scale,
                    float* scores);
void attention_rows(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                    const CachedRows<uint16_t>& cache, int h0, int heads, int n0, int D, float scale,
                    float* scores);

}  // namespace cortex::model
