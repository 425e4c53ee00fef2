#include "model/kernels.h"

#include "model/matvec_typed.h"
#include "model/small_batch_gemm.h"
#include "util/error.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CORTEX_AVX2 1
#endif
#if defined(__AVX512F__)
#define CORTEX_AVX512 1
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() as the unused source of masked builtins, which
// -W(maybe-)uninitialized report wherever they are inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace cortex::model {

void configure_blas_threads() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

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

// gelu(x) = 0.5·x·(1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi)·(x + 0.044715·x³).
void gelu_forward(float* x, size_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  size_t i = 0;
#ifdef CORTEX_AVX512
  {
    const __m512 c = _mm512_set1_ps(-2.f * kSqrt2OverPi), a = _mm512_set1_ps(0.044715f),
                 one = _mm512_set1_ps(1.f);
    for (; i + 16 <= n; i += 16) {
      __m512 v = _mm512_loadu_ps(x + i);
      __m512 u = _mm512_mul_ps(c, _mm512_fmadd_ps(_mm512_mul_ps(a, v), _mm512_mul_ps(v, v), v));
      _mm512_storeu_ps(x + i, _mm512_div_ps(v, _mm512_add_ps(one, exp_avx512(u))));
    }
  }
#endif
#ifdef CORTEX_AVX2
  const __m256 c = _mm256_set1_ps(-2.f * kSqrt2OverPi), a = _mm256_set1_ps(0.044715f),
               one = _mm256_set1_ps(1.f);
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 u = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(a, v), _mm256_mul_ps(v, v), v));
    _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, exp_avx2(u))));
  }
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

void axpy(float* out, const float* in, float w, int n) {
  for (int i = 0; i < n; ++i) out[i] += w * in[i];
}

#ifdef CORTEX_AVX512
namespace {
// Horizontal sum and maximum of 16 floats.
inline __m128 fold512(__m512 v, __m512 (*op)(__m512, __m512)) {
  v = op(v, _mm512_shuffle_f32x4(v, v, 0x4E));  // swap the 256-bit halves
  v = op(v, _mm512_shuffle_f32x4(v, v, 0xB1));  // swap neighbouring 128-bit lanes
  return _mm512_castps512_ps128(v);
}
inline float hsum512(__m512 v) {
  __m128 x = fold512(v, [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); });
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
inline float hmax512(__m512 v) {
  __m128 x = fold512(v, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); });
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}
}  // namespace
#endif

