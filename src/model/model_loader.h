// Loads a model together with its tokenizer: a Hugging Face folder (vocabulary files beside the
// weights) or a GGUF file (vocabulary in its metadata).
#pragma once

#include <memory>
#include <string>

#include "model/gpt2_model.h"
#include "tokenizer/bpe_tokenizer.h"

namespace cortex::model {

struct LoadedModel {
  std::unique_ptr<tokenizer::BpeTokenizer> tokenizer;
  std::unique_ptr<Gpt2Model> model;
};

// The tokenizer of the model at `path` (a folder or a .gguf file); throws Error naming what is missing.
std::unique_ptr<tokenizer::BpeTokenizer> load_tokenizer(const std::string& path);
// Both, checking that the vocabulary and the embedding agree in size.
LoadedModel load_model(const std::string& path, const ModelOptions& options);

}  // namespace cortex::model
