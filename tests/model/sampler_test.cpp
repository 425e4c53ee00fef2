#include "model/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

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

// On a vocabulary-sized input: the k best tokens, ties going to the lower ids, drawn with their
// softmax frequencies (the one-pass selection against the plain definition).
TEST(SamplerTest, TopKOverAWholeVocabularyKeepsTheBestAndBreaksTiesByLowerId) {
  std::vector<float> logits(50257, 0.f);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>((i * 7919) % 1000) / 1000.f;
  // 60 tokens tie at the top (2.0), spread over the vocabulary; with k = 40 the 40 lowest ids win.
  std::vector<int32_t> tied;
  for (int32_t i = 50000; i >= 0 && tied.size() < 60; i -= 811) tied.push_back(i);
  for (int32_t i : tied) logits[static_cast<size_t>(i)] = 2.f;
  std::sort(tied.begin(), tied.end());
  const std::set<int32_t> expected(tied.begin(), tied.begin() + 40);
  Sampler s({1.f, 40, 1.f, 5});
  std::map<int32_t, int> seen;
  const int n = 8000;
  for (int i = 0; i < n; ++i) seen[s.sample(logits)]++;
  for (const auto& [t, count] : seen) EXPECT_TRUE(expected.count(t)) << "token " << t;
  EXPECT_EQ(seen.size(), 40u);
  // Distinct logits: the 5 best, at their softmax frequencies among themselves.
  std::vector<float> ramp(50257);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<float>((i * 104729) % 50257) / 10000.f;
  std::vector<int32_t> order(ramp.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return ramp[a] > ramp[b]; });
  Sampler five({1.f, 5, 1.f, 6});
  std::map<int32_t, int> drawn;
  for (int i = 0; i < n; ++i) drawn[five.sample(ramp)]++;
  double z = 0;
  for (int j = 0; j < 5; ++j) z += std::exp(ramp[static_cast<size_t>(order[j])]);
  EXPECT_EQ(drawn.size(), 5u);
  for (int j = 0; j < 5; ++j) {
    const int32_t t = order[static_cast<size_t>(j)];
    const double p = std::exp(ramp[static_cast<size_t>(t)]) / z, sd = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(drawn[t] / double{n}, p, 5 * sd + 1e-3) << "token " << t;
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

TEST(LogprobsTest, LogSoftmaxMatchesADirectComputation) {
  // Large logits too: a naive exp would overflow float.
  for (float shift : {0.f, 80.f, -300.f}) {
    std::vector<float> logits;
    for (float l : kLogits) logits.push_back(l + shift);
    std::vector<float> out(logits.size());
    log_softmax(logits, out);
    long double z = 0;
    for (float l : kLogits) z += std::exp(static_cast<long double>(l));
    double total = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double direct = static_cast<double>(std::log(std::exp(static_cast<long double>(kLogits[i])) / z));
      EXPECT_NEAR(out[i], direct, 1e-5) << "shift " << shift << " token " << i;
      EXPECT_LE(out[i], 0.f);
      total += std::exp(static_cast<double>(out[i]));
    }
    EXPECT_NEAR(total, 1.0, 1e-6);
    EXPECT_NEAR(log_sum_exp(logits), static_cast<double>(std::log(z)) + shift, 1e-4);
  }
  std::vector<float> impossible = {-INFINITY, -INFINITY};
  EXPECT_EQ(log_sum_exp(impossible), -INFINITY);
  std::vector<float> wrong_size(3);
  EXPECT_THROW(log_softmax(kLogits, wrong_size), Error);
}

TEST(LogprobsTest, TokenLogprobsGivesTheTopTokensAndTheChosenOne) {
  std::vector<float> all(kLogits.size());
  log_softmax(kLogits, all);
  // Top 3: tokens 1 and 3 tie (the lower id first), then 2. Token 4 is not among them: it comes last.
  auto t = token_logprobs(kLogits, 4, 3);
  EXPECT_EQ(t.token, 4);
  EXPECT_FLOAT_EQ(t.logprob, all[4]);
  ASSERT_EQ(t.top.size(), 4u);
  const std::vector<int32_t> order = {1, 3, 2, 4};
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(t.top[i].first, order[i]);
    EXPECT_FLOAT_EQ(t.top[i].second, all[static_cast<size_t>(order[i])]);
  }
  // The chosen token among the top ones is not repeated; top_n 0 keeps just the chosen token.
  EXPECT_EQ(token_logprobs(kLogits, 3, 2).top.size(), 2u);
  auto only = token_logprobs(kLogits, 0, 0);
  ASSERT_EQ(only.top.size(), 1u);
  EXPECT_EQ(only.top[0].first, 0);
  // top_n beyond the vocabulary: every token, sorted.
  auto every = token_logprobs(kLogits, 1, 100);
  ASSERT_EQ(every.top.size(), kLogits.size());
  for (size_t i = 1; i < every.top.size(); ++i) EXPECT_GE(every.top[i - 1].second, every.top[i].second);
  EXPECT_THROW(token_logprobs(kLogits, 6, 1), Error);
  EXPECT_THROW(token_logprobs(kLogits, 0, -1), Error);
}

}  // namespace
}  // namespace cortex::model
