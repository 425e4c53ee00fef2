// warm_up: what it runs within the KV cache's budget, and that it leaves the model as it found it.
#include "model/warm_up.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "model/kernel_table.h"
#include "model/kv_cache.h"
#include "support/test_models.h"

namespace cortex::model {
namespace {

using testing::test_model;

// Logits of a prompt and then of three one-token steps, each step's row after the last.
std::vector<float> continuation_logits(Gpt2Model& model) {
  auto sequence = model.new_sequence();
  const std::vector<int32_t> prompt{5, 9, 13, 200}, next{17, 3, 250};
  std::vector<float> logits;
  BatchEntry entry{sequence.get(), prompt, false};
  model.forward({&entry, 1}, &logits);
  for (const int32_t& t : next) {
    entry.tokens = {&t, 1};
    model.forward({&entry, 1}, &logits);
  }
  return logits;
}

TEST(WarmUpTest, RunsEachPathAndLeavesTheResultsAsTheyWere) {
  ModelOptions options;
  options.threads = 2;
  auto warmed = Gpt2Model::load(test_model("tiny"), options);
  auto cold = Gpt2Model::load(test_model("tiny"), options);
  const WarmUpReport report = warm_up(*warmed, 8);
  const int n_ctx = warmed->config().n_ctx;
  EXPECT_EQ(report.prompt_tokens, std::min(kernels().small_batch_prompt_rows + 1, n_ctx - 2))
      << "a prompt past the small-batch kernels' rows, within the context";
  EXPECT_EQ(report.batch_sequences, 8);
  EXPECT_GE(report.seconds, 0.0);
  EXPECT_EQ(warmed->kv_cache().blocks_in_use(), 0) << "every warm-up sequence released";
  EXPECT_GE(warmed->kv_cache().blocks_allocated(), 8) << "its blocks wait in the free list";
  EXPECT_EQ(continuation_logits(*warmed), continuation_logits(*cold)) << "the same logits to the bit";
}

TEST(WarmUpTest, TakesNoMoreOfTheCacheThanIsFree) {
  ModelOptions options;
  options.threads = 2;
  options.kv_cache_tokens = 2 * KvCache::kBlockTokens;
  auto model = Gpt2Model::load(test_model("tiny"), options);
  WarmUpReport report;
  ASSERT_NO_THROW(report = warm_up(*model, 8));
  EXPECT_EQ(report.prompt_tokens,
            std::min(kernels().small_batch_prompt_rows + 1, 2 * KvCache::kBlockTokens - 2));
  EXPECT_EQ(report.batch_sequences, 2) << "one block apiece";
  EXPECT_EQ(model->kv_cache().blocks_in_use(), 0);

  options.kv_cache_tokens = KvCache::kBlockTokens;  // one block: no batch of two fits
  auto small = Gpt2Model::load(test_model("tiny"), options);
  ASSERT_NO_THROW(report = warm_up(*small, 8));
  EXPECT_EQ(report.prompt_tokens, KvCache::kBlockTokens - 2);
  EXPECT_EQ(report.batch_sequences, 0);
  EXPECT_EQ(continuation_logits(*small).size(), 4 * static_cast<size_t>(small->config().vocab_size))
      << "the model still runs after a warm-up in a full cache";
}

}  // namespace
}  // namespace cortex::model
