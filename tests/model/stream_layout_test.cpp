// The layers' matrices laid out for single-stream decode (stream_layout.h, Gpt2Weights::lay_out_streams):
// where it applies, the rows it holds, and logits equal to the bit to a model whose matrices stay as
// loaded, on every path that reads them (prompts through sgemm and the small-batch kernels, batched
// steps, single-stream steps).
#include "model/stream_layout.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "model/gpt2_model.h"
#include "model/kernel_table.h"
#include "model/random_model.h"
#include "model/weight_types.h"
#include "support/test_env.h"
#include "support/test_models.h"

namespace cortex::model {
namespace {

using testing::test_model;

// A random model whose every stream starts on a multiple of 16 rows for 1, 2 and 4 threads (n_embd 256),
// with a context long enough for a prompt past the small-batch kernels (sgemm).
std::string layout_model(const std::string& dir) {
  RandomModelOptions o;
  o.config = Gpt2Config::from_shape_name("tiny");
  o.config.n_embd = 256, o.config.n_head = 4, o.config.n_ctx = 512;
  o.seed = 11;
  o.vocab_dir = test_model("tiny");
  o.out = dir + "/layout";
  write_random_model(o);
  return o.out;
}

std::vector<const Linear*> layer_matrices(const Gpt2Weights& w) {
  std::vector<const Linear*> out;
  for (const LayerWeights& l : w.layers)
    for (const Linear* L : {&l.attn_qkv, &l.attn_proj, &l.mlp_fc, &l.mlp_proj}) out.push_back(L);
  return out;
}

// Row r of a laid-out matrix, from its runs.
const std::byte* run_row(const Linear& L, int r) {
  for (int i = 0; i < L.run_count; ++i)
    if (r >= L.runs[i].first && r < L.runs[i].first + L.runs[i].rows)
      return L.runs[i].data + static_cast<size_t>(r - L.runs[i].first) * dtype_bytes(L.dtype, L.in);
  return nullptr;
}

// Logits of: a prompt of `prompt` tokens in one sequence, then a step of three sequences one token each
// (two of them new), then 12 single-stream steps of the first.
std::vector<float> run_paths(Gpt2Model& m, int prompt) {
  std::vector<float> logits;
  auto a = m.new_sequence(), b = m.new_sequence(), c = m.new_sequence();
  std::vector<int32_t> tokens(static_cast<size_t>(prompt));
  for (int i = 0; i < prompt; ++i) tokens[static_cast<size_t>(i)] = (i * 7919 + 13) % m.config().vocab_size;
  BatchEntry e{a.get(), tokens};
  m.forward({&e, 1}, &logits);
  const int32_t t1 = 11, t2 = 22, t3 = 33;
  const BatchEntry batch[3] = {{a.get(), {&t1, 1}}, {b.get(), {&t2, 1}}, {c.get(), {&t3, 1}}};
  m.forward(batch, &logits);
  for (int step = 0; step < 12; ++step) {
    const int32_t t = 100 + step;
    BatchEntry one{a.get(), {&t, 1}};
    m.forward({&one, 1}, &logits);
  }
  return logits;
}

TEST(StreamLayoutTest, LaidOutModelsHoldTheSameRowsAndGiveTheSameLogits) {
  const std::string path = layout_model(testing::make_temp_dir("stream_layout"));
  // Past the small-batch kernels, so that prompts run through sgemm's panels as well.
  const int long_prompt = kernels().small_batch_prompt_rows + 9;
  for (DType t : {DType::kF16, DType::kQ8_0})
    for (int threads : {1, 2, 4}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + ", " + std::to_string(threads) + " threads");
      ModelOptions options{threads, 0, t};
      auto laid_out = Gpt2Model::load(path, options);
      options.stream_layout = false;
      auto as_loaded = Gpt2Model::load(path, options);
      EXPECT_GT(laid_out->weights().stream_layout_bytes(), 0u);
      EXPECT_EQ(as_loaded->weights().stream_layout_bytes(), 0u);
      const auto x = layer_matrices(laid_out->weights()), y = layer_matrices(as_loaded->weights());
      ASSERT_EQ(x.size(), y.size());
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_EQ(x[i]->run_count, 4 * threads);
        EXPECT_EQ(x[i]->weight, nullptr);  // its earlier memory is released
        ASSERT_EQ(y[i]->run_count, 0);
        const size_t rb = dtype_bytes(t, y[i]->in);
        for (int r = 0; r < y[i]->out; ++r) {
          const std::byte* row = run_row(*x[i], r);
          ASSERT_NE(row, nullptr) << "matrix " << i << " row " << r;
          ASSERT_EQ(std::memcmp(row, static_cast<const std::byte*>(y[i]->weight) + r * rb, rb), 0)
              << "matrix " << i << " row " << r;
        }
      }
      for (int prompt : {5, long_prompt}) {
        SCOPED_TRACE("prompt of " + std::to_string(prompt));
        const auto a = run_paths(*laid_out, prompt), b = run_paths(*as_loaded, prompt);
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
      }
    }
}

// Where it does not apply, the matrices stay as they are: F32 weights, a GGUF file mapped in its own type
// (its pages stay shared between processes), and shapes whose streams do not start on multiples of 16
// rows (the tiny model's 64 columns on two threads).
TEST(StreamLayoutTest, LeavesMappedFilesF32AndUnevenShapesAsTheyAre) {
  const std::string dir = testing::make_temp_dir("stream_layout_not");
  const std::string path = layout_model(dir);
  auto f32 = Gpt2Model::load(path, {2, 0, DType::kF32});
  EXPECT_EQ(f32->weights().stream_layout_bytes(), 0u);
  RandomModelOptions o;
  o.config = Gpt2Config::from_shape_name("tiny");
  o.config.n_embd = 256, o.config.n_head = 4;
  o.seed = 11;
  o.format = WeightFormat::kGguf;
  o.gguf_dtype = DType::kQ8_0;
  o.vocab_dir = test_model("tiny");
  o.out = dir + "/layout-q8_0.gguf";
  write_random_model(o);
  auto mapped = Gpt2Model::load(o.out, {2, 0, {}});
  EXPECT_EQ(mapped->weights().stream_layout_bytes(), 0u);
  EXPECT_EQ(mapped->weights().layers[0].mlp_fc.weight,
            mapped->weights().gguf()->find("blk.0.ffn_up.weight")->data);
  auto uneven = Gpt2Model::load(test_model("tiny"), {2, 0, DType::kQ8_0});
  EXPECT_EQ(uneven->weights().stream_layout_bytes(), 0u);
  EXPECT_NE(uneven->weights().layers[0].attn_qkv.weight, nullptr);
}

}  // namespace
}  // namespace cortex::model
