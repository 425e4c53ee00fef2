// The CPU kernels of the forward pass other than the matrix products of several rows: LayerNorm, GELU,
// softmax pieces, attention, and the F32 matrix-vector product with in-major weights. Compiled once per
// instruction set (kernel_isa.h); what each computes: kernel_table.h.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "model/isa_kernels.h"
#include "model/isa_vectors.h"

CORTEX_ISA_BEGIN

#ifdef CORTEX_AVX2
namespace {
inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
}  // namespace
#endif

void layernorm_forward(float* out, const float* in, const float* weight, const float* bias, int rows,
                       int cols, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* x = in + static_cast<size_t>(r) * cols;
    float* y = out + static_cast<size_t>(r) * cols;
    int i = 0;
    float mean = 0.f;
#ifdef CORTEX_AVX2
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= cols; i += 16) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
    }
    mean = hsum256(_mm256_add_ps(s0, s1));
#endif
    for (; i < cols; ++i) mean += x[i];
    mean /= static_cast<float>(cols);
    i = 0;
    float var = 0.f;
#ifdef CORTEX_AVX2
    const __m256 m = _mm256_set1_ps(mean);
    s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= cols; i += 16) {
      const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), m),
                   d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), m);
      s0 = _mm256_fmadd_ps(d0, d0, s0);
      s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    var = hsum256(_mm256_add_ps(s0, s1));
#endif
    for (; i < cols; ++i) {
      float d = x[i] - mean;
      var += d * d;
    }
    var /= static_cast<float>(cols);
    const float rstd = 1.f / std::sqrt(var + eps);
    i = 0;
#ifdef CORTEX_AVX2
    const __m256 rs = _mm256_set1_ps(rstd);
    for (; i + 8 <= cols; i += 8) {
      const __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m), rs);
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(v, _mm256_loadu_ps(weight + i), _mm256_loadu_ps(bias + i)));
    }
#endif
    for (; i < cols; ++i) y[i] = (x[i] - mean) * rstd * weight[i] + bias[i];
  }
}

#ifdef CORTEX_AVX2
namespace {
// exp(x) for 8 floats: range reduction to x = k·ln2 + r, a degree-6 polynomial for e^r (Cephes' expf
// coefficients, relative error ~1e-7), then 2^k by adding k to the exponent bits.
inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#ifdef CORTEX_AVX512
// The same for 16 floats.
inline __m512 exp_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
  __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}
#endif
}  // namespace
#endif

// gelu(x) = 0.5·x·(1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi)·(x + 0.044715·x³). With AVX2 and
// AVX-512 every value goes through the same vector arithmetic, the last few under a mask: each result is
// then the same to the bit wherever a call's range begins and ends (a decode step's products apply it to
// columns whose division between threads changes from step to step).
void gelu_forward(float* x, size_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  size_t i = 0;
#ifdef CORTEX_AVX512
  {
    const __m512 c = _mm512_set1_ps(-2.f * kSqrt2OverPi), a = _mm512_set1_ps(0.044715f),
                 one = _mm512_set1_ps(1.f);
    auto gelu = [&](__m512 v) {
      const __m512 u = _mm512_mul_ps(c, _mm512_fmadd_ps(_mm512_mul_ps(a, v), _mm512_mul_ps(v, v), v));
      return _mm512_div_ps(v, _mm512_add_ps(one, exp_avx512(u)));
    };
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, gelu(_mm512_loadu_ps(x + i)));
    if (i < n) {
      const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
      _mm512_mask_storeu_ps(x + i, m, gelu(_mm512_maskz_loadu_ps(m, x + i)));
    }
    return;
  }
#endif
#ifdef CORTEX_AVX2
  const __m256 c = _mm256_set1_ps(-2.f * kSqrt2OverPi), a = _mm256_set1_ps(0.044715f),
               one = _mm256_set1_ps(1.f);
  auto gelu = [&](__m256 v) {
    const __m256 u = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(a, v), _mm256_mul_ps(v, v), v));
    return _mm256_div_ps(v, _mm256_add_ps(one, exp_avx2(u)));
  };
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(x + i, m, gelu(_mm256_maskload_ps(x + i, m)));
  }
  return;
