#include "model/generator.h"

#include "util/clock.h"
#include "util/error.h"

namespace cortex::model {

GenerateResult generate(Gpt2Model& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                        const std::function<bool(int32_t)>& on_token) {
  if (prompt.empty()) throw invalid_argument("prompt is empty");
  if (options.max_tokens < 0) throw invalid_argument("max_tokens must be >= 0");
  const int n_ctx = model.config().n_ctx;
  if (static_cast<int64_t>(prompt.size()) > n_ctx)
    throw invalid_argument("prompt of " + std::to_string(prompt.size()) +
                           " tokens exceeds the context length " + std::to_string(n_ctx));
  options.sampling.validate();
  GenerateResult result;
  result.finish_reason = "length";
  if (options.max_tokens == 0) return result;

  Sampler sampler(options.sampling);
  auto seq = model.new_sequence();
  std::vector<float> logits;
  auto start = SteadyClock::now();
  BatchEntry entry{seq.get(), prompt};
  model.forward(std::span(&entry, 1), &logits);
  result.prefill_seconds = seconds_since(start);
  auto decode_start = SteadyClock::now();
  int32_t token = 0;
  for (;;) {
    token = sampler.sample(logits);
    if (token == options.eos_id && !options.ignore_eos) {
      result.finish_reason = "stop";
      break;
    }
    result.tokens.push_back(token);
    if (on_token && !on_token(token)) {
      result.finish_reason = "stop";
      break;
    }
    if (static_cast<int>(result.tokens.size()) >= options.max_tokens || seq->length() >= n_ctx) break;
    logits.clear();
    entry.tokens = std::span(&token, 1);
    model.forward(std::span(&entry, 1), &logits);
  }
  result.decode_seconds = seconds_since(decode_start);
  return result;
}

}  // namespace cortex::model
