#include "model/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "model/half.h"
#include "model/kernel_table.h"
#include "util/error.h"

namespace cortex::model {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// out[r][o] = sum_i in[r][i] * W(i, o) + b[o], in double.
std::vector<double> naive_linear(const std::vector<float>& in, const std::vector<float>& w,
                                 const std::vector<float>& b, int rows, int I, int O, bool in_major) {
  std::vector<double> out(static_cast<size_t>(rows) * O);
  for (int r = 0; r < rows; ++r)
    for (int o = 0; o < O; ++o) {
      double s = b[o];
      for (int i = 0; i < I; ++i)
        s += double{in[r * I + i]} *
             (in_major ? w[static_cast<size_t>(i) * O + o] : w[static_cast<size_t>(o) * I + i]);
      out[r * O + o] = s;
    }
  return out;
}

// Every test runs once per instruction set this CPU supports, with that set's kernels selected.
class KernelsTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override { select_isa(GetParam()); }
  void TearDown() override { select_isa(supported_isas().back()); }
};

TEST_P(KernelsTest, LinearMatchesNaiveInBothLayoutsRowCountsAndThreadCounts) {
  configure_blas_threads();
  for (const auto& [I, O] : {std::pair{70, 133}, std::pair{64, 48}}) {  // odd sizes, then SIMD-friendly ones
    auto w = random_vector(static_cast<size_t>(I) * O, 1), b = random_vector(O, 2);
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (int rows : {1, 2, 7, 8, 13, 32, 33, 129}) {
        auto in = random_vector(static_cast<size_t>(rows) * I, 3);
        for (bool in_major : {true, false}) {
          Linear L{w.data(), b.data(), I, O, in_major};
          auto expect = naive_linear(in, w, b, rows, I, O, in_major);
          std::vector<float> out(static_cast<size_t>(rows) * O, 0.f);
          linear_forward(out.data(), in.data(), L, rows, false, pool);
          for (size_t k = 0; k < out.size(); ++k)
            ASSERT_NEAR(out[k], expect[k], 1e-4)
                << "threads " << threads << " rows " << rows << " in_major " << in_major;
          // accumulate adds to what is there
          std::vector<float> acc(out.size(), 1.5f);
          linear_forward(acc.data(), in.data(), L, rows, true, pool);
          for (size_t k = 0; k < acc.size(); ++k) ASSERT_NEAR(acc[k], expect[k] + 1.5, 1e-4);
        }
      }
    }
  }
}

// One row: W stored [out, in] with long rows, each thread's share read in several pieces (16 rows per
// stream each; 9 per share on two threads), a thread done with its own taking pieces of the other's; W stored
// [in, out] split in fixed parts of its thousands of rows, each into its thread's accumulator; the rows
// after a share's quarters (sizes not a multiple of 4) too.
TEST_P(KernelsTest, OneRowProductsMatchNaive) {
  for (bool in_major : {true, false}) {
    const int I = in_major ? 4099 : 2048, O = in_major ? 33 : 1027;
    auto w = random_vector(static_cast<size_t>(I) * O, 4), b = random_vector(O, 5), in = random_vector(I, 6);
    Linear L{w.data(), b.data(), I, O, in_major};
    auto expect = naive_linear(in, w, b, 1, I, O, in_major);
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<float> out(static_cast<size_t>(O), -7.f);
        linear_forward(out.data(), in.data(), L, 1, false, pool);
        for (int o = 0; o < O; ++o)
          ASSERT_NEAR(out[static_cast<size_t>(o)], expect[static_cast<size_t>(o)], 1e-3)
              << "in_major " << in_major << ", " << threads << " threads, column " << o;
      }
    }
  }
}

