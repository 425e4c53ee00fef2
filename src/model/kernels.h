// CPU kernels of the GPT-2 forward pass. Arguments follow one order: output first, then inputs, then
// sizes. Matrices are row-major; shapes are given in comments as [rows, cols].
#pragma once

#include <cstddef>

#include "model/gpt2_weights.h"
#include "util/thread_pool.h"

namespace cortex::model {

// Makes OpenBLAS single-threaded: parallelism comes from ThreadPool, which gives each thread its own
// slice of output columns, so BLAS threads never compete with ours. Idempotent.
void configure_blas_threads();

// out[rows, cols] = (in - mean) / sqrt(var + eps) * weight + bias, per row. out may alias in.
void layernorm_forward(float* out, const float* in, const float* weight, const float* bias, int rows,
                       int cols, float eps);

// x[n] = gelu(x) with GPT-2's tanh approximation, in place.
void gelu_forward(float* x, size_t n);

// out[rows, L.out] = in[rows, L.in] · W + b, or out += ... when accumulate (fused residual add).
// Output columns are split across the pool's threads.
void linear_forward(float* out, const float* in, const Linear& layer, int rows, bool accumulate,
                    ThreadPool& pool);

// x[i] = exp(x[i] - shift) for i < n; returns the sum of the results (softmax's denominator).
float exp_and_sum(float* x, int n, float shift);

// Dot product of two float vectors of length n.
float dot_product(const float* a, const float* b, int n);

// out[n] += w * in[n]
void axpy(float* out, const float* in, float w, int n);

}  // namespace cortex::model
