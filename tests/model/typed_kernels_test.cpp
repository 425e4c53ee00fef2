// The F16 and Q8_0 weight kernels (matrix-vector, small-batch and prefill products) of every instruction
// set this CPU supports against a scalar reference on the same weights converted to F32, for every row
// count 1..34 and prompts past them (63, 128, 129), output counts that leave partial tiles, and one to
// three threads; Q8_0 both row by row (as GGUF files hold it) and in groups of 16 rows (as conversion on
// load lays it out, q8_0_groups.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "model/kernel_table.h"
#include "model/kernels.h"
#include "model/q8_0_groups.h"
#include "model/weight_types.h"
#include "util/error.h"

namespace cortex::model {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A weight type and layout under test: F16, Q8_0 row by row, or Q8_0 in groups of 16 rows.
struct Weights {
  DType t;
  bool groups = false;
};
std::string weights_name(Weights w) {
  return std::string(dtype_flag_name(w.t)) + (w.groups ? "_groups" : "");
}

struct TypedMatrix {
  std::vector<std::byte> data;  // [N, K] stored as dtype (in groups where asked)
  std::vector<float> f32;       // the same values converted back to F32 (what the kernels must use)
};

TypedMatrix make_matrix(Weights kind, int N, int K, uint32_t seed) {
  const DType t = kind.t;
  auto w = random_vector(static_cast<size_t>(N) * K, seed, 0.5f);
  TypedMatrix m;
  m.data.resize(dtype_bytes(t, int64_t{N} * K));
  convert_from_f32(m.data.data(), t, w.data(), int64_t{N} * K);
  m.f32.resize(w.size());
  convert_to_f32(m.f32.data(), t, m.data.data(), int64_t{N} * K);
  if (kind.groups) {
    std::vector<std::byte> grouped(q8_0_group_bytes(N, K));
    group_q8_0_rows(grouped.data(), reinterpret_cast<const BlockQ8_0*>(m.data.data()), N, K);
    m.data = std::move(grouped);
  }
  return m;
}

// A layer [N, K] stored as t, with a random bias: the matrix (seed), the bias (seed + 1) and the Linear
// that reads them.
struct TypedLayer {
  TypedMatrix m;
  std::vector<float> bias;
  Linear L;
  TypedLayer(Weights kind, int N, int K, uint32_t seed)
      : m(make_matrix(kind, N, K, seed)),
        bias(random_vector(static_cast<size_t>(N), seed + 1, 1.f)),
        L{m.data.data(), bias.data(), K, N, false, kind.t, kind.groups} {}
  TypedLayer(const TypedLayer&) = delete;  // L points into m and bias
  TypedLayer& operator=(const TypedLayer&) = delete;
};

// out[r][n] = bias[n] + Σ_k in[r][k] · W[n][k], in double.
std::vector<double> reference(const std::vector<float>& in, const std::vector<float>& w,
                              const std::vector<float>& bias, int rows, int K, int N) {
  std::vector<double> out(static_cast<size_t>(rows) * N);
  for (int r = 0; r < rows; ++r)
    for (int n = 0; n < N; ++n) {
      double s = bias[static_cast<size_t>(n)];
      for (int k = 0; k < K; ++k)
        s += double{in[static_cast<size_t>(r) * K + k]} * w[static_cast<size_t>(n) * K + k];
      out[static_cast<size_t>(r) * N + n] = s;
    }
  return out;
}

// Summation order differs from the reference; sums of K products of magnitude ~0.5 agree to ~1e-5
// relative to their size.
constexpr double kTolerance = 2e-4;

// Whether a product takes x rounded to int16 blocks: with AVX2 or AVX-512, one row of Q8_0 weights row by
// row (matvec_typed.cpp), and up to q8_0_group_prompt_rows rows of Q8_0 in groups
// (q8_0_group_products.cpp); the portable build takes x as it is.
bool rounds_x(Isa isa, Weights w, int rows) {
  if (w.t != DType::kQ8_0 || isa == Isa::kPortable) return false;
  return rows == 1 || (w.groups && rows <= kernel_table(isa).q8_0_group_prompt_rows);
}

// Each input value's rounding step there: its 32-value block's largest magnitude / 32767.
std::vector<double> x_steps(const std::vector<float>& in, int K) {
  std::vector<double> step(static_cast<size_t>(K));
  for (int b = 0; b < K / kQ8Block; ++b) {
    double m = 0;
    for (int e = 0; e < kQ8Block; ++e)
      m = std::max(m, double{std::fabs(in[static_cast<size_t>(b * kQ8Block + e)])});
    for (int e = 0; e < kQ8Block; ++e) step[static_cast<size_t>(b * kQ8Block + e)] = m / 32767;
  }
  return step;
}

// How far each output of a product may be from the reference: kTolerance for the summation order, and
// where x is rounded (rounds_x), Σ_k |W[n][k]| · step(k) / 2 for rounding to nearest, with 2^-6 more for
// the float arithmetic of the rounding itself (x · 32767 / m is off by a few units in the last place).
std::vector<double> allowed_error(Isa isa, Weights t, const std::vector<float>& in,
                                  const std::vector<float>& w, const std::vector<double>& expect, int rows,
                                  int K, int N) {
  std::vector<double> allowed(expect.size());
  for (size_t i = 0; i < expect.size(); ++i) allowed[i] = kTolerance * (1 + std::fabs(expect[i]));
  if (!rounds_x(isa, t, rows)) return allowed;
  for (int r = 0; r < rows; ++r) {
    const auto step = x_steps(std::vector<float>(in.begin() + static_cast<ptrdiff_t>(r) * K,
                                                 in.begin() + static_cast<ptrdiff_t>(r + 1) * K),
                              K);
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k)
        allowed[static_cast<size_t>(r) * N + n] += std::fabs(double{w[static_cast<size_t>(n) * K + k]}) *
                                                   step[static_cast<size_t>(k)] / 2 * (1 + 1.0 / 64);
  }
  return allowed;
}

