// The request handler contract (Cortex's seed): pre_inference turns a client's sample into the model's
// input, post_inference turns the model's output into what the client gets. The built-in GPT-2 handler
// is C++; Python handlers (a seed-style encoder.py) plug in behind the same interface.
//
// Threading: pre_inference and post_inference run on the replica's request threads, never on the
// scheduler's (so a slow handler never holds up the batch's decoding), and may be called from several
// threads at once; an implementation that cannot run concurrently (an interpreter) serialises itself.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>

#include "tokenizer/bpe_tokenizer.h"
#include "util/error.h"

namespace cortex::serving {

// Thrown by a handler whose call did not return in time: the request gets 504.
class HandlerTimeout : public Error {
 public:
  explicit HandlerTimeout(const std::string& message) : Error(ErrorCode::kInternal, message) {}
};

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // sample: one element of the request's "samples". Returns {"context": [ids]} (or [[ids]]), optionally
  // with generation parameters beside it. Throws Error(kInvalidArgument) for a sample it cannot use.
  virtual nlohmann::json pre_inference(const nlohmann::json& sample, const nlohmann::json& metadata) = 0;
  // prediction: {"response": {"sample": [ids]}}, the context followed by the generated tokens. Returns
  // any JSON value.
  virtual nlohmann::json post_inference(const nlohmann::json& prediction, const nlohmann::json& metadata) = 0;
  // The built-in handler (outliving this one), for a handler that implements only one of the two halves.
  virtual void set_builtin(RequestHandler*) {}
};

// Built-in: "text" -> GPT-2 token ids -> text (the prompt and its continuation).
class Gpt2RequestHandler : public RequestHandler {
 public:
  explicit Gpt2RequestHandler(const tokenizer::BpeTokenizer* tokenizer) : tokenizer_(tokenizer) {}
  nlohmann::json pre_inference(const nlohmann::json& sample, const nlohmann::json& metadata) override;
  nlohmann::json post_inference(const nlohmann::json& prediction, const nlohmann::json& metadata) override;

 private:
  const tokenizer::BpeTokenizer* tokenizer_;
};

}  // namespace cortex::serving