// Every row count the small-batch kernels take (1..32, then past them; the in-major kernel takes prompts
// of up to 128 rows with AVX-512, then sgemm's 129), on shapes whose column counts
// leave partial 48-, 32- and 16-column strips and partial 8- and 16-column tiles, whose input sizes
// span several k-blocks (the in-major kernel's passes of 128 rows) with a partial last one, and with
// enough columns per thread for the prefetching of later strips and tiles to run, from a pass's last
// strips into the next pass's first; split across threads by input rows and by columns.
TEST_P(KernelsTest, SmallBatchKernelsMatchNaiveForEveryRowCountAndRaggedShapes) {
  configure_blas_threads();
  for (const auto& [I, O] : {std::pair{300, 229}, std::pair{64, 171}, std::pair{260, 400}, std::pair{17, 35},
                             std::pair{40, 2100}}) {  // the last wide enough to split by columns
    auto w = random_vector(static_cast<size_t>(I) * O, 5), b = random_vector(O, 6);
    for (int threads : {1, 2, {}}) {
      ThreadPool pool(threads);
      std::vector<int> row_counts;
      for (int rows = 1; rows <= 34; ++rows) row_counts.push_back(rows);
      for (int rows : {63, 128, 129}) row_counts.push_back(rows);
      for (int rows : row_counts) {
        auto in = random_vector(static_cast<size_t>(rows) * I, 7 + static_cast<uint32_t>(rows));
        for (bool in_major : {true, false}) {
          Linear L{w.data(), b.data(), I, O, in_major};
          auto expect = naive_linear(in, w, b, rows, I, O, in_major);
          std::vector<float> out(static_cast<size_t>(rows) * O, 7.f);  // overwritten, not added to
          linear_forward(out.data(), in.data(), L, rows, false, pool);
          for (size_t k = 0; k < out.size(); ++k)
            ASSERT_NEAR(out[k], expect[k], 1e-4)
                << "I " << I << " O " << O << " threads " << threads << " rows " << rows << " in_major "
                << in_major << " at " << k;
          std::vector<float> acc(out.size(), -2.5f);
          linear_forward(acc.data(), in.data(), L, rows, true, pool);
          for (size_t k = 0; k < acc.size(); ++k) ASSERT_NEAR(acc[k], expect[k] - 2.5, 1e-4);
        }
      }
    }
  }
}

// The GELU fused into linear_forward equals the product followed by gelu_forward, on every path: one
// row split by input rows (in-major) or by columns, a few rows split by input rows (few columns) or by
// columns, and sgemm's rows.
TEST_P(KernelsTest, FusedGeluEqualsTheProductThenGelu) {
  configure_blas_threads();
  for (const auto& [I, O] : {std::pair{48, 400}, std::pair{40, 2100}}) {
    auto w = random_vector(static_cast<size_t>(I) * O, 21), b = random_vector(O, 22);
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      for (int rows : {1, 3, 8, 33, 129}) {
        auto in = random_vector(static_cast<size_t>(rows) * I, 23);
        for (bool in_major : {true, false}) {
          Linear L{w.data(), b.data(), I, O, in_major};
          std::vector<float> expect(static_cast<size_t>(rows) * O), out(expect.size(), 3.f);
          linear_forward(expect.data(), in.data(), L, rows, false, pool);
          gelu_forward(expect.data(), expect.size());
          linear_forward(out.data(), in.data(), L, rows, false, pool, Activation::kGelu);
          for (size_t k = 0; k < out.size(); ++k)
            ASSERT_NEAR(out[k], expect[k], 1e-5 * (1 + std::fabs(expect[k])))
                << "I " << I << " O " << O << " threads " << threads << " rows " << rows << " in_major "
                << in_major << " at " << k;
        }
      }
    }
  }
}

