// Matrix products for a few rows (decode steps of a small batch): out[rows, N] += in[rows, K] · W, with
// W read once per block of rows, straight from the (mapped) weights, with no packing copy. For 2–32 rows
// this beats a general sgemm, whose packing of W costs more than the product itself.
#pragma once

#include "model/tensor.h"

namespace cortex::model {

// Rows up to which small_batch_gemm_* is the faster choice (and the most they accept).
inline constexpr int kSmallBatchRows = 32;

// W stored [K, N] (in-major, Hugging Face Conv1D): out[r, n0:n1] += in[r, 0:K] · W[:, n0:n1], where input
// rows are ldx floats apart (ldx >= K: a slice of K of a wider input).
void small_batch_gemm_in_major(float* out, const float* in, int ldx, const float* w, int rows, int K, int N,
                               int n0, int n1);
// W stored [N, K] (out-major, GGUF and the LM head): out[r, n] += dot(in[r, :], W[n, :]) for n in [n0, n1).
void small_batch_gemm_out_major(float* out, const float* in, const float* w, int rows, int K, int N, int n0,
                                int n1);
// The same for W stored [N, K] as F16 or Q8_0 (K a multiple of 32 for Q8_0): a tile of W's rows at a time
// is converted to F32 into a per-thread buffer (it stays in L2) and multiplied by the F32 kernels, so the
// conversion is paid once per row of W for all the input rows.
void small_batch_gemm_out_major_typed(float* out, const float* in, const void* w, DType t, int rows, int K,
                                      int N, int n0, int n1);
// Rows [n0, n1) of W (stored [N, K] as t) converted to F32 into a per-thread buffer [n1 - n0, K], valid
// until the thread's next call.
const float* dequantize_rows(const void* w, DType t, int K, int n0, int n1);

}  // namespace cortex::model
