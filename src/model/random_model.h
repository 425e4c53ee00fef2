// Writes a GPT-2 with deterministic random weights: N(0, 0.02) for matrices and embeddings, LayerNorm
// weights 1, biases 0, each tensor drawn from its own stream seeded by (seed, tensor name), so the same
// seed gives the same model in either format. The real GPT-2 vocabulary is written beside it, so every
// code path (tokenizing, loading, generating, serving) is the one real weights take.
#pragma once

#include <string>

#include "model/gpt2_config.h"
#include "model/tensor.h"

namespace cortex::model {

enum class WeightFormat { kSafetensors, kGguf };

struct RandomModelOptions {
  Gpt2Config config;
  uint64_t seed = 0;
  WeightFormat format = WeightFormat::kSafetensors;
  // GGUF only: the type of the matrices (embeddings and dense layers: F32, F16 or Q8_0, as llama.cpp's
  // converter writes them); vectors stay F32.
  DType gguf_dtype = DType::kF32;
  std::string vocab_dir;  // holds encoder.json + vocab.bpe, or vocab.json + merges.txt
  std::string out;        // safetensors: a folder; gguf: the .gguf file to write
};

// Throws Error naming the vocabulary folder or output path on failure. config.vocab_size is taken from
// the vocabulary.
void write_random_model(const RandomModelOptions& options);

}  // namespace cortex::model