// attention_heads against a double-precision softmax(q·k)·v, with positions in blocks that are not
// contiguous, head dimensions of the fast path (64) and others, groups of heads up to past the
// registers' limit, and position counts that end mid-block; cached rows as floats and as F16 halves
// (against the reference on the same halves' values), a block's rows head by head (the KV cache's layout)
// and position by position.
TEST_P(KernelsTest, AttentionHeadsMatchesNaiveSoftmaxOverBlockedPositions) {
  constexpr int kBlockTokens = 16;
  for (bool f16 : {false, true})
    for (bool by_head : {true, false})
      for (int D : {64, 8}) {
        for (int heads : {1, 3, 6, 7, 12}) {
          const int C = heads * D + 2 * D;  // rows hold other heads too; ours start at h0 = 1
          const size_t stride = static_cast<size_t>(C);
          // Where head h's row at position i of a block lies.
          const size_t position_stride = by_head ? static_cast<size_t>(D) : stride;
          const size_t head_stride = by_head ? static_cast<size_t>(kBlockTokens * D) : static_cast<size_t>(D);
          auto at = [&](int h, int j) { return h * head_stride + (j % kBlockTokens) * position_stride; };
          for (int n : {1, 5, 16, 17, 40}) {
            const int blocks = (n + kBlockTokens - 1) / kBlockTokens;
            // Blocks stored in reverse order, apart from each other.
            std::vector<std::vector<float>> key_store, value_store;
            std::vector<const float*> keys(static_cast<size_t>(blocks)), values(static_cast<size_t>(blocks));
            std::vector<std::vector<uint16_t>> key_halves, value_halves;
            std::vector<const uint16_t*> half_keys(keys.size()), half_values(values.size());
            for (int b = 0; b < blocks; ++b) {
              key_store.push_back(random_vector(stride * kBlockTokens, 20 + static_cast<uint32_t>(b)));
              value_store.push_back(random_vector(stride * kBlockTokens, 40 + static_cast<uint32_t>(b)));
              key_halves.emplace_back(), value_halves.emplace_back();
              for (auto [store, halves] : {std::pair{&key_store.back(), &key_halves.back()},
                                           std::pair{&value_store.back(), &value_halves.back()}})
                for (float& x : *store) {  // the reference reads the halves' values
                  halves->push_back(fp32_to_fp16(x));
                  if (f16) x = fp16_to_fp32(halves->back());
                }
            }
            for (int b = 0; b < blocks; ++b) {
              const size_t from = static_cast<size_t>(blocks - 1 - b), to = static_cast<size_t>(b);
              keys[to] = key_store[from].data(), values[to] = value_store[from].data();
              half_keys[to] = key_halves[from].data(), half_values[to] = value_halves[from].data();
            }
            auto q = random_vector(stride, 7);
            std::vector<float> out(stride, 9.f), scores(static_cast<size_t>(kMaxAttentionGroup) * n);
            const float scale = 0.3f;
            const int h0 = 1;
            if (f16)
              attention_heads(out.data(), q.data(),
                              CachedRows<uint16_t>{half_keys.data(), half_values.data(), kBlockTokens,
                                                   position_stride, head_stride},
                              h0, heads, n, D, scale, scores.data());
            else
              attention_heads(
                  out.data(), q.data(),
                  CachedRows<float>{keys.data(), values.data(), kBlockTokens, position_stride, head_stride},
                  h0, heads, n, D, scale, scores.data());
            for (int h = h0; h < h0 + heads; ++h) {
              std::vector<double> p(static_cast<size_t>(n));
              double max_s = -1e300, sum = 0;
              for (int j = 0; j < n; ++j) {
                const float* k = keys[static_cast<size_t>(j / kBlockTokens)] + at(h, j);
                double s = 0;
                for (int d = 0; d < D; ++d) s += double{q[static_cast<size_t>(h * D + d)]} * k[d];
                p[static_cast<size_t>(j)] = s * scale;
                max_s = std::max(max_s, p[static_cast<size_t>(j)]);
              }
              for (auto& x : p) sum += (x = std::exp(x - max_s));
              for (int d = 0; d < D; ++d) {
                double o = 0;
                for (int j = 0; j < n; ++j)
                  o += p[static_cast<size_t>(j)] / sum *
                       values[static_cast<size_t>(j / kBlockTokens)][at(h, j) + static_cast<size_t>(d)];
                ASSERT_NEAR(out[static_cast<size_t>(h * D + d)], o, 1e-5)
                    << (f16 ? "F16 " : "F32 ") << (by_head ? "by head " : "by position ") << "D " << D
                    << " heads " << heads << " n " << n << " head " << h << " dim " << d;
              }
            }
            // Heads outside [h0, h0 + heads) are left alone.
            for (int i = 0; i < h0 * D; ++i) ASSERT_EQ(out[static_cast<size_t>(i)], 9.f);
            for (size_t i = static_cast<size_t>((h0 + heads) * D); i < stride; ++i) ASSERT_EQ(out[i], 9.f);
          }
        }
      }
}