// Runs with one instruction set's kernels selected (restored after).
class TypedKernelsTest : public ::testing::TestWithParam<std::tuple<Isa, Weights>> {
 protected:
  void SetUp() override { select_isa(std::get<0>(GetParam())); }
  void TearDown() override { select_isa(supported_isas().back()); }
  const KernelTable& table() const { return kernel_table(std::get<0>(GetParam())); }
};

TEST_P(TypedKernelsTest, LinearMatchesTheScalarReferenceForEveryRowCount) {
  const Weights t = std::get<1>(GetParam());
  configure_blas_threads();
  // K: a multiple of 32 (Q8_0 blocks) and, for F16, one that leaves a tail of the 16-wide vectors.
  // N: partial tiles of 4, 8 and 16 output columns, and more columns than threads' alignment.
  std::vector<std::pair<int, int>> shapes = {{96, 37}, {64, 100}};
  if (t.t == DType::kF16) shapes.push_back({72, 29});
  for (const auto& [K, N] : shapes) {
    const TypedLayer layer(t, N, K, 11);
    const auto& [m, bias, L] = layer;
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      // Every decode-step size; then prompts the small-batch kernels take in blocks of 32 rows (up to 128
      // with AVX-512) and one past them (sgemm).
      std::vector<int> row_counts;
      for (int rows = 1; rows <= 34; ++rows) row_counts.push_back(rows);
      for (int rows : {63, 128, 129}) row_counts.push_back(rows);
      for (int rows : row_counts) {
        if (threads == 3 && rows % 5 != 1) continue;  // a sample with three threads keeps the test fast
        auto in = random_vector(static_cast<size_t>(rows) * K, 13 + static_cast<uint32_t>(rows), 1.f);
        auto expect = reference(in, m.f32, bias, rows, K, N);
        const auto allowed = allowed_error(std::get<0>(GetParam()), t, in, m.f32, expect, rows, K, N);
        std::vector<float> out(static_cast<size_t>(rows) * N, -7.f);
        linear_forward(out.data(), in.data(), L, rows, false, pool);
        for (size_t i = 0; i < out.size(); ++i)
          ASSERT_NEAR(out[i], expect[i], allowed[i])
              << weights_name(t) << " K " << K << " N " << N << " threads " << threads << " rows " << rows
              << " at " << i;
        std::vector<float> acc(out.size(), 1.5f);  // accumulate: added to what is there
        linear_forward(acc.data(), in.data(), L, rows, true, pool);
        for (size_t i = 0; i < acc.size(); ++i)
          ASSERT_NEAR(acc[i], expect[i] + 1.5, allowed[i])
              << weights_name(t) << " accumulating, rows " << rows;
      }
    }
  }
}

