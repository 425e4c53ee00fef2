// One prompt's generation as clients see it: parameters parsed from a request (with defaults and limits),
// text decoded as tokens arrive (always whole UTF-8 characters), stop strings held back until they can no
// longer match and cut from the text when they do.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "serving/batch_scheduler.h"
#include "tokenizer/bpe_tokenizer.h"

namespace cortex::serving {

struct CompletionParams {
  int max_tokens = 64;
  model::SamplingParams sampling{1.0f, 40, 1.0f, 0};
  bool seed_given = false;  // without a seed, each request draws its own
  bool ignore_eos = false;
  std::vector<std::string> stop;
};

struct CompletionLimits {
  int max_tokens = 1024;
  size_t max_stop_strings = 4;
};

// Reads max_tokens, temperature, top_k, top_p, seed, stop, ignore_eos from `j` over `defaults`. Throws
// Error(kInvalidArgument) naming the field and what is allowed.
CompletionParams parse_completion_params(const nlohmann::json& j, const CompletionParams& defaults,
                                         const CompletionLimits& limits);

struct CompletionOutput {
  std::string text;             // generated text, stop string excluded
  std::vector<int32_t> tokens;  // generated ids
  GenerationResult result;
};

// Why a generation did not end normally ("request timed out", "generation cancelled", "generation error:
// ..."), or "" when it ended by length or stop. failure_status: 504 for a timeout, else 500.
std::string failure_of(const GenerationResult& result);
int failure_status(const GenerationResult& result);

// Submits `prompt` to the scheduler. on_text receives each new piece of text (may be empty: never
// called with it); on_done is called once. Both run on the scheduler thread. Throws as submit() does.
std::shared_ptr<RequestHandle> start_completion(BatchScheduler& scheduler,
                                                const tokenizer::BpeTokenizer& tokenizer,
                                                std::vector<int32_t> prompt, const CompletionParams& params,
                                                std::function<void(const std::string&)> on_text,
                                                std::function<void(CompletionOutput)> on_done);

// The completions of one HTTP request (samples, prompts × n): collects their outputs in order and cancels
// them together when the client leaves or a later one cannot be submitted. Thread-safe.
class CompletionGroup {
 public:
  explicit CompletionGroup(size_t size) : outputs_(size), remaining_(size) {}
  void add(std::shared_ptr<RequestHandle> handle);
  void cancel_all();
  // Stores output i; the call that stores the last one gets them all, the others nullopt.
  std::optional<std::vector<CompletionOutput>> complete(size_t i, CompletionOutput output);

 private:
  std::mutex mutex_;
  std::vector<CompletionOutput> outputs_;
  size_t remaining_;
  std::vector<std::shared_ptr<RequestHandle>> handles_;
};

}  // namespace cortex::serving