// attention_rows against attention_heads row by row (tested against a double-precision softmax above):
// tiles of every size up to past kAttentionTileRows and remainders below the smallest tile, prompts that
// start at position 0 and further into the cache, heads of the fast path (64) and others, cached rows as
// floats and as halves, stored head by head as the KV cache stores them. Rows are strided as in the model
// (queries 3·C apart, outputs C apart), and nothing outside a row's heads is written.
TEST_P(KernelsTest, AttentionRowsMatchesAttentionOfEachRowAlone) {
  constexpr int kBlockTokens = 16;
  for (bool f16 : {false, true})
    for (int D : {64, 8})
      for (int heads : {1, 5}) {
        const int C = heads * D + 2 * D;  // ours start at h0 = 1
        const size_t stride = static_cast<size_t>(C);
        const int h0 = 1;
        for (int m : {1, 3, 4, 16, 18, 21, 40})
          for (int n0 : {0, 7, 33}) {
            const int n = n0 + m;
            const int blocks = (n + kBlockTokens - 1) / kBlockTokens;
            std::vector<std::vector<float>> key_store, value_store;
            std::vector<std::vector<uint16_t>> key_halves, value_halves;
            std::vector<const float*> keys, values;
            std::vector<const uint16_t*> half_keys, half_values;
            for (int b = 0; b < blocks; ++b) {
              key_store.push_back(random_vector(stride * kBlockTokens, 60 + static_cast<uint32_t>(b)));
              value_store.push_back(random_vector(stride * kBlockTokens, 80 + static_cast<uint32_t>(b)));
              key_halves.emplace_back(), value_halves.emplace_back();
              for (float x : key_store.back()) key_halves.back().push_back(fp32_to_fp16(x));
              for (float x : value_store.back()) value_halves.back().push_back(fp32_to_fp16(x));
            }
            for (int b = 0; b < blocks; ++b) {
              keys.push_back(key_store[static_cast<size_t>(b)].data());
              values.push_back(value_store[static_cast<size_t>(b)].data());
              half_keys.push_back(key_halves[static_cast<size_t>(b)].data());
              half_values.push_back(value_halves[static_cast<size_t>(b)].data());
            }
            const auto q = random_vector(static_cast<size_t>(m) * 3 * stride, 11);
            std::vector<float> out(static_cast<size_t>(m) * stride, 9.f), expected(out);
            std::vector<float> scores(static_cast<size_t>(std::max(kAttentionTileRows, kMaxAttentionGroup)) *
                                      n);
            const float scale = 0.125f;
            const size_t position_stride = static_cast<size_t>(D),
                         head_stride = position_stride * kBlockTokens;
            const CachedRows<uint16_t> half_rows{half_keys.data(), half_values.data(), kBlockTokens,
                                                 position_stride, head_stride};
            const CachedRows<float> rows{keys.data(), values.data(), kBlockTokens, position_stride,
                                         head_stride};
            if (f16)
              attention_rows(out.data(), stride, q.data(), 3 * stride, m, half_rows, h0, heads, n0, D, scale,
                             scores.data());
            else
              attention_rows(out.data(), stride, q.data(), 3 * stride, m, rows, h0, heads, n0, D, scale,
                             scores.data());
            for (int r = 0; r < m; ++r) {
              float* e = expected.data() + static_cast<size_t>(r) * stride;
              const float* qr = q.data() + static_cast<size_t>(r) * 3 * stride;
              if (f16)
                attention_heads(e, qr, half_rows, h0, heads, n0 + r + 1, D, scale, scores.data());
              else
                attention_heads(e, qr, rows, h0, heads, n0 + r + 1, D, scale, scores.data());
            }
            for (size_t i = 0; i < out.size(); ++i)
              ASSERT_NEAR(out[i], expected[i], 1e-5f)
                  << (f16 ? "F16 " : "F32 ") << "D " << D << " heads " << heads << " m " << m << " n0 " << n0
                  << " row " << i / stride << " value " << i % stride;
            // The values around a row's heads keep the 9 they had (expected was never written there).
            for (int r = 0; r < m; ++r) {
              ASSERT_EQ(out[static_cast<size_t>(r) * stride], 9.f);
              ASSERT_EQ(out[static_cast<size_t>(r + 1) * stride - 1], 9.f);
            }
          }
      }
}

