#include "model/gpt2_config.h"

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file_util.h"

namespace cortex::model {

int64_t Gpt2Config::parameter_count() const {
  int64_t c = n_embd;
  int64_t per_layer =
      2 * c + (c * 3 * c + 3 * c) + (c * c + c) + 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c);
  return int64_t{vocab_size} * c + int64_t{n_ctx} * c + n_layer * per_layer + 2 * c;
}

void Gpt2Config::validate(const std::string& source) const {
  auto bad = [&](const std::string& what) { throw corrupt_data(source + ": " + what); };
  if (vocab_size <= 0) bad("vocab_size must be positive");
  if (n_ctx <= 0) bad("n_positions must be positive");
  if (n_embd <= 0 || n_layer <= 0 || n_head <= 0) bad("n_embd, n_layer and n_head must be positive");
  if (n_embd % n_head != 0)
    bad("n_embd (" + std::to_string(n_embd) + ") is not a multiple of n_head (" + std::to_string(n_head) +
        ")");
  if (!(layer_norm_epsilon > 0)) bad("layer_norm_epsilon must be positive");
}

Gpt2Config Gpt2Config::from_hf_json(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw corrupt_data(path + ": invalid JSON: " + e.what());
  }
  if (!j.is_object()) throw corrupt_data(path + ": expected a JSON object");
  if (j.contains("model_type") && j["model_type"] != "gpt2")
    throw unsupported(path + ": model_type is " + j["model_type"].dump() + "; only gpt2 is supported");
  Gpt2Config c;
  auto get_int = [&](const char* key, const char* alt, int* out) {
    const nlohmann::json* v = nullptr;
    if (j.contains(key))
      v = &j[key];
    else if (alt != nullptr && j.contains(alt))
      v = &j[alt];
    if (v == nullptr) throw corrupt_data(path + ": missing field \"" + key + "\"");
    if (!v->is_number_integer()) throw corrupt_data(path + ": field \"" + key + "\" must be an integer");
    *out = v->get<int>();
  };
  get_int("vocab_size", nullptr, &c.vocab_size);
  get_int("n_positions", "n_ctx", &c.n_ctx);
  get_int("n_embd", nullptr, &c.n_embd);
  get_int("n_layer", nullptr, &c.n_layer);
  get_int("n_head", nullptr, &c.n_head);
  if (j.contains("layer_norm_epsilon")) {
    if (!j["layer_norm_epsilon"].is_number())
      throw corrupt_data(path + ": layer_norm_epsilon must be a number");
    c.layer_norm_epsilon = j["layer_norm_epsilon"].get<float>();
  }
  c.validate(path);
  return c;
}

nlohmann::json Gpt2Config::to_hf_json() const {
  return {{"architectures", {"GPT2LMHeadModel"}},
          {"model_type", "gpt2"},
          {"vocab_size", vocab_size},
          {"n_positions", n_ctx},
          {"n_ctx", n_ctx},
          {"n_embd", n_embd},
          {"n_layer", n_layer},
          {"n_head", n_head},
          {"layer_norm_epsilon", layer_norm_epsilon},
          {"activation_function", "gelu_new"},
          {"bos_token_id", 50256},
          {"eos_token_id", 50256}};
}

Gpt2Config Gpt2Config::from_shape_name(const std::string& name) {
  Gpt2Config c;
  if (name == "tiny") {
    c.n_ctx = 256, c.n_embd = 64, c.n_layer = 2, c.n_head = 4;
  } else if (name == "124M") {
    c.n_embd = 768, c.n_layer = 12, c.n_head = 12;
  } else if (name == "355M") {
    c.n_embd = 1024, c.n_layer = 24, c.n_head = 16;
  } else if (name == "774M") {
    c.n_embd = 1280, c.n_layer = 36, c.n_head = 20;
  } else if (name == "1.5B") {
    c.n_embd = 1600, c.n_layer = 48, c.n_head = 25;
  } else {
    throw invalid_argument("unknown shape '" + name + "' (allowed: tiny, 124M, 355M, 774M, 1.5B)");
  }
  return c;
}

}  // namespace cortex::model