#endif
  for (; i < n; ++i) {
    float v = x[i];
    x[i] = v / (1.f + std::exp(-2.f * kSqrt2OverPi * (v + 0.044715f * v * v * v)));
  }
}

float exp_and_sum(float* x, int n, float shift) {
  int i = 0;
  float sum = 0.f;
#ifdef CORTEX_AVX2
  __m256 acc = _mm256_setzero_ps();
  const __m256 s = _mm256_set1_ps(shift);
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float l : lanes) sum += l;
#endif
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

float dot_product(const float* a, const float* b, int n) {
  int i = 0;
  float sum = 0.f;
#ifdef CORTEX_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  acc0 = _mm256_add_ps(acc0, acc1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  sum = _mm_cvtss_f32(s);
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

namespace {
// out[n] += w * in[n]
void axpy(float* out, const float* in, float w, int n) {
  for (int i = 0; i < n; ++i) out[i] += w * in[i];
}
}  // namespace

#ifdef CORTEX_AVX512
namespace {
// Horizontal sum and maximum of 16 floats.
template <bool Max>
inline __m512 combine512(__m512 a, __m512 b) {
  return Max ? _mm512_max_ps(a, b) : _mm512_add_ps(a, b);
}
template <bool Max>
inline __m128 fold512(__m512 v) {
  v = combine512<Max>(v, _mm512_shuffle_f32x4(v, v, 0x4E));  // swap the 256-bit halves
  v = combine512<Max>(v, _mm512_shuffle_f32x4(v, v, 0xB1));  // swap neighbouring 128-bit lanes
  return _mm512_castps512_ps128(v);
}
inline float hsum512(__m512 v) {
  __m128 x = fold512<false>(v);
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
inline float hmax512(__m512 v) {
  __m128 x = fold512<true>(v);
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}
}  // namespace
#endif

namespace {
// Dot product and axpy of a float vector with a cached row of n values stored as T (float or F16).
float row_dot(const float* a, const float* row, int n) {
  return dot_product(a, row, n);
}
void row_axpy(float* out, const float* row, float w, int n) {
  axpy(out, row, w, n);
}
// F16 rows: widened 64 values at a time into a buffer on the stack, then as floats.
template <class F>
void widen_chunks(const uint16_t* row, int n, F&& f) {
  float chunk[64];
  for (int i = 0; i < n; i += 64) {
    const int m = std::min(64, n - i);
    widen_to_f32(chunk, DType::kF16, row + i, m);
    f(i, chunk, m);
  }
}
float row_dot(const float* a, const uint16_t* row, int n) {
  float sum = 0.f;
  widen_chunks(row, n, [&](int i, const float* c, int m) { sum += dot_product(a + i, c, m); });
  return sum;
}
void row_axpy(float* out, const uint16_t* row, float w, int n) {
  widen_chunks(row, n, [&](int i, const float* c, int m) { axpy(out + i, c, w, m); });
}
}  // namespace

#ifdef CORTEX_AVX512
namespace {
inline __m512 load16(const float* p) {
  return _mm512_loadu_ps(p);
}
inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Attention's kernels leave the cached rows to the hardware prefetchers. Until 2026-12-05 a position's
// rows for a thread's heads lay a whole cache row apart from the next position's, which the prefetchers
// did not follow, and the kernels prefetched each position's rows 16 positions ahead into L1 and 48 into
// L2 (single-stream attention took 8–46 % less time than with 4 ahead). The cache now keeps each head's
// rows together in blocks of 64 positions (KvCache), and without those prefetches a Q8_0 step took
// 0.97–1.00× the time at 880 positions and 0.99–1.00× at 16–144 (F16 and F32 caches alike; prompt
// processing 1.00×), steps of both alternating in one process (docs/performance.md).

// attention_heads for D = 64 (every GPT-2 size) and G heads, cached rows stored as T: each head's query
// and output stay in four registers.
template <int G, class T>
void attention_heads_64(float* out, const float* q, const CachedRows<T>& c, int h0, int n, float scale,
                        float* scores) {
  const T* const* key_blocks = c.key_blocks;
  const T* const* value_blocks = c.value_blocks;
  const int block_tokens = c.block_tokens;
  const size_t stride = c.position_stride, head_stride = c.head_stride;
  const size_t off = static_cast<size_t>(h0) * head_stride;
  __m512 qv[G][4];
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int d = 0; d < 4; ++d) qv[g][d] = _mm512_loadu_ps(q + 64 * g + 16 * d);
  const int blocks = (n + block_tokens - 1) / block_tokens;
  for (int b = 0, j = 0; b < blocks; ++b) {
    const T* k = key_blocks[b] + off;
    for (int i = 0; i < block_tokens && j < n; ++i, ++j, k += stride) {
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) {
        const T* kg = k + g * head_stride;
        __m512 s = _mm512_mul_ps(qv[g][0], load16(kg));
        s = _mm512_fmadd_ps(qv[g][1], load16(kg + 16), s);
        s = _mm512_fmadd_ps(qv[g][2], load16(kg + 32), s);
        s = _mm512_fmadd_ps(qv[g][3], load16(kg + 48), s);
        scores[static_cast<size_t>(g) * n + j] = hsum512(s) * scale;
      }
    }
  }
  float inv[G];
  for (int g = 0; g < G; ++g) {
    float* s = scores + static_cast<size_t>(g) * n;
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 16 <= n; j += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + j));
    float max_score = hmax512(vmax);
    for (; j < n; ++j) max_score = std::max(max_score, s[j]);
    inv[g] = 1.f / exp_and_sum(s, n, max_score);
  }
  __m512 o[G][4];
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int d = 0; d < 4; ++d) o[g][d] = _mm512_setzero_ps();
  for (int b = 0, j = 0; b < blocks; ++b) {
    const T* v = value_blocks[b] + off;
    for (int i = 0; i < block_tokens && j < n; ++i, ++j, v += stride) {
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) {
        const __m512 p = _mm512_set1_ps(scores[static_cast<size_t>(g) * n + j]);
        const T* vg = v + g * head_stride;
#pragma GCC unroll 4
        for (int d = 0; d < 4; ++d) o[g][d] = _mm512_fmadd_ps(p, load16(vg + 16 * d), o[g][d]);
      }
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g) {
    const __m512 vi = _mm512_set1_ps(inv[g]);
#pragma GCC unroll 4
    for (int d = 0; d < 4; ++d) _mm512_storeu_ps(out + 64 * g + 16 * d, _mm512_mul_ps(o[g][d], vi));
  }
}
}  // namespace
#endif

