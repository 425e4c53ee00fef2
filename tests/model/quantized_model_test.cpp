// GPT-2 run with F16 and Q8_0 weights against the same model in F32: GGUF files of those types load in
// place (their pages stay the file's), safetensors convert on load to the same bytes, logits stay within
// stated tolerances, and greedy continuations agree with F32's on most tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "model/gpt2_model.h"
#include "model/q8_0_groups.h"
#include "model/random_model.h"
#include "model/safetensors.h"
#include "model/weight_types.h"
#include "support/test_models.h"
#include "util/error.h"

namespace cortex::model {
namespace {

using testing::test_model;

const std::vector<int32_t> kTokens = {464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 383, 50256};

// Logits of every position of `tokens`, [T, vocab].
std::vector<float> all_logits(Gpt2Model& m, const std::vector<int32_t>& tokens) {
  auto seq = m.new_sequence();
  BatchEntry e{seq.get(), tokens, true};
  std::vector<float> logits;
  m.forward(std::span(&e, 1), &logits);
  return logits;
}

int argmax(const float* x, int n) {
  return static_cast<int>(std::max_element(x, x + n) - x);
}

// Largest |a - b| over all logits, and the largest |a| (the scale it is measured against).
std::pair<float, float> max_diff_and_scale(const std::vector<float>& a, const std::vector<float>& b) {
  float diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(a[i]));
  }
  return {diff, scale};
}

// The bytes that the matrix `mapped` (a GGUF file's, in place) takes when converted on load: its own,
// or for Q8_0 its rows in groups of 16 (q8_0_groups.h).
std::vector<std::byte> converted_bytes(const Linear& mapped) {
  const auto* p = static_cast<const std::byte*>(mapped.weight);
  if (mapped.dtype != DType::kQ8_0) return {p, p + mapped.weight_bytes()};
  std::vector<std::byte> groups(q8_0_group_bytes(mapped.out, mapped.in));
  group_q8_0_rows(groups.data(), static_cast<const BlockQ8_0*>(mapped.weight), mapped.out, mapped.in);
  return groups;
}

// Writes the tiny random model (seed 7, as the shared test models) as a GGUF file of the given type.
std::string tiny_gguf(DType t, const std::string& dir) {
  RandomModelOptions o;
  o.config = Gpt2Config::from_shape_name("tiny");
  o.seed = 7;
  o.format = WeightFormat::kGguf;
  o.gguf_dtype = t;
  o.vocab_dir = test_model("tiny");  // the shared tiny model's folder holds the vocabulary
  o.out = dir + "/tiny-" + dtype_flag_name(t) + ".gguf";
  write_random_model(o);
  return o.out;
}

// Tolerances, measured on the random test models (seed 7), whose logits reach |0.8| (tiny) and |2.9|
// (124M): the largest |logit - F32's| over 12 positions × 50257 logits, relative to the largest |logit|,
// was 4e-4 (tiny) and 7e-4 (124M) for F16, 1.2e-2 and 1.6e-2 for Q8_0. The bounds leave about 3×.
constexpr float kF16RelativeTolerance = 2e-3f;
constexpr float kQ8_0RelativeTolerance = 5e-2f;
// F32 weights with an F16 KV cache (keys and values rounded to F16): measured 1.7e-4 (tiny) and 2.9e-4
// (124M), 32/32 greedy tokens on both.
constexpr float kF16KvRelativeTolerance = 1e-3f;
// Of 32 greedy steps along F32's continuation, the typed model picks F32's token at least this often.
// Measured: 32/32 for both types on tiny; 32/32 (F16) and 31/32 (Q8_0) on 124M.
constexpr int kMinAgreementF16 = 31;
constexpr int kMinAgreementQ8_0 = 28;

