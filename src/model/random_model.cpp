#include "model/random_model.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "model/gguf.h"
#include "model/safetensors.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::model {

namespace {

struct Vocabulary {
  std::string vocab_json;           // {token: id}
  std::string merges_text;          // "#version: 0.2\na b\n..."
  std::vector<std::string> tokens;  // by id
  std::vector<std::string> merges;  // "a b"
};

Vocabulary read_vocabulary(const std::string& dir) {
  namespace fs = std::filesystem;
  std::string json_path = dir + "/vocab.json", merges_path = dir + "/merges.txt";
  if (!fs::exists(json_path)) json_path = dir + "/encoder.json", merges_path = dir + "/vocab.bpe";
  if (!fs::exists(json_path) || !fs::exists(merges_path))
    throw not_found(
        dir + ": no GPT-2 vocabulary (looked for vocab.json + merges.txt and encoder.json + vocab.bpe)");
  Vocabulary v;
  v.vocab_json = read_file(json_path);
  v.merges_text = read_file(merges_path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(v.vocab_json);
  } catch (const nlohmann::json::exception& e) {
    throw corrupt_data(json_path + ": invalid JSON: " + e.what());
  }
  if (!j.is_object() || j.empty()) throw corrupt_data(json_path + ": expected an object of token -> id");
  v.tokens.resize(j.size());
  for (auto& [token, id] : j.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<size_t>() >= j.size())
      throw corrupt_data(json_path + ": token ids must be 0.." + std::to_string(j.size() - 1));
    v.tokens[id.get<size_t>()] = token;
  }
  std::istringstream lines(v.merges_text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    v.merges.push_back(line);
  }
  return v;
}

uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull ^ seed;  // FNV-1a over the name, mixed with the seed
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Fills `out` with N(0, std) values (Box-Muller over a 64-bit Mersenne Twister).
void fill_normal(std::vector<float>& out, uint64_t seed, float stddev) {
  std::mt19937_64 rng(seed);
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
  for (size_t i = 0; i < out.size(); i += 2) {
    double r = std::sqrt(-2.0 * std::log(uniform())), theta = 2.0 * M_PI * uniform();
    out[i] = static_cast<float>(r * std::cos(theta) * stddev);
    if (i + 1 < out.size()) out[i + 1] = static_cast<float>(r * std::sin(theta) * stddev);
  }
}

enum class Init { kNormal, kOnes, kZeros };

struct TensorSpec {
  std::string hf_name;         // Hugging Face name (the seed of its values)
  std::string gguf_name;       // llama.cpp's name
  std::vector<int64_t> shape;  // HF shape
  Init init;
  bool transpose_for_gguf;  // Conv1D weights: [in, out] in HF, [out, in] in GGUF
};

std::vector<TensorSpec> gpt2_tensors(const Gpt2Config& c) {
  const int64_t C = c.n_embd;
  std::vector<TensorSpec> t;
  t.push_back({"wte.weight", "token_embd.weight", {c.vocab_size, C}, Init::kNormal, false});
  t.push_back({"wpe.weight", "position_embd.weight", {c.n_ctx, C}, Init::kNormal, false});
  for (int i = 0; i < c.n_layer; ++i) {
    std::string h = "h." + std::to_string(i) + ".", b = "blk." + std::to_string(i) + ".";
    t.push_back({h + "ln_1.weight", b + "attn_norm.weight", {C}, Init::kOnes, false});
    t.push_back({h + "ln_1.bias", b + "attn_norm.bias", {C}, Init::kZeros, false});
    t.push_back({h + "attn.c_attn.weight", b + "attn_qkv.weight", {C, 3 * C}, Init::kNormal, true});
    t.push_back({h + "attn.c_attn.bias", b + "attn_qkv.bias", {3 * C}, Init::kZeros, false});
    t.push_back({h + "attn.c_proj.weight", b + "attn_output.weight", {C, C}, Init::kNormal, true});
    t.push_back({h + "attn.c_proj.bias", b + "attn_output.bias", {C}, Init::kZeros, false});
    t.push_back({h + "ln_2.weight", b + "ffn_norm.weight", {C}, Init::kOnes, false});
    t.push_back({h + "ln_2.bias", b + "ffn_norm.bias", {C}, Init::kZeros, false});
    t.push_back({h + "mlp.c_fc.weight", b + "ffn_up.weight", {C, 4 * C}, Init::kNormal, true});
    t.push_back({h + "mlp.c_fc.bias", b + "ffn_up.bias", {4 * C}, Init::kZeros, false});
    t.push_back({h + "mlp.c_proj.weight", b + "ffn_down.weight", {4 * C, C}, Init::kNormal, true});
    t.push_back({h + "mlp.c_proj.bias", b + "ffn_down.bias", {C}, Init::kZeros, false});
  }
  t.push_back({"ln_f.weight", "output_norm.weight", {C}, Init::kOnes, false});
  t.push_back({"ln_f.bias", "output_norm.bias", {C}, Init::kZeros, false});
  return t;
}

