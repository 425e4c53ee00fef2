// The kernels of one instruction set, declared in its namespace (kernel_isa.h): for the files compiled
// once per instruction set only. What each does: kernel_table.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model/kernel_isa.h"
#include "model/kernel_table.h"
#include "model/tensor.h"

CORTEX_ISA_BEGIN

void layernorm_forward(float* out, const float* in, const float* weight, const float* bias, int rows,
                       int cols, float eps);
void gelu_forward(float* x, size_t n);
float exp_and_sum(float* x, int n, float shift);
float dot_product(const float* a, const float* b, int n);
void attention_heads(float* out, const float* q, const CachedRows<float>& cache, int h0, int heads, int n,
                     int D, float scale, float* scores);
void attention_heads_f16(float* out, const float* q, const CachedRows<uint16_t>& cache, int h0, int heads,
                         int n, int D, float scale, float* scores);
void attention_rows(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                    const CachedRows<float>& cache, int h0, int heads, int n0, int D, float scale,
                    float* scores);
void attention_rows_f16(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                        const CachedRows<uint16_t>& cache, int h0, int heads, int n0, int D, float scale,
                        float* scores);
void matvec_in_major_rows(float* y, const float* x, const float* w, int out, int i0, int i1);
void small_batch_gemm_in_major(float* out, const float* in, int ldx, const float* w, int rows, int K, int N,
                               int n0, int n1);
void small_batch_gemm_out_major(float* out, const float* in, const float* w, int rows, int K, int N, int n0,
                                int n1);
void matvec_typed(float* y, const float* x, const void* w, DType t, int K, int o0, int o1);
void matvec_typed_quarters(float* y, const float* x, const Int16Blocks* xi, const void* w, DType t, int K,
                           int o0, int q, int i0, int i1);
void round_to_int16_blocks(Int16Blocks* out, const float* x, int K);
void small_batch_gemm_out_major_typed(float* out, const float* in, const void* w, DType t, int rows, int K,
                                      int N, int n0, int n1);
const float* dequantize_rows(const void* w, DType t, int K, int n0, int n1);
void q8_0_group_products(float* out, const float* in, const Int16Blocks* xs, const void* w, int rows, int K,
                         int N, int g0, int g1);
void q8_0_group_pair_products(float* out, const float* in, const Int16Blocks* x, const void* w, int K, int N,
                              int ga, int gb, int count);
const float* dequantize_q8_0_groups(const void* w, int K, int n0, int n1);
void widen_to_f32(float* out, DType t, const void* src, int64_t n);
void narrow_to_f16(uint16_t* out, const float* in, int64_t n);

// This instruction set's table.
const KernelTable& kernel_table();

CORTEX_ISA_END
