// GPT-2's weights as named views into a mapped file (Hugging Face safetensors folder or GGUF file),
// with shapes checked against the config before any is used. F32 tensors are used in place; F16, BF16
// and Q8_0 tensors are widened to F32 on load into memory owned here.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/gguf.h"
#include "model/gpt2_config.h"
#include "model/safetensors.h"

namespace cortex::model {

// A dense layer y = x·W + b. Hugging Face stores W as [in, out] (Conv1D); GGUF and the tied LM head
// store it as [out, in]. Kernels accept either, so mapped weights are never copied to change layout.
struct Linear {
  const float* weight = nullptr;  // [in, out] when in_major, else [out, in]
  const float* bias = nullptr;    // [out], or nullptr
  int in = 0;
  int out = 0;
  bool in_major = true;
};

struct LayerWeights {
  const float* ln_1_weight;  // [C]
  const float* ln_1_bias;    // [C]
  Linear attn_qkv;           // C -> 3C, output columns [q | k | v]
  Linear attn_proj;          // C -> C
  const float* ln_2_weight;  // [C]
  const float* ln_2_bias;    // [C]
  Linear mlp_fc;             // C -> 4C
  Linear mlp_proj;           // 4C -> C
};

class Gpt2Weights {
 public:
  // Loads a Hugging Face folder (config.json + model.safetensors) or a GGUF file of architecture gpt2.
  // Throws Error with one line naming the file and the problem.
  static std::unique_ptr<Gpt2Weights> load(const std::string& path);

  const Gpt2Config& config() const { return config_; }
  const std::string& format() const { return format_; }  // "safetensors" or "gguf"
  // The GGUF file, when loaded from one (it also carries the tokenizer); otherwise nullptr.
  const GgufFile* gguf() const { return gguf_.get(); }

  const float* wte = nullptr;  // [vocab, C] token embeddings
  const float* wpe = nullptr;  // [n_ctx, C] position embeddings
  std::vector<LayerWeights> layers;
  const float* ln_f_weight = nullptr;  // [C]
  const float* ln_f_bias = nullptr;    // [C]
  Linear lm_head;                      // C -> vocab, [vocab, C]; tied to wte unless the file has its own

 private:
  void load_safetensors_dir(const std::string& dir);
  void load_gguf(const std::string& path);
  // Returns F32 data for `t`, converting into owned memory when it is stored in another type.
  const float* as_f32(const TensorView& t);

  Gpt2Config config_;
  std::string format_;
  std::unique_ptr<SafetensorsFile> safetensors_;
  std::unique_ptr<GgufFile> gguf_;
  std::vector<std::unique_ptr<float[]>> converted_;
};

}  // namespace cortex::model