TEST(QuantizedModelTest, GgufFilesOfEachTypeLoadInPlaceAndMatchConversionOnLoad) {
  const std::string dir = testing::make_temp_dir("quantized");
  auto f32 = Gpt2Model::load(test_model("tiny"), {2, 0, {}});
  {  // F32 run in F32: every tensor of the file used in place, the vectors with the matrices.
    auto file = SafetensorsFile::open(test_model("tiny") + "/model.safetensors");
    size_t bytes = 0;
    for (const auto& [name, t] : file->tensors()) bytes += t.bytes;
    EXPECT_EQ(f32->weights().in_place().bytes, bytes);
  }
  for (DType t : {DType::kF16, DType::kQ8_0}) {
    SCOPED_TRACE(dtype_name(t));
    const std::string path = tiny_gguf(t, dir);
    auto file = Gpt2Model::load(path, {2, 0, {}});  // no dtype: the file's
    const Gpt2Weights& w = file->weights();
    EXPECT_EQ(w.dtype(), t);
    // The matrices point into the mapped file: nothing was converted or copied.
    ASSERT_NE(w.gguf(), nullptr);
    EXPECT_EQ(w.layers[1].mlp_fc.weight, w.gguf()->find("blk.1.ffn_up.weight")->data);
    EXPECT_EQ(w.lm_head.weight, w.gguf()->find("token_embd.weight")->data);
    EXPECT_EQ(w.layers[0].attn_qkv.dtype, t);
    // So are its F32 vectors, beside them: every tensor is the file's.
    EXPECT_EQ(w.layers[1].attn_qkv.bias, w.gguf()->find("blk.1.attn_qkv.bias")->data);
    EXPECT_EQ(w.layers[1].ln_2_weight, w.gguf()->find("blk.1.ffn_norm.weight")->data);
    // The safetensors F32 folder converted on load, and the F32 GGUF converted on load, hold the same
    // values in every matrix, Q8_0's in groups of 16 rows where the file's lie row by row. (The file's
    // position embedding is stored in its type too, where conversion on load keeps F32's: the logits
    // differ by that alone.)
    EXPECT_FALSE(w.wte.q8_0_groups);
    EXPECT_FALSE(w.layers[0].attn_qkv.q8_0_groups);
    ModelOptions as_t{2, 0, t};
    auto from_st = Gpt2Model::load(test_model("tiny"), as_t);
    auto from_gguf_f32 = Gpt2Model::load(test_model("tiny.gguf"), as_t);
    for (const Gpt2Model* m : {from_st.get(), from_gguf_f32.get()}) {
      const Gpt2Weights& c = m->weights();
      EXPECT_EQ(c.wte.q8_0_groups, t == DType::kQ8_0);
      // Beside converted matrices, the file's small F32 vectors are copied too (used in place, each would
      // map the 2 MiB page around it): nothing of tiny's is used in place.
      EXPECT_EQ(c.in_place().bytes, 0u);
      const std::vector<std::byte> wte = converted_bytes(w.wte);
      ASSERT_EQ(c.wte.weight_bytes(), wte.size());
      EXPECT_EQ(std::memcmp(c.wte.weight, wte.data(), wte.size()), 0);
      for (size_t l = 0; l < w.layers.size(); ++l)
        for (auto member : {&LayerWeights::attn_qkv, &LayerWeights::attn_proj, &LayerWeights::mlp_fc,
                            &LayerWeights::mlp_proj}) {
          const Linear &x = c.layers[l].*member, &y = w.layers[l].*member;
          ASSERT_EQ(x.dtype, t);
          ASSERT_FALSE(x.in_major);
          ASSERT_EQ(x.q8_0_groups, t == DType::kQ8_0);
          const std::vector<std::byte> expected = converted_bytes(y);
          ASSERT_EQ(x.weight_bytes(), expected.size());
          EXPECT_EQ(std::memcmp(x.weight, expected.data(), expected.size()), 0) << "layer " << l;
        }
    }
    auto a = all_logits(*file, kTokens), b = all_logits(*from_st, kTokens);
    const auto [diff, scale] = max_diff_and_scale(a, b);
    EXPECT_LE(diff, (t == DType::kF16 ? kF16RelativeTolerance : kQ8_0RelativeTolerance) * scale);
    EXPECT_EQ(all_logits(*from_gguf_f32, kTokens), b);
    // And the typed file widened back to F32 runs too.
    auto widened = Gpt2Model::load(path, {2, 0, DType::kF32});
    EXPECT_EQ(widened->weights().dtype(), DType::kF32);
    EXPECT_LE(max_diff_and_scale(all_logits(*widened, kTokens), a).first, 1e-3f);
  }
}

