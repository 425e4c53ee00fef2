#include "model/gpt2_weights.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <filesystem>

#include "model/half.h"
#include "util/error.h"

namespace cortex::model {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  TensorView t;
  t.shape = s;
  return t.shape_string();
}

// Looks a tensor up by name in either file type and checks its shape.
template <class File>
const TensorView& require(const File& file, const std::vector<std::string>& names,
                          const std::vector<int64_t>& shape, const std::string& config_source) {
  for (const auto& n : names) {
    if (const TensorView* t = file.find(n)) {
      if (t->shape != shape)
        throw corrupt_data(file.path() + ": tensor " + n + " has shape " + t->shape_string() + " but " +
                           config_source + " implies " + shape_str(shape));
      return *t;
    }
  }
  throw corrupt_data(file.path() + ": missing tensor " + names.front());
}

}  // namespace

std::unique_ptr<Gpt2Weights> Gpt2Weights::load(const std::string& path) {
  auto w = std::unique_ptr<Gpt2Weights>(new Gpt2Weights());
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) {
    w->load_safetensors_dir(path);
  } else if (fs::exists(path)) {
    w->load_gguf(path);
  } else {
    throw not_found(path + ": no such model file or folder");
  }
  return w;
}

const float* Gpt2Weights::as_f32(const TensorView& t) {
  if (t.dtype == DType::kF32) return static_cast<const float*>(t.data);
  const int64_t n = t.elements();
  auto buf = std::make_unique<float[]>(static_cast<size_t>(n));
  const auto* src = static_cast<const uint8_t*>(t.data);
  switch (t.dtype) {
    case DType::kF16:
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        buf[i] = t.dtype == DType::kF16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
      }
      break;
    case DType::kQ8_0:  // blocks of 32: an f16 scale, then 32 int8 values
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* block = src + b * 34;
        uint16_t d;
        std::memcpy(&d, block, 2);
        float scale = fp16_to_fp32(d);
        for (int j = 0; j < 32; ++j) buf[b * 32 + j] = scale * static_cast<int8_t>(block[2 + j]);
      }
      break;
    case DType::kF32:
      break;
  }
  converted_.push_back(std::move(buf));
  return converted_.back().get();
}

void Gpt2Weights::load_safetensors_dir(const std::string& dir) {
  format_ = "safetensors";
  const std::string config_path = dir + "/config.json";
  const std::string weights_path = dir + "/model.safetensors";
  if (!std::filesystem::exists(config_path)) throw not_found(dir + ": missing config.json");
  if (!std::filesystem::exists(weights_path)) throw not_found(dir + ": missing model.safetensors");
  config_ = Gpt2Config::from_hf_json(config_path);
  safetensors_ = SafetensorsFile::open(weights_path);
  const auto& f = *safetensors_;
  const int64_t C = config_.n_embd, V = config_.vocab_size;
  auto get = [&](const std::string& name, std::vector<int64_t> shape) {
    const TensorView& t = require(f, {name, "transformer." + name}, shape, "config.json");
    return as_f32(t);
  };
  auto linear = [&](const std::string& name, int in, int out) {
    Linear l;
    l.weight = get(name + ".weight", {in, out});
    l.bias = get(name + ".bias", {out});
    l.in = in, l.out = out, l.in_major = true;
    return l;
  };
  wte = get("wte.weight", {V, C});
  wpe = get("wpe.weight", {config_.n_ctx, C});
  for (int i = 0; i < config_.n_layer; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    LayerWeights l;
    l.ln_1_weight = get(p + "ln_1.weight", {C});
    l.ln_1_bias = get(p + "ln_1.bias", {C});
    l.attn_qkv = linear(p + "attn.c_attn", C, 3 * C);
    l.attn_proj = linear(p + "attn.c_proj", C, C);
    l.ln_2_weight = get(p + "ln_2.weight", {C});
    l.ln_2_bias = get(p + "ln_2.bias", {C});
    l.mlp_fc = linear(p + "mlp.c_fc", C, 4 * C);
    l.mlp_proj = linear(p + "mlp.c_proj", 4 * C, C);
    layers.push_back(l);
  }
  ln_f_weight = get("ln_f.weight", {C});
  ln_f_bias = get("ln_f.bias", {C});
  lm_head = Linear{wte, nullptr, static_cast<int>(C), static_cast<int>(V), false};
  if (f.find("lm_head.weight") != nullptr)
    lm_head.weight = as_f32(require(f, {"lm_head.weight"}, {V, C}, "config.json"));
}