// A cached value that is not finite (an F16 cache keeps NaN) reaches only the rows that attend to its
// position, as it would row by row: the tiles' rows share their reads of the values, not their results.
TEST_P(KernelsTest, AttentionRowsKeepALaterPositionsNaNFromEarlierRows) {
  constexpr int kBlockTokens = 16, D = 64, m = 16;
  const size_t stride = D;
  auto keys = random_vector(stride * kBlockTokens, 90), values = random_vector(stride * kBlockTokens, 91);
  for (int d = 0; d < D; ++d) values[static_cast<size_t>(m - 2) * stride + d] = NAN;  // position 14
  const float* key_blocks[] = {keys.data()};
  const float* value_blocks[] = {values.data()};
  const auto q = random_vector(stride * m, 92);
  std::vector<float> out(stride * m), scores(static_cast<size_t>(kAttentionTileRows) * m);
  attention_rows(out.data(), stride, q.data(), stride, m,
                 CachedRows<float>{key_blocks, value_blocks, kBlockTokens, stride, stride * kBlockTokens}, 0,
                 1, 0, D, 0.125f, scores.data());
  for (int r = 0; r < m; ++r)
    for (int d = 0; d < D; ++d)
      ASSERT_EQ(std::isnan(out[static_cast<size_t>(r) * stride + d]), r >= m - 2)
          << "row " << r << " dim " << d;
}

TEST_P(KernelsTest, LayerNormHasZeroMeanUnitVarianceThenAffine) {
  const int rows = 3, cols = 37;
  auto in = random_vector(rows * cols, 4);
  std::vector<float> weight(cols, 2.f), bias(cols, 0.5f), out(in.size());
  layernorm_forward(out.data(), in.data(), weight.data(), bias.data(), rows, cols, 1e-5f);
  for (int r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int c = 0; c < cols; ++c) mean += (out[r * cols + c] - 0.5) / 2;
    mean /= cols;
    for (int c = 0; c < cols; ++c) var += std::pow((out[r * cols + c] - 0.5) / 2 - mean, 2);
    var /= cols;
    EXPECT_NEAR(mean, 0.0, 1e-5);
    EXPECT_NEAR(var, 1.0, 1e-3);
  }
}

TEST_P(KernelsTest, GeluMatchesTanhApproximation) {
  std::vector<float> x = {-3.f, -1.f, 0.f, 0.5f, 2.f};
  auto expect = x;
  for (auto& v : expect)
    v = 0.5f * v * (1.f + std::tanh(std::sqrt(2.f / static_cast<float>(M_PI)) * (v + 0.044715f * v * v * v)));
  gelu_forward(x.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], expect[i], 1e-6);
  EXPECT_NEAR(expect[3], 0.345714f, 1e-5);  // GELU(0.5), tanh form
}

TEST_P(KernelsTest, GeluIsAccurateOverItsRange) {
  std::vector<float> x;
  for (float v = -20.f; v <= 20.f; v += 0.01f) x.push_back(v);
  auto y = x;
  gelu_forward(y.data(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double v = x[i], expect = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    ASSERT_NEAR(y[i], expect, 1e-6 + 1e-6 * std::fabs(expect)) << "x=" << v;
  }
}

// Each value's GELU is the same to the bit whatever range of a call it falls in (the first values of a
// range, its middle or its last few): a decode step applies it to the columns each thread computed, and
// which columns those are changes from step to step.
TEST_P(KernelsTest, GeluIsTheSameWhereverARangeBeginsOrEnds) {
  const auto x = random_vector(100, 24);
  auto whole = x;
  gelu_forward(whole.data(), whole.size());
  for (size_t a = 0; a < 40; ++a)
    for (size_t b = a; b <= x.size(); b += 7) {
      auto part = x;
      gelu_forward(part.data() + a, b - a);
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_EQ(part[i], i >= a && i < b ? whole[i] : x[i]) << "range [" << a << ", " << b << ") at " << i;
    }
}

TEST_P(KernelsTest, ExpAndSumMatchesStdExp) {
  std::vector<float> x;
  for (float v = -90.f; v <= 10.f; v += 0.37f) x.push_back(v);
  auto y = x;
  float sum = exp_and_sum(y.data(), static_cast<int>(y.size()), 2.f);
  double expect_sum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double e = std::exp(double{x[i]} - 2.0);
    expect_sum += e;
    ASSERT_NEAR(y[i], e, 5e-6 * e + 1e-30) << "x=" << x[i];
  }
  EXPECT_NEAR(sum, expect_sum, 1e-5 * expect_sum);
}