#ifdef CORTEX_AVX512
namespace {
// attention_heads for D = 64 (every GPT-2 size) and G heads: each head's query and output stay in four
// registers.
template <int G>
void attention_heads_64(float* out, const float* q, const float* const* key_blocks,
                        const float* const* value_blocks, int block_tokens, size_t stride, size_t off, int n,
                        float scale, float* scores) {
  __m512 qv[G][4];
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int d = 0; d < 4; ++d) qv[g][d] = _mm512_loadu_ps(q + 64 * g + 16 * d);
  const int blocks = (n + block_tokens - 1) / block_tokens;
  for (int b = 0, j = 0; b < blocks; ++b) {
    const float* k = key_blocks[b] + off;
    for (int i = 0; i < block_tokens && j < n; ++i, ++j, k += stride) {
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) {
        const float* kg = k + 64 * g;
        __m512 s = _mm512_mul_ps(qv[g][0], _mm512_loadu_ps(kg));
        s = _mm512_fmadd_ps(qv[g][1], _mm512_loadu_ps(kg + 16), s);
        s = _mm512_fmadd_ps(qv[g][2], _mm512_loadu_ps(kg + 32), s);
        s = _mm512_fmadd_ps(qv[g][3], _mm512_loadu_ps(kg + 48), s);
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
    const float* v = value_blocks[b] + off;
    for (int i = 0; i < block_tokens && j < n; ++i, ++j, v += stride) {
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) {
        const __m512 p = _mm512_set1_ps(scores[static_cast<size_t>(g) * n + j]);
#pragma GCC unroll 4
        for (int d = 0; d < 4; ++d)
          o[g][d] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + 64 * g + 16 * d), o[g][d]);
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

void attention_heads(float* out, const float* q, const float* const* key_blocks,
                     const float* const* value_blocks, int block_tokens, size_t stride, int h0, int heads,
                     int n, int D, float scale, float* scores) {
  const size_t off = static_cast<size_t>(h0) * D;
  out += off, q += off;
  const int blocks = (n + block_tokens - 1) / block_tokens;
#ifdef CORTEX_AVX512
  if (D == 64) {
    auto run = [&]<int G>() {
      attention_heads_64<G>(out, q, key_blocks, value_blocks, block_tokens, stride, off, n, scale, scores);
    };
    if (heads > kMaxAttentionGroup) {  // in groups that fit the registers
      for (int h = 0; h < heads; h += kMaxAttentionGroup)
        attention_heads(out - off, q - off, key_blocks, value_blocks, block_tokens, stride, h0 + h,
                        std::min(kMaxAttentionGroup, heads - h), n, D, scale, scores);
      return;
    }
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
  for (int h = 0; h < heads; ++h) {
    const size_t hd = static_cast<size_t>(h) * D;
    float max_score = -INFINITY;
    for (int b = 0, j = 0; b < blocks; ++b)
      for (int i = 0; i < block_tokens && j < n; ++i, ++j) {
        scores[j] =
            dot_product(q + hd, key_blocks[b] + off + hd + static_cast<size_t>(i) * stride, D) * scale;
        max_score = std::max(max_score, scores[j]);
      }
    const float inv = 1.f / exp_and_sum(scores, n, max_score);
    float* o = out + hd;
    std::fill(o, o + D, 0.f);
    for (int b = 0, j = 0; b < blocks; ++b)
      for (int i = 0; i < block_tokens && j < n; ++i, ++j)
        axpy(o, value_blocks[b] + off + hd + static_cast<size_t>(i) * stride, scores[j] * inv, D);
  }
}

namespace {

// y[0:out] += x[i0:i1] · W[i0:i1, :] for W stored [in, out]: streams rows i0..i1 of W contiguously,
// four at a time, into an accumulator that stays in L1.
void matvec_in_major_rows(float* __restrict y, const float* __restrict x, const float* __restrict w, int out,
                          int i0, int i1) {
  int i = i0;
  for (; i + 4 <= i1; i += 4) {
    const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
    const float* __restrict w0 = w + static_cast<size_t>(i) * out;
    const float* __restrict w1 = w0 + out;
    const float* __restrict w2 = w1 + out;
    const float* __restrict w3 = w2 + out;
    for (int o = 0; o < out; ++o) y[o] += x0 * w0[o] + x1 * w1[o] + x2 * w2[o] + x3 * w3[o];
  }
  for (; i < i1; ++i) {
    const float xi = x[i];
    const float* __restrict wi = w + static_cast<size_t>(i) * out;
    for (int o = 0; o < out; ++o) y[o] += xi * wi[o];
  }
}

// y[o] (+)= dot(x, W[o, :]) for W stored [out, in], o in [o0, o1): four rows at a time, so each load
// of x serves four weight streams.
void matvec_out_major(float* y, const float* x, const float* w, int in, int o0, int o1) {
  int o = o0;
#ifdef CORTEX_AVX2
  if (in % 8 == 0) {
    for (; o + 4 <= o1; o += 4) {
      const float* w0 = w + static_cast<size_t>(o) * in;
      const float* w1 = w0 + in;
      const float* w2 = w1 + in;
      const float* w3 = w2 + in;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
             a3 = _mm256_setzero_ps();
      for (int i = 0; i < in; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0 + i), a0);
        a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1 + i), a1);
        a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2 + i), a2);
        a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3 + i), a3);
      }
      // Horizontal sums of the four accumulators at once.
      __m256 s01 = _mm256_hadd_ps(a0, a1), s23 = _mm256_hadd_ps(a2, a3);
      __m256 s = _mm256_hadd_ps(s01, s23);
      __m128 r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
      _mm_storeu_ps(y + o, _mm_add_ps(_mm_loadu_ps(y + o), r));
    }
  }
#endif
  for (; o < o1; ++o) y[o] += dot_product(x, w + static_cast<size_t>(o) * in, in);
}

}  // namespace

// Below this many output columns per thread (rows of W shorter than 4 KiB, one page), batched products
// split W by rows across the threads rather than by columns.
constexpr int kMinColumnsPerThread = 1024;

