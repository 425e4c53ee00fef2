#include "serving/batch_scheduler.h"

#include <gtest/gtest.h>

#include <future>
#include <mutex>

#include "model/generator.h"
#include "support/test_models.h"
#include "util/error.h"

namespace cortex::serving {
namespace {

model::ModelOptions threads(int n) {
  model::ModelOptions o;
  o.threads = n;
  return o;
}

using testing::test_model;

// Collects one request's tokens and result; wait() blocks until on_done ran.
struct Collector {
  std::mutex mutex;
  std::vector<int32_t> tokens;
  std::promise<GenerationResult> done;

  GenerationRequest request(std::vector<int32_t> prompt, int max_tokens, model::SamplingParams sampling) {
    GenerationRequest r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.sampling = sampling;
    r.ignore_eos = true;
    r.on_token = [this](int32_t t) {
      std::lock_guard<std::mutex> lock(mutex);
      tokens.push_back(t);
      return true;
    };
    r.on_done = [this](const GenerationResult& result) { done.set_value(result); };
    return r;
  }
  GenerationResult wait() { return done.get_future().get(); }
};

class BatchSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override { model_ = model::Gpt2Model::load(test_model("tiny"), threads(2)); }
  std::unique_ptr<model::Gpt2Model> model_;
};

TEST_F(BatchSchedulerTest, ConcurrentRequestsGiveWhatEachGivesAlone) {
  auto reference = model::Gpt2Model::load(test_model("tiny"), threads(1));
  SchedulerOptions options;
  options.max_concurrency = 4;   // 8 requests: half wait, then join the running batch between steps
  options.max_step_tokens = 24;  // long prompts are prefilled in chunks beside decode steps
  auto scheduler = BatchScheduler::create(model_.get(), options);
  const int n = 8;
  std::vector<std::unique_ptr<Collector>> collectors;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<model::SamplingParams> params;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> prompt;
    for (int t = 0; t < 3 + 9 * i; ++t) prompt.push_back((1000 + 37 * t + 101 * i) % 50000);
    prompts.push_back(prompt);
    params.push_back(i % 2 == 0 ? model::SamplingParams{0.f, 40, 1.f, 0}
                                : model::SamplingParams{0.8f, 40, 0.95f, static_cast<uint64_t>(i)});
    collectors.push_back(std::make_unique<Collector>());
    scheduler->submit(collectors.back()->request(prompt, 12 + i, params.back()));
  }
  for (int i = 0; i < n; ++i) {
    auto result = collectors[i]->wait();
    EXPECT_EQ(result.reason, FinishReason::kLength);
    EXPECT_EQ(result.generated_tokens, 12 + i);
    model::GenerateOptions go;
    go.max_tokens = 12 + i;
    go.sampling = params[i];
    go.ignore_eos = true;
    EXPECT_EQ(collectors[i]->tokens, model::generate(*reference, prompts[i], go).tokens) << "request " << i;
  }
  EXPECT_EQ(model_->kv_cache().blocks_in_use(), 0) << "every finished sequence released its cache";
}

