#include "model/model_loader.h"

#include <filesystem>

#include "model/gguf.h"
#include "util/error.h"

namespace cortex::model {

namespace {
std::unique_ptr<tokenizer::BpeTokenizer> tokenizer_from_gguf(const GgufFile& f) {
  auto kind = f.get_string("tokenizer.ggml.model");
  const auto* tokens = f.get_string_array("tokenizer.ggml.tokens");
  const auto* merges = f.get_string_array("tokenizer.ggml.merges");
  if (!kind || tokens == nullptr || merges == nullptr)
    throw corrupt_data(f.path() + ": missing vocabulary (tokenizer.ggml.tokens / tokenizer.ggml.merges)");
  if (*kind != "gpt2")
    throw unsupported(f.path() + ": tokenizer '" + *kind + "' is not supported (gpt2 only)");
  return tokenizer::BpeTokenizer::from_tokens(*tokens, *merges);
}
}  // namespace

std::unique_ptr<tokenizer::BpeTokenizer> load_tokenizer(const std::string& path) {
  if (std::filesystem::is_directory(path)) return tokenizer::BpeTokenizer::load(path);
  if (!std::filesystem::exists(path)) throw not_found(path + ": no such model file or folder");
  return tokenizer_from_gguf(*GgufFile::open(path));
}

LoadedModel load_model(const std::string& path, const ModelOptions& options) {
  LoadedModel m;
  auto weights = Gpt2Weights::load(path, options.dtype, options.converted_cache_dir);
  m.tokenizer = weights->gguf() != nullptr ? tokenizer_from_gguf(*weights->gguf())
                                           : tokenizer::BpeTokenizer::load(path);
  if (m.tokenizer->vocab_size() != static_cast<size_t>(weights->config().vocab_size))
    throw corrupt_data(path + ": the vocabulary has " + std::to_string(m.tokenizer->vocab_size()) +
                       " tokens but the model's embedding has " +
                       std::to_string(weights->config().vocab_size));
  m.model = Gpt2Model::create(std::move(weights), options);
  return m;
}

}  // namespace cortex::model