void linear_forward(float* out, const float* in, const Linear& L, int rows, bool accumulate,
                    ThreadPool& pool) {
  const int O = L.out, I = L.in;
  // Initialise the output with the bias (added to what is there when accumulating).
  auto init = [&](size_t o0, size_t o1) {
    for (int r = 0; r < rows; ++r) {
      float* y = out + static_cast<size_t>(r) * O;
      if (!accumulate) std::fill(y + o0, y + o1, 0.f);
      if (L.bias != nullptr)
        for (size_t o = o0; o < o1; ++o) y[o] += L.bias[o];
    }
  };
  constexpr size_t kAlign = 16;
  const int threads = pool.size();
  if (L.dtype != DType::kF32) {
    // F16 and Q8_0 weights, stored [out, in]: output columns split across the threads (contiguous rows
    // of W each).
    if (L.in_major) throw invalid_argument("F16 and Q8_0 weights must be stored [out, in]");
    pool.parallel_for(
        static_cast<size_t>(O),
        [&](size_t o0, size_t o1) {
          init(o0, o1);
          const int a = static_cast<int>(o0), b = static_cast<int>(o1);
          if (rows == 1) {
            matvec_typed(out, in, L.weight, L.dtype, I, a, b);
          } else if (rows <= kSmallBatchRows) {
            small_batch_gemm_out_major_typed(out, in, L.weight, L.dtype, rows, I, O, a, b);
          } else {
            // Prefill: panels of W's rows converted to F32, each multiplied by sgemm for all the rows.
            constexpr int kPanel = 64;
            for (int n = a; n < b; n += kPanel) {
              const int m = std::min(kPanel, b - n);
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, m, I, 1.f, in, I,
                          dequantize_rows(L.weight, L.dtype, I, n, n + m), I, 1.f, out + n, O);
            }
          }
        },
        kAlign);
    return;
  }
  if (rows == 1 && L.in_major) {
    // Split the input rows: each thread streams one contiguous part of W into its own accumulator
    // (thread 0 into out), then the partial sums are added. Column splits would interleave the threads'
    // reads within every row and defeat the hardware prefetchers.
    // The caller's buffer, reused across calls (this runs dozens of times per decoded token). Workers
    // must reach it through this pointer: naming a thread_local inside the task would give each worker
    // its own, empty one.
    thread_local std::vector<float> partial_buffer;
    partial_buffer.assign(static_cast<size_t>(threads - 1) * O, 0.f);
    float* const partial = partial_buffer.data();
    pool.run([&](int t) {
      const int per = (I / threads + 3) / 4 * 4;
      const int i0 = std::min(I, per * t), i1 = t + 1 == threads ? I : std::min(I, i0 + per);
      float* acc = t == 0 ? out : partial + static_cast<size_t>(t - 1) * O;
      if (t == 0) init(0, static_cast<size_t>(O));
      matvec_in_major_rows(acc, in, L.f32(), O, i0, i1);
    });
    for (int t = 1; t < threads; ++t) {
      const float* p = partial + static_cast<size_t>(t - 1) * O;
      for (int o = 0; o < O; ++o) out[o] += p[o];
    }
    return;
  }
  if (rows == 1) {
    pool.parallel_for(
        static_cast<size_t>(O),
        [&](size_t o0, size_t o1) {
          init(o0, o1);
          matvec_out_major(out, in, L.f32(), I, static_cast<int>(o0), static_cast<int>(o1));
        },
        kAlign);
    return;
  }
  if (rows <= kSmallBatchRows && L.in_major && threads > 1 && O / threads < kMinColumnsPerThread) {
    // Few output columns (W's rows short): split W by its rows instead, so that each thread streams one
    // contiguous block of W; the threads' partial products are added afterwards.
    thread_local std::vector<float> partial_buffer;  // reached through `partial` (see above)
    const size_t out_floats = static_cast<size_t>(rows) * O;
    partial_buffer.resize(static_cast<size_t>(threads - 1) * out_floats);
    float* const partial = partial_buffer.data();
    pool.run([&](int t) {
      const int per = (I / threads + 15) / 16 * 16;
      const int i0 = std::min(I, per * t), i1 = t + 1 == threads ? I : std::min(I, i0 + per);
      float* acc = t == 0 ? out : partial + static_cast<size_t>(t - 1) * out_floats;
      if (t == 0)
        init(0, static_cast<size_t>(O));
      else
        std::fill(acc, acc + out_floats, 0.f);
      if (i1 > i0)
        small_batch_gemm_in_major(acc, in + i0, I, L.f32() + static_cast<size_t>(i0) * O, rows, i1 - i0, O, 0,
                                  O);
    });
    pool.parallel_for(
        out_floats,
        [&](size_t b, size_t e) {
          for (int t = 1; t < threads; ++t) {
            const float* p = partial + static_cast<size_t>(t - 1) * out_floats;
            for (size_t i = b; i < e; ++i) out[i] += p[i];
          }
        },
        kAlign);
    return;
  }
  if (rows <= kSmallBatchRows) {
    pool.parallel_for(
        static_cast<size_t>(O),
        [&](size_t o0, size_t o1) {
          init(o0, o1);
          if (L.in_major)
            small_batch_gemm_in_major(out, in, I, L.f32(), rows, I, O, static_cast<int>(o0),
                                      static_cast<int>(o1));
          else
            small_batch_gemm_out_major(out, in, L.f32(), rows, I, O, static_cast<int>(o0),
                                       static_cast<int>(o1));
        },
        kAlign);
    return;
  }
  pool.parallel_for(
      static_cast<size_t>(O),
      [&](size_t o0, size_t o1) {
        init(o0, o1);
        const int n = static_cast<int>(o1 - o0);
        if (L.in_major) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, I, 1.f, in, I, L.f32() + o0, O, 1.f,
                      out + o0, O);
        } else {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, I, 1.f, in, I,
                      L.f32() + o0 * static_cast<size_t>(I), I, 1.f, out + o0, O);
        }
      },
      kAlign);
}

}  // namespace cortex::model
