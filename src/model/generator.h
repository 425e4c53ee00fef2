// Single-sequence generation: prefill the prompt, then sample one token per step until max_tokens,
// the end-of-text token, the context length, or the callback asks to stop. (Serving batches many
// sequences with its own scheduler; this loop is for `cortex generate`, benchmarks and tests.)
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/gpt2_model.h"
#include "model/sampler.h"

namespace cortex::model {

struct GenerateOptions {
  int max_tokens = 64;
  SamplingParams sampling;
  bool ignore_eos = false;
  int32_t eos_id = -1;  // -1: none
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids, the prompt excluded
  std::string finish_reason;    // "length" (max_tokens or context), "stop" (end of text or callback)
  double prefill_seconds = 0;
  double decode_seconds = 0;  // from the first generated token to the last
};

// on_token is called for each generated token (the end-of-text token excluded); returning false stops.
// Throws invalid_argument for an empty prompt or one that does not fit in the context.
GenerateResult generate(Gpt2Model& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                        const std::function<bool(int32_t)>& on_token = {});

}  // namespace cortex::model