// One row against a matrix of long rows: each thread's share is read in several pieces (on two threads
// 9 per share in F32, 5 in F16, 3 in Q8_0), and a thread done with its own takes pieces of the other's;
// the rows after a share's quarters (N odd) too.
TEST_P(TypedKernelsTest, OneRowProductsReadInPiecesMatchTheScalarReference) {
  const Weights t = std::get<1>(GetParam());
  const int K = 2048, N = 1027;
  const TypedLayer layer(t, N, K, 41);
  const auto& [m, bias, L] = layer;
  auto in = random_vector(K, 43, 1.f);
  auto expect = reference(in, m.f32, bias, 1, K, N);
  const auto allowed = allowed_error(std::get<0>(GetParam()), t, in, m.f32, expect, 1, K, N);
  const auto steps = x_steps(in, K);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int rep = 0; rep < 20; ++rep) {
      std::vector<float> out(static_cast<size_t>(N), -7.f), acc(static_cast<size_t>(N), 1.5f),
          gelu(static_cast<size_t>(N), -7.f);
      linear_forward(out.data(), in.data(), L, 1, false, pool);
      linear_forward(acc.data(), in.data(), L, 1, true, pool);
      linear_forward(gelu.data(), in.data(), L, 1, false, pool, Activation::kGelu);
      std::vector<float> expect_gelu = out;
      gelu_forward(expect_gelu.data(), expect_gelu.size());
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_NEAR(out[i], expect[i], allowed[i]) << threads << " threads, column " << i;
        ASSERT_NEAR(acc[i], out[i] + 1.5f, 1e-5f * (1 + std::fabs(out[i])))
            << threads << " threads, accumulating, column " << i;
        ASSERT_EQ(gelu[i], expect_gelu[i]) << threads << " threads, GELU, column " << i;
      }
      if (rounds_x(std::get<0>(GetParam()), t, 1)) {
        // Rounding to nearest leaves each value's error uniform within half a step: an output's error has
        // variance Σ_k W[n][k]² · step(k)² / 12. Over the row's outputs the error's mean square stays
        // near the variances' mean (truncating would make it 4×; the summation order adds ~1e-10).
        double err2 = 0, var = 0;
        for (int n = 0; n < N; ++n) {
          const double e = out[static_cast<size_t>(n)] - expect[static_cast<size_t>(n)];
          err2 += e * e;
          for (int k = 0; k < K; ++k) {
            const double wk = m.f32[static_cast<size_t>(n) * K + k] * steps[static_cast<size_t>(k)];
            var += wk * wk / 12;
          }
        }
        EXPECT_LT(err2, 1.5 * var + N * 1e-10) << threads << " threads: x's rounding error is too large";
      }
    }
  }
}

// A one-row product whose shares follow the threads' speeds (as a decode step sizes them): every piece of
// every share run once gives the same outputs to the last bit as equal shares, reads W's bytes once in
// all, and the faster thread's share holds more pieces. Speeds that are not one per thread, or not above
// 0, are refused.
TEST_P(TypedKernelsTest, OneRowProductSharesFollowTheThreadsSpeeds) {
  const Weights t = std::get<1>(GetParam());
  const int K = 2048, N = 1027;
  const TypedLayer layer(t, N, K, 47);
  const auto& [m, bias, L] = layer;
  const auto in = random_vector(K, 49, 1.f);
  auto run_all = [&](int threads, std::vector<float> speeds, size_t* bytes, std::vector<int>* pieces) {
    std::vector<float> out(static_cast<size_t>(N), -7.f);
    const OneRowProduct product(out.data(), L, false, Activation::kGelu, threads, speeds);
    uint8_t rounded = 0;
    *bytes = 0;
    pieces->clear();
    for (int share = 0; share < threads; ++share) {
      pieces->push_back(product.pieces(share));
      for (int p = 0; p < product.pieces(share); ++p)
        *bytes += product.run(share, static_cast<uint32_t>(p), in.data(), &rounded);
    }
    return out;
  };
  size_t bytes = 0;
  std::vector<int> pieces;
  const auto equal = run_all(2, {}, &bytes, &pieces);
  EXPECT_EQ(bytes, L.weight_bytes());
  for (const auto& speeds : std::vector<std::vector<float>>{{0.8f, 0.2f}, {0.2f, 0.8f}, {0.1f, 0.3f, 0.6f}}) {
    const int threads = static_cast<int>(speeds.size());
    const auto out = run_all(threads, speeds, &bytes, &pieces);
    for (size_t i = 0; i < out.size(); ++i)
      ASSERT_EQ(out[i], equal[i]) << threads << " threads, column " << i;
    EXPECT_EQ(bytes, L.weight_bytes()) << threads << " threads";
    for (int share = 1; share < threads; ++share)
      EXPECT_NE(pieces[static_cast<size_t>(share)] > pieces[static_cast<size_t>(share - 1)],
                speeds[static_cast<size_t>(share)] < speeds[static_cast<size_t>(share - 1)])
          << threads << " threads, share " << share;
  }
  std::vector<float> out(static_cast<size_t>(N));
  for (const auto& speeds :
       std::vector<std::vector<float>>{{1.f}, {1.f, 0.f}, {1.f, std::nanf("")}, {1.f, -1.f}})
    EXPECT_THROW(OneRowProduct(out.data(), L, false, Activation::kNone, 2, speeds), Error);
}

