// Loading weight files: round trips, and every kind of bad file gets a one-line error naming the file
// and the problem (never a crash).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/gguf.h"
#include "model/gpt2_weights.h"
#include "model/model_loader.h"
#include "model/random_model.h"
#include "model/safetensors.h"
#include "support/test_models.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::model {
namespace {

namespace fs = std::filesystem;
using testing::test_model;

// A writable copy of the tiny test model.
std::string copy_tiny() {
  std::string dir = testing::make_temp_dir("weights") + "/tiny";
  fs::copy(test_model("tiny"), dir, fs::copy_options::recursive);
  return dir;
}

// Rewrites a safetensors header in place (data region unchanged).
void edit_header(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  std::string bytes = read_file(path);
  uint64_t len;
  std::memcpy(&len, bytes.data(), 8);
  auto header = nlohmann::json::parse(bytes.substr(8, len));
  edit(header);
  std::string text = header.dump();
  while ((8 + text.size()) % 8) text.push_back(' ');
  uint64_t new_len = text.size();
  std::string out(reinterpret_cast<const char*>(&new_len), 8);
  write_file_atomic(path, out + text + bytes.substr(8 + len));
}

void truncate_file(const std::string& path, double fraction) {
  fs::resize_file(path, static_cast<uintmax_t>(fs::file_size(path) * fraction));
}

// Loads and returns the error message (failing the test if loading succeeds).
std::string load_error(const std::string& path, ErrorCode expected = ErrorCode::kCorruptData) {
  try {
    load_model(path, {1, 0, {}});
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.code()), static_cast<int>(expected)) << e.what();
    std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
    return m;
  }
  ADD_FAILURE() << "loading " << path << " should fail";
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(WeightFilesTest, TinyModelLoadsInBothFormatsWithTheSameShape) {
  auto st = Gpt2Weights::load(test_model("tiny"));
  auto gg = Gpt2Weights::load(test_model("tiny.gguf"));
  for (const auto* w : {st.get(), gg.get()}) {
    EXPECT_EQ(w->config().vocab_size, 50257);
    EXPECT_EQ(w->config().n_embd, 64);
    EXPECT_EQ(w->config().n_layer, 2);
    EXPECT_EQ(w->config().n_head, 4);
    EXPECT_EQ(w->config().n_ctx, 256);
  }
  EXPECT_EQ(st->format(), "safetensors");
  EXPECT_EQ(gg->format(), "gguf");
  // Same values: the tied LM head / embedding agree element for element.
  EXPECT_EQ(std::memcmp(st->wte.weight, gg->wte.weight, 50257 * 64 * sizeof(float)), 0);
  // Conv1D weight [in, out] in HF is [out, in] in GGUF.
  const Linear& a = st->layers[1].mlp_fc;
  const Linear& b = gg->layers[1].mlp_fc;
  EXPECT_EQ(a.f32()[5 * a.out + 17], b.f32()[17 * b.in + 5]);
}

TEST(WeightFilesTest, GgufCarriesTheVocabularyAndMetadata) {
  auto f = GgufFile::open(test_model("tiny.gguf"));
  EXPECT_EQ(f->get_string("general.architecture"), "gpt2");
  EXPECT_EQ(f->get_int("gpt2.block_count"), 2);
  ASSERT_NE(f->get_string_array("tokenizer.ggml.tokens"), nullptr);
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens")->size(), 50257u);
  auto from_gguf = load_tokenizer(test_model("tiny.gguf"));
  auto from_dir = load_tokenizer(test_model("tiny"));
  const std::string text = "Hello world, it's 2026! Ünïcödé ✓";
  EXPECT_EQ(from_gguf->encode(text), from_dir->encode(text));
}

TEST(WeightFilesTest, TruncatedSafetensorsNamesTheFile) {
  std::string dir = copy_tiny();
  truncate_file(dir + "/model.safetensors", 0.5);
  std::string m = load_error(dir);
  EXPECT_TRUE(contains(m, "model.safetensors") && contains(m, "truncated")) << m;
}

TEST(WeightFilesTest, GarbageSafetensorsHeader) {
  std::string dir = copy_tiny();
  write_file_atomic(dir + "/model.safetensors", std::string("\xff\xff\xff\xff\xff\xff\x00\x00garbage", 15));
  std::string m = load_error(dir);
  EXPECT_TRUE(contains(m, "model.safetensors") && contains(m, "header length")) << m;
  write_file_atomic(dir + "/model.safetensors", std::string("\x05\x00\x00\x00\x00\x00\x00\x00{bad}", 13));
  m = load_error(dir);
  EXPECT_TRUE(contains(m, "invalid JSON header")) << m;
  write_file_atomic(dir + "/model.safetensors", "abc");
  m = load_error(dir);
  EXPECT_TRUE(contains(m, "truncated")) << m;
}

