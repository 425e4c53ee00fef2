// Picks the next token from logits: greedy (temperature 0), or temperature scaling with top-k and top-p
// (nucleus) filtering, from a seeded generator so that the same seed gives the same tokens everywhere.
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
};

// The index of the largest value (the first one on ties).
int32_t argmax(std::span<const float> values);

}  // namespace cortex::model