// A decode step of a few rows against a matrix of long rows: each thread's part is read in pieces (128
// rows of W each for K 2048: five per part on two threads), which a thread done with its own takes from
// the other's. Every output is the scalar reference's, with GELU fused too, and the same to the last bit
// whichever thread computed which piece.
TEST_P(TypedKernelsTest, BatchedProductsReadInPiecesMatchTheScalarReference) {
  const Weights t = std::get<1>(GetParam());
  const int K = 2048, N = 1027;
  const TypedLayer layer(t, N, K, 61);
  const auto& [m, bias, L] = layer;
  for (int rows : {2, 8, 13, 16}) {
    auto in = random_vector(static_cast<size_t>(rows) * K, 63 + static_cast<uint32_t>(rows), 1.f);
    auto expect = reference(in, m.f32, bias, rows, K, N);
    const auto allowed = allowed_error(std::get<0>(GetParam()), t, in, m.f32, expect, rows, K, N);
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (int rep = 0; rep < 3; ++rep) {
        std::vector<float> out(static_cast<size_t>(rows) * N, -7.f), gelu(out.size(), -7.f);
        linear_forward(out.data(), in.data(), L, rows, false, pool);
        linear_forward(gelu.data(), in.data(), L, rows, false, pool, Activation::kGelu);
        std::vector<float> expect_gelu = out;
        gelu_forward(expect_gelu.data(), expect_gelu.size());
        for (size_t i = 0; i < out.size(); ++i) {
          ASSERT_NEAR(out[i], expect[i], allowed[i])
              << weights_name(t) << " rows " << rows << " threads " << threads << " at " << i;
          ASSERT_NEAR(gelu[i], expect_gelu[i], 1e-5f * (1 + std::fabs(expect_gelu[i])))
              << weights_name(t) << " GELU, rows " << rows << " threads " << threads << " at " << i;
        }
        if (first.empty()) first = out;
        ASSERT_EQ(out, first) << weights_name(t) << " rows " << rows << " threads " << threads;
      }
    }
  }
}

