// The forward pass against an independent numpy GPT-2 (tests/model/reference_gpt2.py, float64) on the
// random test models: prefill, incremental steps and mixed batches, and greedy generation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "model/generator.h"
#include "model/gpt2_model.h"
#include "support/test_models.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::model {
namespace {

using testing::run_command;
using testing::test_model;

constexpr float kTolerance = 1e-3f;

std::string join(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(ids[i]);
  }
  return s;
}

std::string reference_script() {
  return testing::source_dir() + "/tests/model/reference_gpt2.py";
}

// Logits of every position of `tokens` from the numpy reference: [T, vocab].
std::vector<float> reference_logits(const std::string& model_dir, const std::vector<int32_t>& tokens) {
  std::string out = testing::make_temp_dir("ref") + "/logits.f32";
  auto r = run_command({CORTEX_PYTHON3, reference_script(), "logits", "--model", model_dir, "--tokens",
                        join(tokens), "--out", out});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string bytes = read_file(out);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

std::vector<int32_t> reference_greedy(const std::string& model_dir, const std::vector<int32_t>& prompt,
                                      int n) {
  auto r = run_command({CORTEX_PYTHON3, reference_script(), "greedy", "--model", model_dir, "--tokens",
                        join(prompt), "-n", std::to_string(n)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out).get<std::vector<int32_t>>();
}

// Largest |ours - reference| over one row of logits.
float max_abs_diff(const float* ours, const float* ref, int vocab) {
  float m = 0;
  for (int i = 0; i < vocab; ++i) m = std::max(m, std::fabs(ours[i] - ref[i]));
  return m;
}

class Gpt2ForwardTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return test_model(GetParam()); }
  const std::vector<int32_t> tokens_a = {464, 2068,  7586, 21831, 18045, 625,
                                         262, 16931, 3290, 13,    383,   50256};
  const std::vector<int32_t> tokens_b = {40, 1842, 4673, 290, 3303, 9552, 30};
};

TEST_P(Gpt2ForwardTest, PrefillLogitsMatchTheReference) {
  auto model = Gpt2Model::load(dir(), {2, 0, {}});
  const int V = model->config().vocab_size;
  auto ref = reference_logits(dir(), tokens_a);
  ASSERT_EQ(ref.size(), tokens_a.size() * V);
  auto seq = model->new_sequence();
  BatchEntry e{seq.get(), tokens_a, true};
  std::vector<float> logits;
  model->forward(std::span(&e, 1), &logits);
  ASSERT_EQ(logits.size(), ref.size());
  for (size_t t = 0; t < tokens_a.size(); ++t)
    EXPECT_LT(max_abs_diff(&logits[t * V], &ref[t * V], V), kTolerance) << "position " << t;
}

TEST_P(Gpt2ForwardTest, IncrementalStepsMatchTheReference) {
  auto model = Gpt2Model::load(dir(), {2, 0, {}});
  const int V = model->config().vocab_size;
  auto ref = reference_logits(dir(), tokens_a);
  auto seq = model->new_sequence();
  std::vector<float> logits;
  BatchEntry e{seq.get(), std::span(tokens_a).first(4)};
  model->forward(std::span(&e, 1), &logits);
  EXPECT_LT(max_abs_diff(logits.data(), &ref[3 * V], V), kTolerance) << "last prompt position";
  for (size_t t = 4; t < tokens_a.size(); ++t) {
    logits.clear();
    e.tokens = std::span(tokens_a).subspan(t, 1);
    model->forward(std::span(&e, 1), &logits);
    EXPECT_LT(max_abs_diff(logits.data(), &ref[t * V], V), kTolerance) << "step at position " << t;
  }
  EXPECT_EQ(seq->length(), static_cast<int>(tokens_a.size()));
}

