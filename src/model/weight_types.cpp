#include "model/weight_types.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "model/half.h"
#include "model/kernel_table.h"
#include "util/error.h"

namespace cortex::model {

namespace {
// "f32", "f16" or (with q8_0) "q8_0", case-insensitive; nullopt for anything else.
std::optional<DType> dtype_named(std::string_view name, bool q8_0) {
  std::string s(name);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "f32") return DType::kF32;
  if (s == "f16") return DType::kF16;
  if (q8_0 && s == "q8_0") return DType::kQ8_0;
  return std::nullopt;
}
}  // namespace

DType parse_dtype(std::string_view name) {
  if (auto t = dtype_named(name, true)) return *t;
  throw invalid_argument("dtype '" + std::string(name) + "' is not supported: use f32, f16 or q8_0");
}

DType parse_kv_cache_dtype(std::string_view name) {
  if (auto t = dtype_named(name, false)) return *t;
  throw invalid_argument("KV cache dtype '" + std::string(name) + "' is not supported: use f32 or f16");
}

const char* dtype_flag_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kQ8_0:
      return "q8_0";
  }
  return "?";
}

const float* fp16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = fp16_to_fp32(static_cast<uint16_t>(h));
    return t;
  }();
  return table.data();
}

size_t row_bytes(DType t, int64_t cols) {
  return dtype_bytes(t, cols);
}

namespace {

// The i-th 16-bit value at p, which need not be 2-byte aligned (a safetensors tensor may start anywhere).
inline uint16_t load_u16(const void* p, int64_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const std::byte*>(p) + 2 * i, 2);
  return v;
}

}  // namespace

void convert_to_f32(float* out, DType t, const void* src, int64_t n) {
  switch (t) {
    case DType::kF32:
      std::memcpy(out, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16:
      kernels().widen_to_f32(out, t, src, n);
      return;
    case DType::kBF16: {
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(load_u16(src, i));
      return;
    }
    case DType::kQ8_0:
      if (n % kQ8Block != 0) throw invalid_argument("Q8_0 data must hold whole blocks of 32 values");
      kernels().widen_to_f32(out, t, src, n);
      return;
  }
}

void convert_from_f32(void* dst, DType t, const float* src, int64_t n) {
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) {
        if (!(std::fabs(src[i]) <= 65504.f))
          throw invalid_argument("value " + std::to_string(src[i]) +
                                 " is outside F16's range (±65504): use dtype f32");
        h[i] = fp32_to_fp16(src[i]);
      }
      return;
    }
    case DType::kBF16:
      throw invalid_argument("conversion to BF16 is not supported");
    case DType::kQ8_0: {
      if (n % kQ8Block != 0) throw invalid_argument("Q8_0 data must hold whole blocks of 32 values");
      auto* blocks = static_cast<BlockQ8_0*>(dst);
      for (int64_t b = 0; b < n / kQ8Block; ++b) {
        const float* x = src + b * kQ8Block;
        float amax = 0.f;
        for (int j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(x[j]));
        if (!std::isfinite(amax)) throw invalid_argument("a weight is not finite: cannot quantize to Q8_0");
        const float d = amax / 127.f, id = d != 0.f ? 1.f / d : 0.f;
        if (d > 65504.f)  // the block's scale is an F16
          throw invalid_argument("a weight of magnitude " + std::to_string(amax) +
                                 " is beyond Q8_0's range (scale above F16's 65504): use dtype f32 or f16");
        BlockQ8_0& blk = blocks[b];
        blk.d = fp32_to_fp16(d);
        for (int j = 0; j < kQ8Block; ++j) blk.q[j] = static_cast<int8_t>(std::lround(x[j] * id));
      }
      return;
    }
  }
}

}  // namespace cortex::model