// The kernel for pieces of a range in quarters (Q8_0 in groups: runs of whole groups) computes, piece
// after piece in any order, what the whole range's product does (the same sums in the same order),
// whether each piece rounds x itself or all take x's int16 blocks rounded once (round_to_int16_blocks, as
// linear_forward hands them to a thread's pieces).
TEST_P(TypedKernelsTest, PiecesEqualTheWholeRange) {
  const Weights kind = std::get<1>(GetParam());
  const DType t = kind.t;
  const int K = 96, N = 203, o0 = 5, o1 = 202;  // 197 rows: quarters of 49, one row after them
  TypedMatrix m = make_matrix(kind, N, K, 51);
  auto in = random_vector(K, 52, 1.f);
  Int16Blocks blocks;
  table().round_to_int16_blocks(&blocks, in.data(), K);
  if (kind.groups) {
    // Groups: 203 rows are 13 groups (the last of 11 rows). Groups 1..12 in pieces from the back, as a
    // thread taking another's pieces does, compute what one call over them does, to the last bit.
    std::vector<float> whole(static_cast<size_t>(N) + 16, 0.f);
    table().q8_0_group_products(whole.data(), in.data(), &blocks, m.data.data(), 1, K, N, 1, 13);
    std::vector<float> pieces(whole.size(), 0.f);
    for (int g1 = 13; g1 > 1; g1 -= 5)
      table().q8_0_group_products(pieces.data(), in.data(), &blocks, m.data.data(), 1, K, N,
                                  std::max(1, g1 - 5), g1);
    for (int n = 0; n < static_cast<int>(whole.size()); ++n)
      ASSERT_EQ(pieces[static_cast<size_t>(n)], whole[static_cast<size_t>(n)]) << n;
    for (int n = 0; n < 16; ++n) EXPECT_EQ(whole[static_cast<size_t>(n)], 0.f) << "group 0 is not asked for";
    for (int n = N; n < N + 16; ++n) EXPECT_EQ(whole[static_cast<size_t>(n)], 0.f) << "past the last row";
    if (rounds_x(std::get<0>(GetParam()), kind, 1)) {
      Int16Blocks shorter;
      table().round_to_int16_blocks(&shorter, in.data(), K - kQ8Block);
      EXPECT_THROW(
          table().q8_0_group_products(whole.data(), in.data(), &shorter, m.data.data(), 1, K, N, 0, 1),
          Error);
    }
    return;
  }
  if (rounds_x(std::get<0>(GetParam()), kind, 1)) {
    EXPECT_EQ(blocks.d.size(), size_t{K / kQ8Block});
  }
  std::vector<float> whole(static_cast<size_t>(N), 0.f);
  table().matvec_typed(whole.data(), in.data(), m.data.data(), t, K, o0, o1);
  const int q = (o1 - o0) / 4;
  const Int16Blocks* const rounded_once = &blocks;
  for (const Int16Blocks* xi : {static_cast<const Int16Blocks*>(nullptr), rounded_once}) {
    std::vector<float> pieces(whole.size(), 0.f);
    for (int i1 = q; i1 > 0; i1 -= 10)  // from the back, as a thread taking another's pieces does
      table().matvec_typed_quarters(pieces.data(), in.data(), xi, m.data.data(), t, K, o0, q,
                                    std::max(0, i1 - 10), i1);
    table().matvec_typed(pieces.data(), in.data(), m.data.data(), t, K, o0 + 4 * q, o1);
    for (int n = 0; n < N; ++n)
      ASSERT_EQ(pieces[static_cast<size_t>(n)], whole[static_cast<size_t>(n)])
          << n << (xi ? ", x rounded once" : "");
  }
  if (rounds_x(std::get<0>(GetParam()), kind, 1)) {
    // Blocks rounded from an x of another length are refused, not read past their end.
    Int16Blocks shorter;
    table().round_to_int16_blocks(&shorter, in.data(), K - kQ8Block);
    std::vector<float> y(static_cast<size_t>(N), 0.f);
    EXPECT_THROW(
        table().matvec_typed_quarters(y.data(), in.data(), &shorter, m.data.data(), t, K, o0, q, 0, q),
        Error);
  }
}

// GELU fused into the typed products (one row, a few, sgemm's panels) equals the product then GELU.
TEST_P(TypedKernelsTest, FusedGeluEqualsTheProductThenGelu) {
  const Weights t = std::get<1>(GetParam());
  configure_blas_threads();
  const TypedLayer layer(t, 100, 64, 31);
  const auto& [m, bias, L] = layer;
  ThreadPool pool(2);
  for (int rows : {1, 5, 33}) {
    auto in = random_vector(static_cast<size_t>(rows) * 64, 33, 1.f);
    std::vector<float> expect(static_cast<size_t>(rows) * 100), out(expect.size(), 3.f);
    linear_forward(expect.data(), in.data(), L, rows, false, pool);
    gelu_forward(expect.data(), expect.size());
    linear_forward(out.data(), in.data(), L, rows, false, pool, Activation::kGelu);
    for (size_t i = 0; i < out.size(); ++i)
      ASSERT_NEAR(out[i], expect[i], 1e-5 * (1 + std::fabs(expect[i]))) << "rows " << rows << " at " << i;
  }
}