namespace {
// Calls fn(j, row) for head h's rows at positions 0 .. n - 1 of `blocks` (c.key_blocks or c.value_blocks),
// a block at a time: no division per position.
template <class T, class F>
void for_each_row(const CachedRows<T>& c, const T* const* blocks, int h, int n, F&& fn) {
  for (int b = 0, j = 0; j < n; ++b) {
    const T* row = blocks[b] + static_cast<size_t>(h) * c.head_stride;
    for (int i = 0; i < c.block_tokens && j < n; ++i, ++j, row += c.position_stride) fn(j, row);
  }
}

template <class T>
void attention_heads_of(float* out, const float* q, const CachedRows<T>& c, int h0, int heads, int n, int D,
                        float scale, float* scores) {
#ifdef CORTEX_AVX512
  if (D == 64) {
    if (heads > kMaxAttentionGroup) {  // in groups that fit the registers
      for (int h = 0; h < heads; h += kMaxAttentionGroup)
        attention_heads_of(out, q, c, h0 + h, std::min(kMaxAttentionGroup, heads - h), n, D, scale, scores);
      return;
    }
    const size_t off = static_cast<size_t>(h0) * D;
    auto run = [&]<int G>() { attention_heads_64<G, T>(out + off, q + off, c, h0, n, scale, scores); };
    switch (heads) {
      case 1:
        return run.template operator()<1>();
      case 2:
        return run.template operator()<2>();
      case 3:
        return run.template operator()<3>();
      case 4:
        return run.template operator()<4>();
      case 5:
        return run.template operator()<5>();
      default:
        return run.template operator()<6>();
    }
  }
#endif
  for (int h = h0; h < h0 + heads; ++h) {
    const size_t hd = static_cast<size_t>(h) * D;
    float max_score = -INFINITY;
    for_each_row(c, c.key_blocks, h, n, [&](int j, const T* k) {
      scores[j] = row_dot(q + hd, k, D) * scale;
      max_score = std::max(max_score, scores[j]);
    });
    const float inv = 1.f / exp_and_sum(scores, n, max_score);
    float* o = out + hd;
    std::fill(o, o + D, 0.f);
    for_each_row(c, c.value_blocks, h, n, [&](int j, const T* v) { row_axpy(o, v, scores[j] * inv, D); });
  }
}
}  // namespace