void generate(const TensorSpec& spec, uint64_t seed, std::vector<float>& values) {
  size_t n = 1;
  for (int64_t d : spec.shape) n *= static_cast<size_t>(d);
  values.resize(n);
  switch (spec.init) {
    case Init::kNormal:
      fill_normal(values, tensor_seed(seed, spec.hf_name), 0.02f);
      break;
    case Init::kOnes:
      std::fill(values.begin(), values.end(), 1.f);
      break;
    case Init::kZeros:
      std::fill(values.begin(), values.end(), 0.f);
      break;
  }
}

}  // namespace

void write_random_model(const RandomModelOptions& options) {
  namespace fs = std::filesystem;
  Vocabulary vocab = read_vocabulary(options.vocab_dir);
  Gpt2Config config = options.config;
  config.vocab_size = static_cast<int>(vocab.tokens.size());
  config.validate("random model");
  const auto specs = gpt2_tensors(config);
  std::vector<float> values, transposed;

  if (options.format == WeightFormat::kSafetensors && options.gguf_dtype != DType::kF32)
    throw invalid_argument("random safetensors models are written in F32 only (other types: GGUF)");
  if (options.format == WeightFormat::kSafetensors) {
    fs::create_directories(options.out);
    std::vector<SafetensorsWriter::Entry> entries;
    for (const auto& s : specs) entries.push_back({s.hf_name, s.shape});
    const std::string weights = options.out + "/model.safetensors";
    SafetensorsWriter writer(weights + ".partial", entries);
    for (const auto& s : specs) {
      generate(s, options.seed, values);
      writer.write_next(values.data(), values.size());
    }
    writer.finish();
    fs::rename(weights + ".partial", weights);
    write_file_atomic(options.out + "/config.json", config.to_hf_json().dump(2) + "\n");
    write_file_atomic(options.out + "/vocab.json", vocab.vocab_json);
    write_file_atomic(options.out + "/merges.txt", vocab.merges_text);
    // The OpenAI file names too, which seed-style Python handlers read.
    write_file_atomic(options.out + "/encoder.json", vocab.vocab_json);
    write_file_atomic(options.out + "/vocab.bpe", vocab.merges_text);
    return;
  }

  if (fs::path(options.out).has_parent_path()) fs::create_directories(fs::path(options.out).parent_path());
  GgufWriter writer(options.out + ".partial");
  writer.add_metadata("general.architecture", std::string("gpt2"));
  writer.add_metadata("general.name", std::string("random gpt2"));
  // llama.cpp's file types: 0 all F32, 1 mostly F16, 7 mostly Q8_0.
  writer.add_metadata("general.file_type", int64_t{options.gguf_dtype == DType::kF16    ? 1
                                                   : options.gguf_dtype == DType::kQ8_0 ? 7
                                                                                        : 0});
  writer.add_metadata("gpt2.context_length", int64_t{config.n_ctx});
  writer.add_metadata("gpt2.embedding_length", int64_t{config.n_embd});
  writer.add_metadata("gpt2.feed_forward_length", int64_t{4} * config.n_embd);
  writer.add_metadata("gpt2.block_count", int64_t{config.n_layer});
  writer.add_metadata("gpt2.attention.head_count", int64_t{config.n_head});
  writer.add_metadata("gpt2.attention.layer_norm_epsilon", double{config.layer_norm_epsilon});
  writer.add_metadata("tokenizer.ggml.model", std::string("gpt2"));
  // The pre-tokenizer's split rule: GPT-2's own (llama.cpp warns that text may tokenize badly without it).
  writer.add_metadata("tokenizer.ggml.pre", std::string("gpt-2"));
  writer.add_metadata("tokenizer.ggml.tokens", vocab.tokens);
  std::vector<int64_t> types(vocab.tokens.size(), 1);
  int64_t eos = static_cast<int64_t>(vocab.tokens.size()) - 1;
  for (size_t i = 0; i < vocab.tokens.size(); ++i)
    if (vocab.tokens[i] == "<|endoftext|>") types[i] = 3, eos = static_cast<int64_t>(i);
  writer.add_metadata("tokenizer.ggml.token_type", types);
  writer.add_metadata("tokenizer.ggml.merges", vocab.merges);
  writer.add_metadata("tokenizer.ggml.bos_token_id", eos);
  writer.add_metadata("tokenizer.ggml.eos_token_id", eos);
  std::vector<GgufWriter::Entry> entries;
  for (const auto& s : specs) {
    auto shape = s.shape;
    if (s.transpose_for_gguf) std::swap(shape[0], shape[1]);
    entries.push_back({s.gguf_name, shape, shape.size() == 2 ? options.gguf_dtype : DType::kF32});
  }
  writer.begin(entries);
  for (const auto& s : specs) {
    generate(s, options.seed, values);
    if (s.transpose_for_gguf) {
      const size_t rows = static_cast<size_t>(s.shape[0]), cols = static_cast<size_t>(s.shape[1]);
      transposed.resize(values.size());
      for (size_t r = 0; r < rows; ++r)
        for (size_t c = 0; c < cols; ++c) transposed[c * rows + r] = values[r * cols + c];
      writer.write_next(transposed.data(), transposed.size());
    } else {
      writer.write_next(values.data(), values.size());
    }
  }
  writer.finish();
  fs::rename(options.out + ".partial", options.out);
}

}  // namespace cortex::model