// Log-probabilities when asked for: a prompt prefilled in chunks beside another request's decode steps
// gets, for every token after the first, those of one whole forward pass over the prompt; each generated
// token's come just before it; with max_tokens 0 the prompt is scored and nothing generated.
TEST_F(BatchSchedulerTest, LogprobsOfChunkedPromptsAndGeneratedTokens) {
  auto reference = model::Gpt2Model::load(test_model("tiny"), threads(1));
  const int V = reference->config().vocab_size;
  std::vector<int32_t> prompt;
  for (int t = 0; t < 21; ++t) prompt.push_back((700 + 53 * t) % 50000);
  std::vector<float> logits;
  auto seq = reference->new_sequence();
  model::BatchEntry whole{seq.get(), prompt, true};
  reference->forward(std::span(&whole, 1), &logits);

  SchedulerOptions options;
  options.max_concurrency = 2;
  options.max_step_tokens = 8;  // the prompt takes several steps, beside the other request's decode
  auto scheduler = BatchScheduler::create(model_.get(), options);
  Collector other;
  scheduler->submit(other.request({9, 8, 7}, 30, {0.f, 40, 1.f, 0}));
  for (int max_tokens : {6, 0}) {
    Collector c;
    auto request = c.request(prompt, max_tokens, {0.f, 40, 1.f, 0});
    request.logprobs = 3;
    request.prompt_logprobs = true;
    std::vector<model::TokenLogprobs> prompt_lps, generated_lps;
    request.on_prompt_logprobs = [&](std::vector<model::TokenLogprobs> lps) {
      EXPECT_TRUE(c.tokens.empty()) << "the prompt's come before any generated token";
      prompt_lps = std::move(lps);
    };
    request.on_logprobs = [&](const model::TokenLogprobs& lp) {
      EXPECT_EQ(generated_lps.size(), c.tokens.size()) << "each just before its token";
      generated_lps.push_back(lp);
    };
    scheduler->submit(std::move(request));
    auto result = c.wait();
    EXPECT_EQ(result.reason, FinishReason::kLength);
    EXPECT_EQ(result.generated_tokens, max_tokens);
    ASSERT_EQ(prompt_lps.size(), prompt.size() - 1);
    for (size_t k = 1; k < prompt.size(); ++k) {
      auto expected = model::token_logprobs(std::span(logits).subspan((k - 1) * V, V), prompt[k], 3);
      EXPECT_EQ(prompt_lps[k - 1].token, prompt[k]);
      EXPECT_NEAR(prompt_lps[k - 1].logprob, expected.logprob, 1e-4) << "prompt token " << k;
      ASSERT_EQ(prompt_lps[k - 1].top.size(), expected.top.size());
      for (size_t i = 0; i < expected.top.size(); ++i)
        EXPECT_NEAR(prompt_lps[k - 1].top[i].second, expected.top[i].second, 1e-4);
    }
    ASSERT_EQ(generated_lps.size(), c.tokens.size());
    for (size_t i = 0; i < c.tokens.size(); ++i) {
      EXPECT_EQ(generated_lps[i].token, c.tokens[i]);
      EXPECT_EQ(generated_lps[i].top.front().first, c.tokens[i]) << "greedy: the most likely token";
      EXPECT_EQ(generated_lps[i].logprob, generated_lps[i].top.front().second);
    }
  }
  other.wait();
  EXPECT_EQ(model_->kv_cache().blocks_in_use(), 0);
}

TEST_F(BatchSchedulerTest, FullQueueIsRefusedAtOnce) {
  SchedulerOptions options;
  options.max_concurrency = 1;
  options.max_queue_length = 2;
  auto scheduler = BatchScheduler::create(model_.get(), options);
  std::vector<std::unique_ptr<Collector>> collectors;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  int refused = 0;
  for (int i = 0; i < 6; ++i) {
    collectors.push_back(std::make_unique<Collector>());
    try {
      handles.push_back(scheduler->submit(collectors.back()->request({1, 2, 3}, 200, {0.f, 40, 1.f, 0})));
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
      EXPECT_NE(std::string(e.what()).find("queue full"), std::string::npos);
      collectors.pop_back();
      ++refused;
    }
  }
  EXPECT_GE(refused, 3) << "one running, two waiting at most";
  for (auto& h : handles) h->cancel();
  for (auto& c : collectors) c->wait();
}

TEST_F(BatchSchedulerTest, CancelledRequestStopsWithinAStepAndFreesItsCache) {
  auto scheduler = BatchScheduler::create(model_.get(), {});
  Collector c;
  std::shared_ptr<RequestHandle> handle;
  std::promise<void> started;
  auto request = c.request({5, 6, 7}, 200, {0.f, 40, 1.f, 0});
  int seen = 0;
  request.on_token = [&](int32_t) {
    if (++seen == 3) started.set_value();
    return true;
  };
  handle = scheduler->submit(std::move(request));
  started.get_future().wait();
  handle->cancel();
  auto result = c.wait();
  EXPECT_EQ(result.reason, FinishReason::kCancelled);
  EXPECT_LT(result.generated_tokens, 200);
  EXPECT_EQ(model_->kv_cache().blocks_in_use(), 0);
}