// A single sequence's one-token steps run as one fork of the pool with barriers between the products
// (the default where every matrix is stored [out, in]) and as a fork per product: the same logits to the
// bit, step after step, for both converted types, 2 and 3 threads, F32 and F16 caches. A model of 12
// heads besides the tiny one's 4, so that attention's head groups fall on two threads.
TEST(QuantizedModelTest, OneTokenStepsInOneForkEqualAForkPerProduct) {
  const std::string dir = testing::make_temp_dir("one_fork");
  RandomModelOptions wide;
  wide.config = Gpt2Config::from_shape_name("tiny");
  wide.config.n_embd = 192, wide.config.n_head = 12;
  wide.seed = 3;
  wide.vocab_dir = test_model("tiny");
  wide.out = dir + "/wide";
  write_random_model(wide);
  for (const std::string& path : {test_model("tiny"), wide.out})
    for (DType t : {DType::kF16, DType::kQ8_0})
      for (int threads : {2, 3})
        for (DType kv : {DType::kF32, DType::kF16}) {
          SCOPED_TRACE(path + " " + dtype_name(t) + ", " + std::to_string(threads) + " threads, " +
                       dtype_name(kv) + " cache");
          ModelOptions options{threads, 0, t};
          options.kv_cache_dtype = kv;
          auto one_fork = Gpt2Model::load(path, options);
          options.fork_per_product = true;
          auto forks = Gpt2Model::load(path, options);
          auto a = one_fork->new_sequence(), b = forks->new_sequence();
          std::vector<int32_t> tokens = kTokens;
          for (int step = 0; step < 24; ++step) {
            BatchEntry ea{a.get(), tokens}, eb{b.get(), tokens};
            std::vector<float> la, lb;
            one_fork->forward(std::span(&ea, 1), &la);
            forks->forward(std::span(&eb, 1), &lb);
            ASSERT_EQ(la.size(), lb.size());
            ASSERT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0) << "step " << step;
            const int vocab = one_fork->config().vocab_size;
            tokens = {argmax(la.data() + la.size() - static_cast<size_t>(vocab), vocab)};
          }
          EXPECT_EQ(a->length(), static_cast<int>(kTokens.size()) + 23);
        }
}

TEST(QuantizedModelTest, RejectsBf16AsATarget) {
  try {
    Gpt2Model::load(test_model("tiny"), {1, 0, DType::kBF16});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("f32, f16 or q8_0"), std::string::npos) << e.what();
  }
}

class QuantizedAccuracyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizedAccuracyTest, LogitsAndGreedyTokensAgreeWithF32) {
  const std::string path = test_model(GetParam());
  auto f32 = Gpt2Model::load(path, {2, 0, {}});
  const int V = f32->config().vocab_size;
  auto ref = all_logits(*f32, kTokens);
  // F32's greedy continuation of 32 tokens.
  constexpr int kSteps = 32;
  std::vector<int32_t> greedy(kTokens.begin(), kTokens.begin() + 4);
  {
    auto seq = f32->new_sequence();
    std::vector<float> logits;
    BatchEntry e{seq.get(), greedy};
    f32->forward(std::span(&e, 1), &logits);
    for (int s = 0; s < kSteps; ++s) {
      greedy.push_back(argmax(logits.data(), V));
      logits.clear();
      e.tokens = std::span(greedy).last(1);
      f32->forward(std::span(&e, 1), &logits);
    }
  }
  // The F32 model's cache holds floats unless asked otherwise (default_kv_cache_dtype).
  EXPECT_EQ(f32->kv_cache().dtype(), DType::kF32);
  // F16 and Q8_0 weights with their default F16 cache and with an F32 cache, and F32 weights with an F16
  // cache; an F16 cache adds its own tolerance to the weights'.
  struct Variant {
    const char* name;
    ModelOptions options;
    DType cache;  // the cache's type these options give
    float tolerance;
    int min_agreement;
  };
  for (const Variant& v : {Variant{"f16",
                                   {2, 0, DType::kF16},
                                   DType::kF16,
                                   kF16RelativeTolerance + kF16KvRelativeTolerance,
                                   kMinAgreementF16},
                           Variant{"f16, f32 KV cache",
                                   {2, 0, DType::kF16, DType::kF32},
                                   DType::kF32,
                                   kF16RelativeTolerance,
                                   kMinAgreementF16},
                           Variant{"q8_0",
                                   {2, 0, DType::kQ8_0},
                                   DType::kF16,
                                   kQ8_0RelativeTolerance + kF16KvRelativeTolerance,
                                   kMinAgreementQ8_0},
                           Variant{"q8_0, f32 KV cache",
                                   {2, 0, DType::kQ8_0, DType::kF32},
                                   DType::kF32,
                                   kQ8_0RelativeTolerance,
                                   kMinAgreementQ8_0},
                           Variant{"f32, f16 KV cache",
                                   {2, 0, DType::kF32, DType::kF16},
                                   DType::kF16,
                                   kF16KvRelativeTolerance,
                                   kMinAgreementF16}}) {
    auto m = Gpt2Model::load(path, v.options);
    ASSERT_EQ(m->kv_cache().dtype(), v.cache) << v.name;
    auto ours = all_logits(*m, kTokens);
    auto [diff, scale] = max_diff_and_scale(ours, ref);
    // Teacher-forced agreement: the typed model reads F32's continuation and predicts each next token.
    auto along = all_logits(*m, greedy);
    int agree = 0;
    for (int s = 0; s < kSteps; ++s) {
      const size_t pos = 3 + static_cast<size_t>(s);
      agree += argmax(&along[pos * V], V) == greedy[pos + 1];
    }
    // Free-running: the typed model's own greedy continuation, compared position by position.
    auto seq = m->new_sequence();
    std::vector<int32_t> own(greedy.begin(), greedy.begin() + 4);
    std::vector<float> logits;
    BatchEntry e{seq.get(), own};
    m->forward(std::span(&e, 1), &logits);
    int same = 0, prefix = -1;
    for (int s = 0; s < kSteps; ++s) {
      own.push_back(argmax(logits.data(), V));
      if (own.back() == greedy[own.size() - 1])
        ++same;
      else if (prefix < 0)
        prefix = s;
      logits.clear();
      e.tokens = std::span(own).last(1);
      m->forward(std::span(&e, 1), &logits);
    }
    if (prefix < 0) prefix = kSteps;
    EXPECT_LE(diff, v.tolerance * scale) << v.name;
    EXPECT_GE(agree, v.min_agreement) << v.name;
    // Free-running continuations part at the first near-tie (a random model's logits are flat) and
    // are reported, not bounded.
    std::printf(
        "%s %s: max |logit - F32| %.5f (logits up to %.3f); teacher-forced agreement %d/%d; "
        "free-running: same token at %d/%d positions, identical for the first %d\n",
        GetParam().c_str(), v.name, diff, scale, agree, kSteps, same, kSteps, prefix);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, QuantizedAccuracyTest, ::testing::Values("tiny", "124M.gguf"));

}  // namespace
}  // namespace cortex::model