void attention_heads(float* out, const float* q, const CachedRows<float>& cache, int h0, int heads, int n,
                     int D, float scale, float* scores) {
  attention_heads_of(out, q, cache, h0, heads, n, D, scale, scores);
}

void attention_heads_f16(float* out, const float* q, const CachedRows<uint16_t>& cache, int h0, int heads,
                         int n, int D, float scale, float* scores) {
  attention_heads_of(out, q, cache, h0, heads, n, D, scale, scores);
}

#ifdef CORTEX_AVX512
namespace {
// A cached row's 64 values as floats: a float cache's in place, an F16 cache's widened into `buffer`.
inline const float* row_as_floats(const float* row, float*) {
  return row;
}
inline const float* row_as_floats(const uint16_t* row, float* buffer) {
#pragma GCC unroll 4
  for (int d = 0; d < 64; d += 16) _mm512_storeu_ps(buffer + d, load16(row + d));
  return buffer;
}

// One head h of 64 values for `rows` <= kAttentionTileRows query rows: row i
// (query at q + i·q_stride, output at out + i·out_stride) attends to positions 0 .. n0 + i. Lane i of
// every vector is row i: the queries, transposed and scaled, are one vector per dimension, a position's
// scores for all the rows come from 64 multiply-adds with its key's values broadcast, and the softmax
// runs across the lanes. scores: kAttentionTileRows · (n0 + rows) floats, [position][row].
template <class T>
void attention_tile_64(float* out, size_t out_stride, const float* q, size_t q_stride, int rows,
                       const CachedRows<T>& c, int h, int n0, float scale, float* scores) {
  constexpr int L = kAttentionTileRows;
  static_assert(L == 16, "one row per lane of a 16-float vector");
  const int n = n0 + rows;
  alignas(64) float qt[64][L];
  for (int d = 0; d < 64; ++d)
    for (int i = 0; i < L; ++i) qt[d][i] = i < rows ? q[static_cast<size_t>(i) * q_stride + d] * scale : 0.f;

  // Scores, R positions at a time, each position's key read once for all the rows.
  auto score_positions = [&]<int R>(int j) {
    alignas(64) float widened[R][64];
    const float* k[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) k[r] = row_as_floats(c.key(h, j + r), widened[r]);
    __m512 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int d = 0; d < 64; ++d) {
      const __m512 qd = _mm512_load_ps(qt[d]);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(k[r][d]), qd, acc[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) _mm512_storeu_ps(scores + static_cast<size_t>(j + r) * L, acc[r]);
  };
  int j = 0;
  for (; j + 8 <= n; j += 8) score_positions.template operator()<8>(j);
  for (; j < n; ++j) score_positions.template operator()<1>(j);

  // Row i sees positions up to n0 + i: a later position p is hidden from rows i < p - n0.
  auto visible = [&](int p) {
    return p <= n0 ? __mmask16{0xFFFF} : static_cast<__mmask16>(0xFFFFu << (p - n0));
  };
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int p = 0; p < n; ++p)
    vmax = _mm512_mask_max_ps(vmax, visible(p), vmax, _mm512_loadu_ps(scores + static_cast<size_t>(p) * L));
  __m512 vsum = _mm512_setzero_ps();
  for (int p = 0; p < n; ++p) {
    float* s = scores + static_cast<size_t>(p) * L;
    const __m512 e = _mm512_maskz_mov_ps(visible(p), exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(s), vmax)));
    _mm512_storeu_ps(s, e);
    vsum = _mm512_add_ps(vsum, e);
  }
  alignas(64) float inv[L];
  _mm512_store_ps(inv, _mm512_div_ps(_mm512_set1_ps(1.f), vsum));

  // Outputs, G rows at a time in 4·G registers; each position's values read once per G rows. Row
  // i0 + g takes positions up to n0 + i0 + g only: a hidden position's weight is 0, but its values
  // could be infinite or NaN (0 times which is NaN), and a row alone would never read them.
  auto output_rows = [&]<int G>(int i0) {
    __m512 o[G][4];
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
      for (int d = 0; d < 4; ++d) o[g][d] = _mm512_setzero_ps();
    const int first = n0 + i0;  // the last position every one of the G rows sees
    const int end = first + G;
    for (int p = 0; p < end; ++p) {
      const T* v = c.value(h, p);
      __m512 vv[4];
#pragma GCC unroll 4
      for (int d = 0; d < 4; ++d) vv[d] = load16(v + 16 * d);
      const float* w = scores + static_cast<size_t>(p) * L + i0;
      const int hidden = p - first;  // rows g < hidden do not see position p
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        if (g < hidden) continue;  // g is a constant once unrolled: the sums stay in registers
        const __m512 wg = _mm512_set1_ps(w[g]);
#pragma GCC unroll 4
        for (int d = 0; d < 4; ++d) o[g][d] = _mm512_fmadd_ps(wg, vv[d], o[g][d]);
      }
    }
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const __m512 s = _mm512_set1_ps(inv[i0 + g]);
      float* y = out + static_cast<size_t>(i0 + g) * out_stride;