TEST_P(Gpt2ForwardTest, SequencesAtDifferentPositionsInOneBatchMatchTheReference) {
  auto model = Gpt2Model::load(dir(), {2, 0, {}});
  const int V = model->config().vocab_size;
  auto ref_a = reference_logits(dir(), tokens_a);
  auto ref_b = reference_logits(dir(), tokens_b);
  auto a = model->new_sequence(), b = model->new_sequence(), c = model->new_sequence();
  std::vector<float> logits;
  BatchEntry pa{a.get(), std::span(tokens_a).first(3)}, pb{b.get(), std::span(tokens_b).first(5)};
  model->forward(std::span(&pa, 1), &logits);
  model->forward(std::span(&pb, 1), &logits);
  logits.clear();
  // a decodes position 3; b processes positions 5-6 (all logits); c starts with a fresh 4-token prompt.
  std::vector<BatchEntry> batch = {{a.get(), std::span(tokens_a).subspan(3, 1)},
                                   {b.get(), std::span(tokens_b).subspan(5, 2), true},
                                   {c.get(), std::span(tokens_a).first(4)}};
  model->forward(batch, &logits);
  ASSERT_EQ(logits.size(), 4u * V);
  EXPECT_LT(max_abs_diff(&logits[0], &ref_a[3 * V], V), kTolerance);
  EXPECT_LT(max_abs_diff(&logits[1 * V], &ref_b[5 * V], V), kTolerance);
  EXPECT_LT(max_abs_diff(&logits[2 * V], &ref_b[6 * V], V), kTolerance);
  EXPECT_LT(max_abs_diff(&logits[3 * V], &ref_a[3 * V], V), kTolerance);
}

TEST_P(Gpt2ForwardTest, GreedyGenerationMatchesTheReferenceTokenForToken) {
  auto model = Gpt2Model::load(dir(), {2, 0, {}});
  std::vector<int32_t> prompt(tokens_b.begin(), tokens_b.begin() + 5);
  GenerateOptions go;
  go.max_tokens = 32;
  go.sampling.temperature = 0;
  go.ignore_eos = true;
  auto ours = generate(*model, prompt, go).tokens;
  EXPECT_EQ(ours, reference_greedy(dir(), prompt, 32));
}

TEST_P(Gpt2ForwardTest, GgufFileGivesTheSameLogitsAsTheSafetensorsFolder) {
  auto st = Gpt2Model::load(dir(), {2, 0, {}});
  auto gg = Gpt2Model::load(dir() + ".gguf", {2, 0, {}});
  const int V = st->config().vocab_size;
  std::vector<float> a, b;
  auto sa = st->new_sequence(), sb = gg->new_sequence();
  BatchEntry ea{sa.get(), tokens_a, true}, eb{sb.get(), tokens_a, true};
  st->forward(std::span(&ea, 1), &a);
  gg->forward(std::span(&eb, 1), &b);
  ASSERT_EQ(a.size(), b.size());
  for (size_t t = 0; t < tokens_a.size(); ++t) EXPECT_LT(max_abs_diff(&a[t * V], &b[t * V], V), 1e-4f);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Gpt2ForwardTest, ::testing::Values("tiny", "124M"));

TEST(Gpt2ModelTest, RejectsBadBatchesWithoutChangingAnySequence) {
  auto model = Gpt2Model::load(test_model("tiny"), {1, 0, {}});
  const int n_ctx = model->config().n_ctx;
  auto seq = model->new_sequence();
  std::vector<float> logits;
  std::vector<int32_t> bad_token = {1, 50257};
  BatchEntry e{seq.get(), bad_token};
  EXPECT_THROW(model->forward(std::span(&e, 1), &logits), Error);
  std::vector<int32_t> too_long(static_cast<size_t>(n_ctx) + 1, 5);
  e.tokens = too_long;
  try {
    model->forward(std::span(&e, 1), &logits);
    FAIL() << "expected an error";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(err.what()).find("context length 256"), std::string::npos) << err.what();
  }
  std::vector<BatchEntry> twice = {{seq.get(), std::span(bad_token).first(1)},
                                   {seq.get(), std::span(bad_token).first(1)}};
  EXPECT_THROW(model->forward(twice, &logits), Error);
  EXPECT_EQ(seq->length(), 0);
  EXPECT_EQ(model->kv_cache().blocks_in_use(), 0);
}

