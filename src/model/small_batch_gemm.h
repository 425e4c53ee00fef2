// Matrix products for a few rows (decode steps of a small batch): out[rows, N] += in[rows, K] · W, with
// W read once per block of rows, straight from the (mapped) weights, with no packing copy. For 2–32 rows
// this beats a general sgemm, whose packing of W costs more than the product itself.
#pragma once

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

}  // namespace cortex::model