#pragma GCC unroll 4
      for (int d = 0; d < 4; ++d) _mm512_storeu_ps(y + 16 * d, _mm512_mul_ps(o[g][d], s));
    }
  };
  int i = 0;
  for (; i + 4 <= rows; i += 4) output_rows.template operator()<4>(i);
  for (; i < rows; ++i) output_rows.template operator()<1>(i);
}
}  // namespace
#endif

namespace {
#ifdef CORTEX_AVX512
// Tiles of fewer rows than this go row by row (attention_heads_of): a tile's work is the same for 1 row
// as for 16.
constexpr int kMinTileRows = 4;
#endif

template <class T>
void attention_rows_of(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                       const CachedRows<T>& c, int h0, int heads, int n0, int D, float scale, float* scores) {
  for (int r0 = 0; r0 < m; r0 += kAttentionTileRows) {
    const int rows = std::min(kAttentionTileRows, m - r0);
    float* const tile_out = out + static_cast<size_t>(r0) * out_stride;
    const float* const tile_q = q + static_cast<size_t>(r0) * q_stride;
#ifdef CORTEX_AVX512
    if (D == 64 && rows >= kMinTileRows) {
      for (int h = h0; h < h0 + heads; ++h) {
        const size_t off = static_cast<size_t>(h) * 64;
        attention_tile_64<T>(tile_out + off, out_stride, tile_q + off, q_stride, rows, c, h, n0 + r0, scale,
                             scores);
      }
      continue;
    }
#endif
    for (int r = 0; r < rows; ++r)
      attention_heads_of(tile_out + static_cast<size_t>(r) * out_stride,
                         tile_q + static_cast<size_t>(r) * q_stride, c, h0, heads, n0 + r0 + r + 1, D, scale,
                         scores);
  }
}
}  // namespace

void attention_rows(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                    const CachedRows<float>& cache, int h0, int heads, int n0, int D, float scale,
                    float* scores) {
  attention_rows_of(out, out_stride, q, q_stride, m, cache, h0, heads, n0, D, scale, scores);
}

