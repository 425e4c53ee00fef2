// GPT-2 hyper-parameters: read from a Hugging Face config.json or a GGUF header, or one of the named
// shapes (tiny, 124M, 355M, 774M, 1.5B) used to generate random models.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace cortex::model {

struct Gpt2Config {
  int vocab_size = 50257;
  int n_ctx = 1024;  // maximum positions (n_positions)
  int n_embd = 768;
  int n_layer = 12;
  int n_head = 12;
  float layer_norm_epsilon = 1e-5f;

  int head_dim() const { return n_embd / n_head; }
  // Number of weights, the tied LM head counted once.
  int64_t parameter_count() const;

  // Throws Error(kCorruptData) naming `source` when a value is out of range.
  void validate(const std::string& source) const;

  // Parses config.json; throws Error naming `path` and the field at fault.
  static Gpt2Config from_hf_json(const std::string& path);
  nlohmann::json to_hf_json() const;
  // "tiny", "124M", "355M", "774M", "1.5B"; throws invalid_argument listing the names otherwise.
  static Gpt2Config from_shape_name(const std::string& name);
};

}  // namespace cortex::model