TEST_P(TypedKernelsTest, KernelsWriteOnlyTheirColumnRange) {
  const Weights t = std::get<1>(GetParam());
  const int K = 64, N = 45, n0 = t.groups ? 16 : 3, n1 = t.groups ? N : 42;  // groups: 1 and 2 of 0..2
  TypedMatrix m = make_matrix(t, N, K, 21);
  std::vector<float> zero(static_cast<size_t>(N), 0.f);
  for (const int rows : {1, 3, 5, 17, 32}) {
    auto in = random_vector(static_cast<size_t>(rows) * K, 22, 1.f);
    auto expect = reference(in, m.f32, zero, rows, K, N);
    const auto allowed = allowed_error(std::get<0>(GetParam()), t, in, m.f32, expect, rows, K, N);
    std::vector<float> out(expect.size() + 16, 0.f);  // and past the last row
    if (t.groups) {
      std::vector<Int16Blocks> xs(static_cast<size_t>(rows));
      for (int r = 0; r < rows; ++r)
        table().round_to_int16_blocks(&xs[static_cast<size_t>(r)], in.data() + r * K, K);
      table().q8_0_group_products(out.data(), in.data(), xs.data(), m.data.data(), rows, K, N, 1, 3);
    } else if (rows == 1) {
      table().matvec_typed(out.data(), in.data(), m.data.data(), t.t, K, n0, n1);
    } else {
      table().small_batch_gemm_out_major_typed(out.data(), in.data(), m.data.data(), t.t, rows, K, N, n0, n1);
    }
    for (size_t i = expect.size(); i < out.size(); ++i) ASSERT_EQ(out[i], 0.f) << "past the last row";
    for (int r = 0; r < rows; ++r)
      for (int n = 0; n < N; ++n) {
        const size_t i = static_cast<size_t>(r) * N + n;
        if (n < n0 || n >= n1)
          ASSERT_EQ(out[i], 0.f) << "rows " << rows << " column " << n;
        else
          ASSERT_NEAR(out[i], expect[i], allowed[i]) << "rows " << rows;
      }
  }
}

// A NaN or an infinity in an input row makes every output of that row NaN or infinite (one row of Q8_0
// weights takes x as int16 blocks: such a block must not round to numbers), and leaves the other rows'
// outputs finite.
TEST_P(TypedKernelsTest, NonFiniteInputsComeOutNonFinite) {
  const Weights t = std::get<1>(GetParam());
  const int K = 128, N = 70;
  const TypedLayer layer(t, N, K, 71);
  const auto& [m, bias, L] = layer;
  ThreadPool pool(2);
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()})
    for (const int rows : {1, 3}) {
      auto in = random_vector(static_cast<size_t>(rows) * K, 72, 1.f);
      in[static_cast<size_t>(K + 37) % in.size()] = bad;  // row 1 of 3, or the only row
      const int bad_row = rows == 1 ? 0 : 1;
      std::vector<float> out(static_cast<size_t>(rows) * N, 0.f);
      linear_forward(out.data(), in.data(), L, rows, false, pool);
      for (int r = 0; r < rows; ++r)
        for (int n = 0; n < N; ++n)
          ASSERT_EQ(std::isfinite(out[static_cast<size_t>(r) * N + n]), r != bad_row)
              << bad << " rows " << rows << " row " << r << " column " << n;
    }
}

INSTANTIATE_TEST_SUITE_P(IsasAndTypes, TypedKernelsTest,
                         ::testing::Combine(::testing::ValuesIn(supported_isas()),
                                            ::testing::Values(Weights{DType::kF16}, Weights{DType::kQ8_0},
                                                              Weights{DType::kQ8_0, true})),
                         [](const auto& info) {
                           return std::string(isa_name(std::get<0>(info.param))) + "_" +
                                  weights_name(std::get<1>(info.param));
                         });

