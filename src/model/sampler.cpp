#include "model/sampler.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace cortex::model {

void SamplingParams::validate() const {
  if (!(temperature >= 0.f) || !std::isfinite(temperature))
    throw invalid_argument("temperature must be a finite number >= 0");
  if (top_k < 0) throw invalid_argument("top_k must be >= 0");
  if (!(top_p > 0.f && top_p <= 1.f)) throw invalid_argument("top_p must be in (0, 1]");
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

double Sampler::next_uniform() {
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

int32_t argmax(std::span<const float> values) {
  return static_cast<int32_t>(std::max_element(values.begin(), values.end()) - values.begin());
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (params_.temperature == 0.f || params_.top_k == 1) return argmax(logits);
  const auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  candidates_.clear();
  candidates_.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) candidates_.emplace_back(logits[i], static_cast<int32_t>(i));
  size_t k = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < k) {
    k = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(k),
                      candidates_.end(), by_logit);
    candidates_.resize(k);
  } else if (params_.top_p < 1.f) {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  // Softmax over the candidates at the given temperature (max first when sorted; recomputed otherwise).
  float max_logit = -INFINITY;
  for (const auto& c : candidates_) max_logit = std::max(max_logit, c.first);
  double total = 0.0;
  for (auto& c : candidates_) {
    c.first = std::exp((c.first - max_logit) / params_.temperature);
    total += c.first;
  }
  if (params_.top_p < 1.f) {  // candidates are sorted: keep the smallest prefix reaching top_p
    double cumulative = 0.0;
    size_t keep = 0;
    while (keep < candidates_.size()) {
      cumulative += candidates_[keep++].first / total;
      if (cumulative >= params_.top_p) break;
    }
    candidates_.resize(keep);
    total = 0.0;
    for (const auto& c : candidates_) total += c.first;
  }
  const double target = next_uniform() * total;
  double cumulative = 0.0;
  for (const auto& c : candidates_) {
    cumulative += c.first;
    if (target < cumulative) return c.second;
  }
  return candidates_.back().second;
}

}  // namespace cortex::model
