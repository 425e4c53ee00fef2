// One prompt's generation as clients see it: parameters parsed from a request (with defaults and limits),
// text decoded as tokens arrive (always whole UTF-8 characters), stop strings held back until they can no
// longer match and cut from the text when they do, and, when asked for, each token's log-probabilities
// in the layout of OpenAI's legacy completions ("logprobs": tokens, token_logprobs, top_logprobs,
// text_offset).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <utility>
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
  // Log-probabilities (not read by parse_completion_params): -1 none; n >= 0 each generated token's with
  // the n most likely tokens at its position. With echo, the prompt's tokens get entries too and text
  // offsets count the prompt's text (the echoed text comes first in the choice's text).
  int logprobs = -1;
  bool echo = false;
};

struct CompletionLimits {
  int max_tokens = 1024;
  size_t max_stop_strings = 4;
};

// Reads max_tokens, temperature, top_k, top_p, seed, stop, ignore_eos from `j` over `defaults`. Throws
// Error(kInvalidArgument) naming the field and what is allowed.
CompletionParams parse_completion_params(const nlohmann::json& j, const CompletionParams& defaults,
                                         const CompletionLimits& limits);

// One token's entry in a choice's "logprobs". The values are the raw model's (model::token_logprobs:
// log-softmax of the logits, before temperature, top-k and top-p).
struct TokenLogprob {
  std::string token;             // its text (see token_text)
  std::optional<float> logprob;  // none for the first prompt token: nothing predicts it
  // The most likely tokens at its position, most likely first, the token itself included; none for the
  // first prompt token.
  std::optional<std::vector<std::pair<std::string, float>>> top;
  int64_t text_offset = 0;  // characters (code points) of the choice's text before this token's
};
// A stop string cuts the text, not the tokens: the last entry is then the token that completed it.

// {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob, ...} or null, ...],
// "text_offset": [...]}. JSON objects are unordered: top_logprobs' keys come sorted by text.
nlohmann::json logprobs_json(std::span<const TokenLogprob> entries);

// How a token appears in "logprobs": its text when its bytes are valid UTF-8 on their own, otherwise
// "bytes:" and its bytes as \xNN escapes (a piece of a character that spans tokens), as OpenAI does.
std::string token_text(const tokenizer::BpeTokenizer& tokenizer, int32_t id);

// The text of `ids` as valid UTF-8 (a character cut by the ends or malformed bytes become U+FFFD), the
// same text a streamed decode gives.
std::string decode_text(const tokenizer::BpeTokenizer& tokenizer, std::span<const int32_t> ids);

struct CompletionOutput {
  std::string text;             // generated text, stop string excluded
  std::vector<int32_t> tokens;  // generated ids
  GenerationResult result;
  std::vector<TokenLogprob> prompt_logprobs;  // with logprobs and echo: one per prompt token
  std::vector<TokenLogprob> logprobs;         // with logprobs: one per generated token
};

// What start_completion reports, on the scheduler thread.
struct CompletionCallbacks {
  // New text (whole characters) and, with logprobs, the entries of the tokens that arrived since the last
  // call: then it is called for each token, with empty text when a token completes no character (or
  // the text is held back for a stop string). Never called with nothing.
  std::function<void(const std::string& text, std::vector<TokenLogprob> logprobs)> on_text;
  // With logprobs and echo: the prompt's entries, once, before any on_text.
  std::function<void(std::vector<TokenLogprob> prompt_logprobs)> on_prompt;
  // Once, at the end, whatever the reason.
  std::function<void(CompletionOutput)> on_done;
};

// Why a generation did not end normally ("request timed out", "generation cancelled", "generation error:
// ..."), or "" when it ended by length or stop. failure_status: 504 for a timeout, else 500.
std::string failure_of(const GenerationResult& result);
int failure_status(const GenerationResult& result);

// Submits `prompt` to the scheduler; the callbacks run on the scheduler thread and must not block.
// Throws as submit() does.
std::shared_ptr<RequestHandle> start_completion(BatchScheduler& scheduler,
                                                const tokenizer::BpeTokenizer& tokenizer,
                                                std::vector<int32_t> prompt, const CompletionParams& params,
                                                CompletionCallbacks callbacks);

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
