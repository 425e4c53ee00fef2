#include "model/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "util/error.h"

namespace cortex::model {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};

TEST(SamplerTest, GreedyTakesTheFirstMaximum) {
  Sampler s({0.f, 40, 1.f, 1});
  EXPECT_EQ(s.sample(kLogits), 1);
  EXPECT_EQ(argmax(kLogits), 1);
}

TEST(SamplerTest, TopKOneIsGreedy) {
  Sampler s({1.5f, 1, 1.f, 123});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(kLogits), 1);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  auto draw = [](uint64_t seed) {
    Sampler s({1.f, 0, 1.f, seed});
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(kLogits));
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(SamplerTest, TopKRestrictsToTheKBest) {
  Sampler s({1.f, 3, 1.f, 7});
  for (int i = 0; i < 500; ++i) {
    int32_t t = s.sample(kLogits);
    EXPECT_TRUE(t == 1 || t == 2 || t == 3) << t;
  }
}

TEST(SamplerTest, TopPKeepsTheSmallestNucleus) {
  // softmax of kLogits: tokens 1 and 3 hold 0.384 each (0.768 together), token 2 brings 0.909.
  auto draw = [](float top_p) {
    Sampler s({1.f, 0, top_p, 9});
    std::map<int32_t, int> seen;
    for (int i = 0; i < 2000; ++i) seen[s.sample(kLogits)]++;
    return seen;
  };
  auto narrow = draw(0.7f);
  EXPECT_EQ(narrow.size(), 2u);
  EXPECT_TRUE(narrow.count(1) && narrow.count(3));
  auto wider = draw(0.8f);
  EXPECT_EQ(wider.size(), 3u);
  EXPECT_TRUE(wider.count(1) && wider.count(2) && wider.count(3));
}

TEST(SamplerTest, FrequenciesFollowTheSoftmax) {
  Sampler s({1.f, 0, 1.f, 11});
  const int n = 20000;
  std::vector<int> counts(kLogits.size());
  for (int i = 0; i < n; ++i) counts[static_cast<size_t>(s.sample(kLogits))]++;
  double z = 0;
  for (float l : kLogits) z += std::exp(l);
  for (size_t i = 0; i < kLogits.size(); ++i) {
    double p = std::exp(kLogits[i]) / z;
    double sd = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(counts[i] / double{n}, p, 5 * sd + 1e-3) << "token " << i;
  }
}

TEST(SamplerTest, InvalidParametersAreRejectedByName) {
  auto message = [](SamplingParams p) {
    try {
      p.validate();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message({-1.f, 40, 1.f, 0}).find("temperature"), std::string::npos);
  EXPECT_NE(message({1.f, -2, 1.f, 0}).find("top_k"), std::string::npos);
  EXPECT_NE(message({1.f, 40, 0.f, 0}).find("top_p"), std::string::npos);
  EXPECT_NE(message({1.f, 40, 1.5f, 0}).find("top_p"), std::string::npos);
  EXPECT_EQ(message({NAN, 40, 1.f, 0}).find("temperature") != std::string::npos, true);
}

}  // namespace
}  // namespace cortex::model