void Gpt2Weights::load_gguf(const std::string& path) {
  format_ = "gguf";
  gguf_ = GgufFile::open(path);
  const auto& f = *gguf_;
  auto arch = f.get_string("general.architecture");
  if (!arch) throw corrupt_data(path + ": missing general.architecture");
  if (*arch != "gpt2") throw unsupported(path + ": architecture is '" + *arch + "'; only gpt2 is supported");
  auto need_int = [&](const std::string& key) -> int {
    auto v = f.get_int(key);
    if (!v) throw corrupt_data(path + ": missing metadata " + key);
    return static_cast<int>(*v);
  };
  config_.n_ctx = need_int("gpt2.context_length");
  config_.n_embd = need_int("gpt2.embedding_length");
  config_.n_layer = need_int("gpt2.block_count");
  config_.n_head = need_int("gpt2.attention.head_count");
  if (auto eps = f.get_float("gpt2.attention.layer_norm_epsilon"))
    config_.layer_norm_epsilon = static_cast<float>(*eps);
  const TensorView* embd = f.find("token_embd.weight");
  if (embd == nullptr || embd->shape.size() != 2)
    throw corrupt_data(path + ": missing tensor token_embd.weight");
  config_.vocab_size = static_cast<int>(embd->shape[0]);
  config_.validate(path);
  if (auto ff = f.get_int("gpt2.feed_forward_length"); ff && *ff != 4 * config_.n_embd)
    throw unsupported(path + ": gpt2.feed_forward_length " + std::to_string(*ff) + " is not 4 * n_embd");

  const int64_t C = config_.n_embd, V = config_.vocab_size;
  const std::string src = "its metadata";
  auto get = [&](const std::string& name, std::vector<int64_t> shape) {
    const TensorView& t = require(f, {name}, shape, src);
    if (t.dtype != DType::kF32)
      spdlog::debug("{}: widening {} from {} to F32", path, name, dtype_name(t.dtype));
    return as_f32(t);
  };
  auto linear = [&](const std::string& name, int in, int out) {
    Linear l;
    l.weight = get(name + ".weight", {out, in});
    l.bias = get(name + ".bias", {out});
    l.in = in, l.out = out, l.in_major = false;
    return l;
  };
  wte = get("token_embd.weight", {V, C});
  wpe = get("position_embd.weight", {config_.n_ctx, C});
  for (int i = 0; i < config_.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights l;
    l.ln_1_weight = get(p + "attn_norm.weight", {C});
    l.ln_1_bias = get(p + "attn_norm.bias", {C});
    l.attn_qkv = linear(p + "attn_qkv", C, 3 * C);
    l.attn_proj = linear(p + "attn_output", C, C);
    l.ln_2_weight = get(p + "ffn_norm.weight", {C});
    l.ln_2_bias = get(p + "ffn_norm.bias", {C});
    l.mlp_fc = linear(p + "ffn_up", C, 4 * C);
    l.mlp_proj = linear(p + "ffn_down", 4 * C, C);
    layers.push_back(l);
  }
  ln_f_weight = get("output_norm.weight", {C});
  ln_f_bias = get("output_norm.bias", {C});
  lm_head = Linear{wte, nullptr, static_cast<int>(C), static_cast<int>(V), false};
  if (f.find("output.weight") != nullptr) lm_head.weight = get("output.weight", {V, C});
}

}  // namespace cortex::model
