// Vectors of floats for the kernels compiled once per instruction set (kernel_isa.h): Vec8 (AVX2) and
// Vec16 (AVX-512), each with what the kernels do with one, and BestVec, the widest the build has.
// Include it before CORTEX_ISA_BEGIN: it opens the instruction set's region itself.
#pragma once

#include <cstdint>

#include "model/kernel_isa.h"

CORTEX_ISA_BEGIN

#if defined(CORTEX_AVX2)
// Vectors of 8 floats (AVX2) and, below, of 16 (AVX-512), with what the dot-product tiles need.
struct Vec8 {
  using T = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kMaxRows = 4;  // input rows per tile: 16 registers hold MR·NR sums, NR weights, x
  static T zero() { return _mm256_setzero_ps(); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T set1(float v) { return _mm256_set1_ps(v); }
  static T load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static T load_q8(const int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static float hsum(T v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
};

#if defined(CORTEX_AVX512)
struct Vec16 {
  using T = __m512;
  static constexpr int kWidth = 16;
  // Input rows per tile as the rows lie (K apart): more go through packed blocks of 8 (out_major_dot's
  // Packed).
  static constexpr int kMaxRows = 4;
  static T zero() { return _mm512_setzero_ps(); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T set1(float v) { return _mm512_set1_ps(v); }
  static T load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static T load_q8(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  // A tree of adds (hsum512's plain loop is one long chain: fine once per tile, not once per sum).
  static float hsum(T v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
};
#endif

#if defined(CORTEX_AVX512)
using BestVec = Vec16;
#else
using BestVec = Vec8;
#endif
#endif  // CORTEX_AVX2

CORTEX_ISA_END