TEST(WeightFilesTest, WrongTensorShape) {
  std::string dir = copy_tiny();
  // Same byte count, wrong layout: [192, 64] instead of [64, 192].
  edit_header(dir + "/model.safetensors", [](nlohmann::json& h) {
    h["h.0.attn.c_attn.weight"]["shape"] = {192, 64};
  });
  std::string m = load_error(dir);
  EXPECT_TRUE(contains(m, "h.0.attn.c_attn.weight") && contains(m, "[192, 64]") && contains(m, "[64, 192]"))
      << m;
}

TEST(WeightFilesTest, ShapeThatDisagreesWithItsByteRange) {
  std::string dir = copy_tiny();
  edit_header(dir + "/model.safetensors", [](nlohmann::json& h) { h["ln_f.bias"]["shape"] = {65}; });
  std::string m = load_error(dir);
  EXPECT_TRUE(contains(m, "ln_f.bias") && contains(m, "data_offsets")) << m;
}

TEST(WeightFilesTest, MissingTensor) {
  std::string dir = copy_tiny();
  edit_header(dir + "/model.safetensors", [](nlohmann::json& h) { h.erase("h.1.mlp.c_proj.bias"); });
  std::string m = load_error(dir);
  EXPECT_TRUE(contains(m, "missing tensor h.1.mlp.c_proj.bias")) << m;
}

TEST(WeightFilesTest, ConfigThatDisagreesWithTheTensors) {
  std::string dir = copy_tiny();
  auto config = nlohmann::json::parse(read_file(dir + "/config.json"));
  config["n_embd"] = 128;
  config["n_head"] = 4;
  write_file_atomic(dir + "/config.json", config.dump());
  std::string m = load_error(dir);
  EXPECT_TRUE(contains(m, "wte.weight") && contains(m, "config.json")) << m;
  config["n_embd"] = "sixty-four";
  write_file_atomic(dir + "/config.json", config.dump());
  m = load_error(dir);
  EXPECT_TRUE(contains(m, "config.json") && contains(m, "n_embd")) << m;
  write_file_atomic(dir + "/config.json", "{not json");
  m = load_error(dir);
  EXPECT_TRUE(contains(m, "config.json") && contains(m, "invalid JSON")) << m;
}

TEST(WeightFilesTest, MissingVocabulary) {
  std::string dir = copy_tiny();
  for (const char* f : {"vocab.json", "merges.txt", "encoder.json", "vocab.bpe"}) fs::remove(dir + "/" + f);
  std::string m = load_error(dir, ErrorCode::kNotFound);
  EXPECT_TRUE(contains(m, dir) && contains(m, "vocab")) << m;
}

TEST(WeightFilesTest, MissingFiles) {
  std::string dir = copy_tiny();
  fs::remove(dir + "/model.safetensors");
  EXPECT_TRUE(contains(load_error(dir, ErrorCode::kNotFound), "missing model.safetensors"));
  EXPECT_TRUE(contains(load_error(dir + "/nope", ErrorCode::kNotFound), "no such model"));
}

TEST(WeightFilesTest, GgufOfAnotherArchitecture) {
  std::string path = testing::make_temp_dir("gguf") + "/llama.gguf";
  GgufWriter w(path);
  w.add_metadata("general.architecture", std::string("llama"));
  w.begin({{"token_embd.weight", {4, 8}}});
  std::vector<float> v(32, 0.5f);
  w.write_next(v.data(), v.size());
  w.finish();
  std::string m = load_error(path, ErrorCode::kUnsupported);
  EXPECT_TRUE(contains(m, "llama.gguf") && contains(m, "architecture is 'llama'")) << m;
}

TEST(WeightFilesTest, TruncatedOrForeignGguf) {
  std::string dir = testing::make_temp_dir("gguf");
  fs::copy(test_model("tiny.gguf"), dir + "/t.gguf");
  truncate_file(dir + "/t.gguf", 0.6);
  std::string m = load_error(dir + "/t.gguf");
  EXPECT_TRUE(contains(m, "t.gguf") && contains(m, "truncated")) << m;
  truncate_file(dir + "/t.gguf", 0.0001);  // cut inside the metadata
  m = load_error(dir + "/t.gguf");
  EXPECT_TRUE(contains(m, "truncated")) << m;
  write_file_atomic(dir + "/x.gguf", "PK\x03\x04 not a gguf file at all");
  m = load_error(dir + "/x.gguf");
  EXPECT_TRUE(contains(m, "x.gguf") && contains(m, "not a GGUF file")) << m;
}

