#include "model/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

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

TEST(KernelsTest, LinearMatchesNaiveInBothLayoutsRowCountsAndThreadCounts) {
  configure_blas_threads();
  for (const auto& [I, O] : {std::pair{70, 133}, std::pair{64, 48}}) {  // odd sizes, then SIMD-friendly ones
    auto w = random_vector(static_cast<size_t>(I) * O, 1), b = random_vector(O, 2);
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (int rows : {1, 2, 7, 8, 13, 32, 33}) {
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

TEST(KernelsTest, LayerNormHasZeroMeanUnitVarianceThenAffine) {
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

TEST(KernelsTest, GeluMatchesTanhApproximation) {
  std::vector<float> x = {-3.f, -1.f, 0.f, 0.5f, 2.f};
  auto expect = x;
  for (auto& v : expect)
    v = 0.5f * v * (1.f + std::tanh(std::sqrt(2.f / static_cast<float>(M_PI)) * (v + 0.044715f * v * v * v)));
  gelu_forward(x.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], expect[i], 1e-6);
  EXPECT_NEAR(expect[3], 0.345714f, 1e-5);  // GELU(0.5), tanh form
}

TEST(KernelsTest, GeluIsAccurateOverItsRange) {
  std::vector<float> x;
  for (float v = -20.f; v <= 20.f; v += 0.01f) x.push_back(v);
  auto y = x;
  gelu_forward(y.data(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double v = x[i], expect = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    ASSERT_NEAR(y[i], expect, 1e-6 + 1e-6 * std::fabs(expect)) << "x=" << v;
  }
}

TEST(KernelsTest, ExpAndSumMatchesStdExp) {
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

TEST(KernelsTest, DotProductHandlesTails) {
  for (int n : {0, 1, 7, 8, 15, 16, 17, 64, 67}) {
    auto a = random_vector(n, 5), b = random_vector(n, 6);
    double expect = 0;
    for (int i = 0; i < n; ++i) expect += double{a[i]} * b[i];
    EXPECT_NEAR(dot_product(a.data(), b.data(), n), expect, 1e-4) << n;
  }
}

}  // namespace
}  // namespace cortex::model