TEST_F(BatchSchedulerTest, CallbackCanStopAndEndOfTextStops) {
  auto scheduler = BatchScheduler::create(model_.get(), {});
  Collector c;
  auto request = c.request({5, 6, 7}, 50, {0.f, 40, 1.f, 0});
  request.on_token = [&](int32_t t) {
    c.tokens.push_back(t);
    return c.tokens.size() < 4;
  };
  scheduler->submit(std::move(request));
  auto result = c.wait();
  EXPECT_EQ(result.reason, FinishReason::kStop);
  EXPECT_EQ(c.tokens.size(), 4u);
  EXPECT_GT(result.time_to_first_token_s, 0);

  // With the first greedy token declared end-of-text, generation stops before emitting anything.
  Collector first;
  scheduler->submit(first.request({5, 6, 7}, 5, {0.f, 40, 1.f, 0}));
  first.wait();
  Collector eos;
  auto eos_request = eos.request({5, 6, 7}, 5, {0.f, 40, 1.f, 0});
  eos_request.ignore_eos = false;
  eos_request.eos_id = first.tokens.at(0);
  scheduler->submit(std::move(eos_request));
  auto eos_result = eos.wait();
  EXPECT_EQ(eos_result.reason, FinishReason::kStop);
  EXPECT_TRUE(eos.tokens.empty());
}

TEST_F(BatchSchedulerTest, BadRequestsAreRejectedByName) {
  auto scheduler = BatchScheduler::create(model_.get(), {});
  Collector c;
  auto message = [&](std::vector<int32_t> prompt, int max_tokens, model::SamplingParams p = {}) {
    try {
      scheduler->submit(c.request(std::move(prompt), max_tokens, p));
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message({}, 5).find("empty"), std::string::npos);
  EXPECT_NE(message(std::vector<int32_t>(250, 1), 10).find("context length 256"), std::string::npos);
  EXPECT_NE(message({1}, -1).find("max_tokens"), std::string::npos);
  EXPECT_NE(message({60000}, 1).find("60000"), std::string::npos);
  EXPECT_NE(message({1}, 1, {-1.f, 40, 1.f, 0}).find("temperature"), std::string::npos);
}

TEST_F(BatchSchedulerTest, SlowRequestTimesOut) {
  SchedulerOptions options;
  options.request_timeout = std::chrono::milliseconds(30);
  auto scheduler = BatchScheduler::create(model_.get(), options);
  Collector c;
  auto request = c.request({1, 2}, 250, {0.f, 40, 1.f, 0});
  request.on_token = [](int32_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a slow step, for the test's sake
    return true;
  };
  scheduler->submit(std::move(request));
  auto result = c.wait();
  EXPECT_EQ(result.reason, FinishReason::kTimeout);
  EXPECT_LT(result.generated_tokens, 250);
}

TEST_F(BatchSchedulerTest, ShutdownEndsEveryRequest) {
  std::vector<std::unique_ptr<Collector>> collectors;
  {
    SchedulerOptions options;
    options.max_concurrency = 2;
    auto scheduler = BatchScheduler::create(model_.get(), options);
    for (int i = 0; i < 5; ++i) {
      collectors.push_back(std::make_unique<Collector>());
      scheduler->submit(collectors.back()->request({1, 2, 3}, 250, {0.f, 40, 1.f, 0}));
    }
  }
  for (auto& c : collectors) {
    auto r = c->wait();
    EXPECT_TRUE(r.reason == FinishReason::kCancelled || r.reason == FinishReason::kLength);
  }
  EXPECT_EQ(model_->kv_cache().blocks_in_use(), 0);
}

}  // namespace
}  // namespace cortex::serving
