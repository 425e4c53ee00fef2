// F16 and Q8_0 values widened to F32 (weights converted on load, panels of W for prompt processing, an
// F16 KV cache's rows), and F32 narrowed to F16 (the F16 KV cache's writes). Compiled once per
// instruction set (kernel_isa.h).
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "model/half.h"
#include "model/isa_kernels.h"
#include "model/weight_types.h"

CORTEX_ISA_BEGIN

namespace {

// The i-th 16-bit value at p, which need not be 2-byte aligned (a safetensors tensor may start anywhere).
inline uint16_t load_u16(const void* p, int64_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const std::byte*>(p) + 2 * i, 2);
  return v;
}

// 16 halves to floats.
inline void f16_to_f32_16(float* out, const void* in) {
#if defined(CORTEX_AVX512)
  _mm512_storeu_ps(out, _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(in))));
#elif defined(CORTEX_AVX2)
  const auto* p = static_cast<const __m128i*>(in);
  _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128(p)));
  _mm256_storeu_ps(out + 8, _mm256_cvtph_ps(_mm_loadu_si128(p + 1)));
#else
  for (int i = 0; i < 16; ++i) out[i] = fp16_to_fp32(load_u16(in, i));
#endif
}

void q8_0_to_f32(float* out, const BlockQ8_0* blocks, int64_t n_blocks) {
  const float* scale = fp16_table();
  for (int64_t b = 0; b < n_blocks; ++b) {
    const BlockQ8_0& blk = blocks[b];
    const float d = scale[blk.d];
    float* o = out + b * kQ8Block;
#if defined(CORTEX_AVX512)
    const __m512 dv = _mm512_set1_ps(d);
    for (int h = 0; h < 2; ++h) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.q + 16 * h));
      _mm512_storeu_ps(o + 16 * h, _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
    }
#elif defined(CORTEX_AVX2)
    const __m256 dv = _mm256_set1_ps(d);
    for (int h = 0; h < 4; ++h) {
      int64_t v;
      std::memcpy(&v, blk.q + 8 * h, 8);
      _mm256_storeu_ps(o + 8 * h,
                       _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(v)))));
    }
#else
    for (int j = 0; j < kQ8Block; ++j) o[j] = d * static_cast<float>(blk.q[j]);
#endif
  }
}

}  // namespace

void widen_to_f32(float* out, DType t, const void* src, int64_t n) {
  if (t == DType::kQ8_0) {
    q8_0_to_f32(out, static_cast<const BlockQ8_0*>(src), n / kQ8Block);
    return;
  }
  // F16
  const auto* bytes = static_cast<const std::byte*>(src);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) f16_to_f32_16(out + i, bytes + 2 * i);
  for (; i < n; ++i) out[i] = fp16_to_fp32(load_u16(src, i));
}

void narrow_to_f16(uint16_t* out, const float* in, int64_t n) {
  int64_t i = 0;
#if defined(CORTEX_AVX512)
  const __m512 hi = _mm512_set1_ps(65504.f), lo = _mm512_set1_ps(-65504.f);
  for (; i + 16 <= n; i += 16) {
    // min/max return their second operand for NaN: the value itself, so NaN stays NaN.
    const __m512 v = _mm512_max_ps(lo, _mm512_min_ps(hi, _mm512_loadu_ps(in + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
#elif defined(CORTEX_AVX2)
  const __m256 hi = _mm256_set1_ps(65504.f), lo = _mm256_set1_ps(-65504.f);
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_max_ps(lo, _mm256_min_ps(hi, _mm256_loadu_ps(in + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
#endif
  for (; i < n; ++i) {
    const float v = in[i];
    out[i] = fp32_to_fp16(v > 65504.f ? 65504.f : v < -65504.f ? -65504.f : v);
  }
}

CORTEX_ISA_END