// Nine sequences in one batch (enough that each attention task takes all of a sequence's heads), first
// their prompts of different lengths together (prefill, 81 rows), then four decode steps together (9
// rows), against each sequence run alone; in each weight type.
TEST(Gpt2ModelTest, NineSequencesInOneBatchMatchEachRunAlone) {
  constexpr int kSequences = 9, kSteps = 4;
  for (DType t : {DType::kF32, DType::kF16, DType::kQ8_0}) {
    SCOPED_TRACE(dtype_name(t));
    auto model = Gpt2Model::load(test_model("tiny"), {2, 0, t});
    const int V = model->config().vocab_size;
    std::vector<std::vector<int32_t>> tokens(kSequences);
    for (int s = 0; s < kSequences; ++s)
      for (int i = 0; i < 5 + 2 * s + kSteps; ++i)
        tokens[static_cast<size_t>(s)].push_back((s * 7919 + i * 104729) % V);
    // Alone: the prompt's last logits, then each step's.
    std::vector<std::vector<float>> alone(kSequences);
    for (int s = 0; s < kSequences; ++s) {
      const auto& tk = tokens[static_cast<size_t>(s)];
      auto seq = model->new_sequence();
      BatchEntry e{seq.get(), std::span(tk).first(tk.size() - kSteps)};
      model->forward(std::span(&e, 1), &alone[static_cast<size_t>(s)]);
      for (size_t i = tk.size() - kSteps; i < tk.size(); ++i) {
        e.tokens = std::span(tk).subspan(i, 1);
        model->forward(std::span(&e, 1), &alone[static_cast<size_t>(s)]);
      }
    }
    // Together.
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<BatchEntry> batch;
    for (int s = 0; s < kSequences; ++s) {
      const auto& tk = tokens[static_cast<size_t>(s)];
      seqs.push_back(model->new_sequence());
      batch.push_back({seqs.back().get(), std::span(tk).first(tk.size() - kSteps)});
    }
    std::vector<std::vector<float>> together(kSteps + 1);
    model->forward(batch, &together[0]);
    for (int step = 1; step <= kSteps; ++step) {
      for (int s = 0; s < kSequences; ++s) {
        const auto& tk = tokens[static_cast<size_t>(s)];
        batch[static_cast<size_t>(s)].tokens = std::span(tk).subspan(tk.size() - kSteps + step - 1, 1);
      }
      model->forward(batch, &together[static_cast<size_t>(step)]);
    }
    for (int step = 0; step <= kSteps; ++step)
      for (int s = 0; s < kSequences; ++s)
        EXPECT_LT(max_abs_diff(&together[static_cast<size_t>(step)][static_cast<size_t>(s) * V],
                               &alone[static_cast<size_t>(s)][static_cast<size_t>(step) * V], V),
                  1e-4f)
            << "sequence " << s << " step " << step;
  }
}

TEST(Gpt2ModelTest, KvCacheBudgetExhaustionIsAnErrorAndRollsBack) {
  auto model = Gpt2Model::load(test_model("tiny"), {1, 32, {}});  // a's 20 tokens leave no block for b
  auto a = model->new_sequence(), b = model->new_sequence();
  std::vector<int32_t> t20(20, 7), t16(16, 9);
  std::vector<float> logits;
  BatchEntry ea{a.get(), t20};
  model->forward(std::span(&ea, 1), &logits);
  BatchEntry eb{b.get(), t16};
  try {
    model->forward(std::span(&eb, 1), &logits);
    FAIL() << "expected the cache to be full";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), ErrorCode::kResourceExhausted);
  }
  EXPECT_EQ(b->length(), 0);
  a.reset();  // releasing a sequence frees its blocks for others
  EXPECT_NO_THROW(model->forward(std::span(&eb, 1), &logits));
}

}  // namespace
}  // namespace cortex::model