void attention_rows_f16(float* out, size_t out_stride, const float* q, size_t q_stride, int m,
                        const CachedRows<uint16_t>& cache, int h0, int heads, int n0, int D, float scale,
                        float* scores) {
  attention_rows_of(out, out_stride, q, q_stride, m, cache, h0, heads, n0, D, scale, scores);
}

// y[0:out] += x[i0:i1] · W[i0:i1, :] for W stored [in, out], into an accumulator that stays in L1. Four
// rows at a time, one from each quarter of [i0, i1): four sequential streams far apart (which keep more
// memory requests in flight than one), left to the hardware prefetchers as matvec_typed's are (its
// comment says why; until 2026-12-05 each stream was prefetched into L1 1 KiB ahead, which had read
// 5–18 % faster than three rows ahead into L2 at the moments it was chosen).
//
// With AVX2 and AVX-512 the loop over a row is written in vectors. Left to the compiler (a scalar loop
// over 16 columns inside one over the row, with prefetches between them), it became a dispatch per
// 16 columns into an unrolled block, with the stream pointers spilled to the stack: ~35 instructions for
// one vector of each stream. Written in vectors, with the same arithmetic and so the same results, one
// thread read a decode step's in-major products 10–12 % faster (its single-core bandwidth) and two
// threads 1–3 % faster on Zen 5 (AVX2's kernel 2–3 %), step by step in one process; one thread now reads
// them as fast as the same matrices stored [out, in] (matvec_typed).
void matvec_in_major_rows(float* __restrict y, const float* __restrict x, const float* __restrict w, int out,
                          int i0, int i1) {
  const size_t os = static_cast<size_t>(out);
  const int q = (i1 - i0) / 4;
  const size_t qs = static_cast<size_t>(q) * os;  // floats in each stream
  for (int i = i0; i < i0 + q; ++i) {
    const float x0 = x[i], x1 = x[i + q], x2 = x[i + 2 * q], x3 = x[i + 3 * q];
    const float* __restrict w0 = w + static_cast<size_t>(i) * os;
    const float* __restrict w1 = w0 + qs;
    const float* __restrict w2 = w1 + qs;
    const float* __restrict w3 = w2 + qs;
    int o = 0;
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
    using V = BestVec;
    const V::T v0 = V::set1(x0), v1 = V::set1(x1), v2 = V::set1(x2), v3 = V::set1(x3);
    // y[o..] += fma(x3, w3, fma(x2, w2, fma(x0, w0, x1·w1))), a vector of columns at a time, and the
    // columns after the last vector one by one in the same order (with std::fma, which this instruction
    // set computes in one instruction): what the compiler made of x0·w0 + x1·w1 + x2·w2 + x3·w3 with
    // contraction, which the kernel computed before, so the results are the same to the bit.
    auto columns = [&](int c) {
      V::T t = V::mul(v1, V::load(w1 + c));
      t = V::fmadd(v0, V::load(w0 + c), t);
      t = V::fmadd(v2, V::load(w2 + c), t);
      t = V::fmadd(v3, V::load(w3 + c), t);
      V::store(y + c, V::add(V::load(y + c), t));
    };
    for (; o + V::kWidth <= out; o += V::kWidth) columns(o);
    for (; o < out; ++o) y[o] += std::fma(x3, w3[o], std::fma(x2, w2[o], std::fma(x0, w0[o], x1 * w1[o])));
#else
    for (; o + 16 <= out; o += 16) {
#pragma GCC unroll 16
      for (int u = o; u < o + 16; ++u) y[u] += x0 * w0[u] + x1 * w1[u] + x2 * w2[u] + x3 * w3[u];
    }
    for (; o < out; ++o) y[o] += x0 * w0[o] + x1 * w1[o] + x2 * w2[o] + x3 * w3[o];
#endif
  }
  for (int i = i0 + 4 * q; i < i1; ++i) {
    const float xi = x[i];
    const float* __restrict wi = w + static_cast<size_t>(i) * os;
    for (int o = 0; o < out; ++o) y[o] += xi * wi[o];
  }
}

CORTEX_ISA_END