// A GGUF holding one tensor described by hand: `innermost` values per row, of ggml type `type`, whose data
// starts `data_shift` bytes after the aligned data section.
std::string one_tensor_gguf(const std::string& path, uint64_t innermost, uint32_t type, size_t data_shift) {
  std::string b = "GGUF";
  auto put = [&](auto v) { b.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(uint32_t{3});  // version
  put(uint64_t{1});  // tensors
  put(uint64_t{0});  // metadata entries
  const std::string name = "token_embd.weight";
  put(uint64_t{name.size()});
  b += name;
  put(uint32_t{2});  // dimensions, innermost first
  put(innermost);
  put(uint64_t{2});
  put(type);
  put(uint64_t{data_shift});  // offset within the data section
  b.resize((b.size() + 31) / 32 * 32 + data_shift + 4096, '\0');
  write_file_atomic(path, b);
  return path;
}

std::string open_error(const std::string& path) {
  try {
    GgufFile::open(path);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
    return e.what();
  }
  return "(opened)";
}

TEST(WeightFilesTest, MalformedF16AndQ8_0Gguf) {
  const std::string dir = testing::make_temp_dir("gguf");
  // Q8_0 rows must be whole blocks of 32 values; F16 and Q8_0 data must be 2-byte aligned.
  std::string m = open_error(one_tensor_gguf(dir + "/rows.gguf", 48, 8, 0));
  EXPECT_TRUE(contains(m, "token_embd.weight") && contains(m, "not whole blocks of 32")) << m;
  m = open_error(one_tensor_gguf(dir + "/odd-f16.gguf", 64, 1, 1));
  EXPECT_TRUE(contains(m, "token_embd.weight") && contains(m, "2-byte aligned")) << m;
  m = open_error(one_tensor_gguf(dir + "/odd-q8.gguf", 64, 8, 1));
  EXPECT_TRUE(contains(m, "2-byte aligned")) << m;
  EXPECT_EQ(open_error(one_tensor_gguf(dir + "/fine.gguf", 64, 8, 0)), "(opened)");

  // Truncated typed files are refused by name, like F32 ones.
  for (DType t : {DType::kF16, DType::kQ8_0}) {
    RandomModelOptions o;
    o.config = Gpt2Config::from_shape_name("tiny");
    o.format = WeightFormat::kGguf;
    o.gguf_dtype = t;
    o.vocab_dir = test_model("tiny");
    o.out = dir + "/typed.gguf";
    write_random_model(o);
    truncate_file(o.out, 0.7);
    m = load_error(o.out);
    EXPECT_TRUE(contains(m, "typed.gguf") && contains(m, "truncated")) << m;
  }
}

// The F32 kernels read a safetensors file's weights in place: the files we write start their tensor
// data on a cache line, whatever the header's length.
TEST(WeightFilesTest, WrittenSafetensorsStartTensorDataOnACacheLine) {
  const std::string dir = testing::make_temp_dir("aligned");
  for (int layers : {1, 2, 3}) {  // headers of different lengths
    RandomModelOptions o;
    o.config = Gpt2Config::from_shape_name("tiny");
    o.config.n_layer = layers;
    o.vocab_dir = test_model("tiny");
    o.out = dir + "/m" + std::to_string(layers);
    write_random_model(o);
    auto f = SafetensorsFile::open(o.out + "/model.safetensors");
    const std::byte* first = nullptr;
    for (const auto& [name, t] : f->tensors())
      if (first == nullptr || static_cast<const std::byte*>(t.data) < first)
        first = static_cast<const std::byte*>(t.data);
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 64, 0u) << layers << " layers";
  }
}

// GGUF files we write say general.alignment = 64 (the format's default is 32) and keep every tensor's data
// on a cache line.
TEST(WeightFilesTest, WrittenGgufKeepsEveryTensorOnACacheLine) {
  const std::string dir = testing::make_temp_dir("aligned-gguf");
  for (DType t : {DType::kF32, DType::kF16, DType::kQ8_0}) {
    RandomModelOptions o;
    o.config = Gpt2Config::from_shape_name("tiny");
    o.format = WeightFormat::kGguf;
    o.gguf_dtype = t;
    o.vocab_dir = test_model("tiny");
    o.out = dir + "/tiny-" + dtype_name(t) + ".gguf";
    write_random_model(o);
    auto f = GgufFile::open(o.out);
    EXPECT_EQ(f->get_int("general.alignment"), 64) << dtype_name(t);
    ASSERT_FALSE(f->tensors().empty());
    for (const auto& [name, tensor] : f->tensors())
      EXPECT_EQ(reinterpret_cast<uintptr_t>(tensor.data) % 64, 0u) << dtype_name(t) << " " << name;
  }
  GgufWriter w(dir + "/unused.gguf");
  EXPECT_THROW(w.add_metadata("general.alignment", int64_t{32}), Error);
}

}  // namespace
}  // namespace cortex::model