// Q8_0 groups read two at a time in lockstep (a decode step's two streams per thread) give each group's
// outputs to the last bit as read one at a time, the last group's missing rows included, in every
// instruction set; what was in the outputs is added to.
TEST(Q8_0GroupKernels, PairsInLockstepEqualGroupsOneAtATime) {
  const int K = 3072, N = 1000;  // 63 groups, the last of 8 rows
  const TypedLayer layer(Weights{DType::kQ8_0, true}, N, K, 81);
  const auto x = random_vector(K, 83, 1.f);
  for (Isa isa : supported_isas()) {
    const KernelTable& k = kernel_table(isa);
    Int16Blocks xb;
    if (isa != Isa::kPortable) k.round_to_int16_blocks(&xb, x.data(), K);
    const Int16Blocks* xs = isa == Isa::kPortable ? nullptr : &xb;
    std::vector<float> one(static_cast<size_t>(N) + 16, 0.25f), pairs = one;
    k.q8_0_group_products(one.data(), x.data(), xs, layer.L.weight, 1, K, N, 0, 63);
    k.q8_0_group_pair_products(pairs.data(), x.data(), xs, layer.L.weight, K, N, 1, 32, 31);
    k.q8_0_group_products(pairs.data(), x.data(), xs, layer.L.weight, 1, K, N, 0, 1);
    for (size_t i = 0; i < one.size(); ++i) ASSERT_EQ(pairs[i], one[i]) << isa_name(isa) << " at " << i;
    for (size_t i = N; i < one.size(); ++i)
      ASSERT_EQ(one[i], 0.25f) << isa_name(isa) << ": row " << i << " written";
  }
}

TEST(Q8_0GroupKernels, RowsTogetherEqualRowsOneAtATime) {
  const int K = 768, N = 200;  // 13 groups, the last of 8 rows
  const TypedLayer layer(Weights{DType::kQ8_0, true}, N, K, 85);
  const int max_rows = 23;  // every count up to it: runs of 8, 4, 2 and 1 rows, and each remainder
  const auto x = random_vector(static_cast<size_t>(max_rows) * K, 87, 1.f);
  const size_t stride = static_cast<size_t>(N);
  for (Isa isa : supported_isas()) {
    const KernelTable& k = kernel_table(isa);
    std::vector<Int16Blocks> xb(static_cast<size_t>(max_rows));
    if (isa != Isa::kPortable)
      for (int r = 0; r < max_rows; ++r)
        k.round_to_int16_blocks(&xb[r], x.data() + static_cast<size_t>(r) * K, K);
    const Int16Blocks* xs = isa == Isa::kPortable ? nullptr : xb.data();
    // Each row alone, and past the last row a guard that no product may write.
    std::vector<float> alone(static_cast<size_t>(max_rows) * stride + 16, 0.5f);
    for (int r = 0; r < max_rows; ++r)
      k.q8_0_group_products(alone.data() + r * stride, x.data() + static_cast<size_t>(r) * K,
                            xs == nullptr ? nullptr : xs + r, layer.L.weight, 1, K, N, 0, 13);
    for (int rows = 1; rows <= max_rows; ++rows) {
      std::vector<float> together(alone.size(), 0.5f);
      k.q8_0_group_products(together.data(), x.data(), xs, layer.L.weight, rows, K, N, 0, 13);
      for (size_t i = 0; i < rows * stride; ++i)
        ASSERT_EQ(together[i], alone[i]) << isa_name(isa) << ", " << rows << " rows, at " << i;
      for (size_t i = rows * stride; i < together.size(); ++i)
        ASSERT_EQ(together[i], 0.5f) << isa_name(isa) << ", " << rows << " rows: " << i << " written";
    }
  }
}

TEST(TypedKernelsErrors, UnsupportedCasesThrow) {
  std::vector<float> x(40), y(2);
  std::vector<std::byte> w(200);
  for (Isa isa : supported_isas()) {
    const KernelTable& k = kernel_table(isa);
    EXPECT_THROW(k.matvec_typed(y.data(), x.data(), w.data(), DType::kBF16, 40, 0, 1), Error);
    EXPECT_THROW(k.matvec_typed(y.data(), x.data(), w.data(), DType::kQ8_0, 40, 0, 1), Error);  // K % 32
    Int16Blocks blocks;
    EXPECT_THROW(k.round_to_int16_blocks(&blocks, x.data(), 40), Error);  // not whole blocks of 32
  }
  ThreadPool pool(1);
  Linear in_major{w.data(), nullptr, 32, 2, true, DType::kF16};
  EXPECT_THROW(linear_forward(y.data(), x.data(), in_major, 1, false, pool), Error);
}

}  // namespace
}  // namespace cortex::model
