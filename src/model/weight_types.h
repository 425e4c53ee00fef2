// Storage types of weight matrices beyond F32: IEEE half (F16) and llama.cpp's Q8_0 blocks (32 values
// as an F16 scale d and 32 int8 q, value = d · q), with conversion to and from F32 and the names users
// give them (`--dtype f32|f16|q8_0`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "model/tensor.h"

namespace cortex::model {

inline constexpr int kQ8Block = 32;  // values per Q8_0 block

// One Q8_0 block as GGUF stores it (34 bytes, no padding).
struct BlockQ8_0 {
  uint16_t d;  // scale, IEEE half
  int8_t q[kQ8Block];
};
static_assert(sizeof(BlockQ8_0) == 34);

// "f32", "f16" or "q8_0" (case-insensitive) as a type; throws invalid_argument naming the value and the
// allowed ones for anything else.
DType parse_dtype(std::string_view name);
// "f32" or "f16" (case-insensitive) as the KV cache's type (`--kv-cache-dtype`); throws
// invalid_argument naming the value for anything else.
DType parse_kv_cache_dtype(std::string_view name);
// The user-facing name: "f32", "f16", "q8_0" ("bf16" for BF16).
const char* dtype_flag_name(DType t);

// The float value of every IEEE half, indexed by its bits (256 KiB, built on first use): kernels read a
// Q8_0 block's scale with one load.
const float* fp16_table();

// Bytes of one row of `cols` values stored as t (Q8_0: cols must be a multiple of 32).
size_t row_bytes(DType t, int64_t cols);

// out[0:n] = the n values at src, stored as t (n a multiple of 32 for Q8_0).
void convert_to_f32(float* out, DType t, const void* src, int64_t n);
// dst = src[0:n] stored as t (F32, F16 or Q8_0; n a multiple of 32 for Q8_0). Q8_0 follows llama.cpp's
// reference: d = max|x| / 127, q = round(x / d). Throws invalid_argument when a value is beyond F16's range
// for F16.
void convert_from_f32(void* dst, DType t, const float* src, int64_t n);

}  // namespace cortex::model
