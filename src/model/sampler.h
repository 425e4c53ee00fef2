// Picks the next token from logits: greedy (temperature 0), or temperature scaling with top-k and top-p
// (nucleus) filtering, from a seeded generator so that the same seed gives the same tokens everywhere.
// Also the model's log-probabilities at a position (what OpenAI's "logprobs" report), computed only
// when a caller asks for them.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace cortex::model {

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 40;            // 0 = no limit
  float top_p = 1.0f;        // 1 = no limit
  uint64_t seed = 0;

  // Throws invalid_argument naming the parameter when a value is out of range.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Returns the chosen token id. logits: [vocab].
  int32_t sample(std::span<const float> logits);

 private:
  double next_uniform();  // [0, 1), 53 random bits

  SamplingParams params_;
  std::mt19937_64 rng_;  // the engine's sequence is fixed by the standard; distributions are ours
  std::vector<std::pair<float, int32_t>> candidates_;
  std::vector<float> weights_;  // the whole vocabulary's exp(logit / T), when neither top_k nor top_p cut it
};

// The index of the largest value (the first one on ties).
int32_t argmax(std::span<const float> values);

// log(sum(exp(logits))), computed stably (the maximum taken out, the sum in double). -inf when every
// logit is -inf.
double log_sum_exp(std::span<const float> logits);

// out[i] = log-softmax(logits)[i] = logits[i] - log_sum_exp(logits). out.size() must be logits.size().
void log_softmax(std::span<const float> logits, std::span<float> out);

// The model's log-probabilities at one position: the log-softmax of the raw logits, i.e. of the model's
// distribution over the whole vocabulary before temperature, top-k and top-p (as OpenAI reports them;
// the sampler's filtered distribution would give -inf to most tokens).
struct TokenLogprobs {
  int32_t token = -1;   // the token at this position (sampled, or the prompt's)
  float logprob = 0.f;  // its log-probability (<= 0)
  // The top_n most likely tokens, most likely first (lower id first on ties), then `token` itself when
  // it is not among them (OpenAI returns the chosen token's entry too).
  std::vector<std::pair<int32_t, float>> top;
};

// One pass over `logits` for the log-sum-exp and the top_n largest (a small heap): O(vocab + vocab log
// top_n), no allocation beyond the result. top_n >= 0; `token` must index `logits`.
TokenLogprobs token_logprobs(std::span<const float> logits, int32_t token, int top_n);

}  // namespace cortex::model