TEST_P(KernelsTest, DotProductHandlesTails) {
  for (int n : {0, 1, 7, 8, 15, 16, 17, 64, 67}) {
    auto a = random_vector(n, 5), b = random_vector(n, 6);
    double expect = 0;
    for (int i = 0; i < n; ++i) expect += double{a[i]} * b[i];
    EXPECT_NEAR(dot_product(a.data(), b.data(), n), expect, 1e-4) << n;
  }
}

// The F32 single-row product with W stored [in, out] computes every column, vectors and the columns after
// the last vector alike, in one order of fused multiply-adds per four rows (one from each quarter of the
// rows): fma(x3, w3, fma(x2, w2, fma(x0, w0, x1 · w1))) added to the accumulator, then the rows after the
// quarters as fma(x, w, y). The vector instruction sets must give exactly that, so that a model's output
// does not depend on the instruction set or on which columns fall in a vector (the portable build leaves
// contraction to the compiler and is only checked against the naive product above).
TEST_P(KernelsTest, InMajorRowsFollowOneOrderOfFusedMultiplyAdds) {
  if (GetParam() == Isa::kPortable) GTEST_SKIP() << "the portable loop's rounding is the compiler's";
  for (const auto& [in, out] : {std::pair{768, 3072}, std::pair{3072, 768}, std::pair{70, 133},
                                std::pair{103, 171}, std::pair{4099, 33}, std::pair{37, 9}}) {
    auto w = random_vector(static_cast<size_t>(in) * out, 31), x = random_vector(in, 32);
    for (const auto& [i0, i1] : {std::pair{0, in}, std::pair{in / 3, in}}) {
      std::vector<float> got(static_cast<size_t>(out), 0.5f), expect(got);
      kernels().matvec_in_major_rows(got.data(), x.data(), w.data(), out, i0, i1);
      const int q = (i1 - i0) / 4;
      auto at = [&](int i, int o) { return w[static_cast<size_t>(i) * out + o]; };
      for (int i = i0; i < i0 + q; ++i)
        for (int o = 0; o < out; ++o) {
          const float t = std::fma(x[i], at(i, o), x[i + q] * at(i + q, o));
          expect[o] += std::fma(x[i + 3 * q], at(i + 3 * q, o), std::fma(x[i + 2 * q], at(i + 2 * q, o), t));
        }
      for (int i = i0 + 4 * q; i < i1; ++i)
        for (int o = 0; o < out; ++o) expect[o] = std::fma(x[i], at(i, o), expect[o]);
      for (int o = 0; o < out; ++o)
        ASSERT_EQ(got[o], expect[o]) << "in " << in << " out " << out << " rows " << i0 << ".." << i1
                                     << " column " << o;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, KernelsTest, ::testing::ValuesIn(supported_isas()),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(KernelIsaTest, NamesParseAndTheBestSupportedSetIsChosen) {
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vnni})
    EXPECT_EQ(parse_isa(isa_name(isa)), isa);
  EXPECT_EQ(parse_isa("AVX2"), Isa::kAvx2);
  EXPECT_THROW(parse_isa("sse9"), Error);
  const auto supported = supported_isas();
  ASSERT_FALSE(supported.empty());
  EXPECT_EQ(supported.front(), Isa::kPortable);
  for (Isa isa : supported) EXPECT_EQ(kernel_table(isa).isa, isa);
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    EXPECT_TRUE(isa_supported(Isa::kAvx2));
  }
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    EXPECT_TRUE(isa_supported(Isa::kAvx512));
    EXPECT_EQ(supported.back(), __builtin_cpu_supports("avx512vnni") ? Isa::kAvx512Vnni : Isa::kAvx512);
  }
#endif
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vnni}) {
    if (!isa_supported(isa)) {
      EXPECT_THROW(kernel_table(isa), Error) << isa_name(isa);
    }
  }
}

}  // namespace
}  // namespace cortex::model
