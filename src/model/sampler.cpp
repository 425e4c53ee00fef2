#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "model/kernels.h"
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

double log_sum_exp(std::span<const float> logits) {
  float max_logit = -INFINITY;
  for (float l : logits) max_logit = std::max(max_logit, l);
  if (!std::isfinite(max_logit)) return max_logit;  // -inf (nothing possible) or +inf/NaN propagated
  double total = 0.0;
  for (float l : logits) total += std::exp(static_cast<double>(l - max_logit));
  return static_cast<double>(max_logit) + std::log(total);
}

void log_softmax(std::span<const float> logits, std::span<float> out) {
  if (out.size() != logits.size()) throw invalid_argument("log_softmax: output size differs from input size");
  const double lse = log_sum_exp(logits);
  for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<float>(logits[i] - lse);
}

TokenLogprobs token_logprobs(std::span<const float> logits, int32_t token, int top_n) {
  if (token < 0 || static_cast<size_t>(token) >= logits.size())
    throw invalid_argument("token_logprobs: token " + std::to_string(token) + " is outside the vocabulary");
  if (top_n < 0) throw invalid_argument("token_logprobs: top_n must be >= 0");
  const double lse = log_sum_exp(logits);
  TokenLogprobs result;
  result.token = token;
  result.logprob = static_cast<float>(logits[static_cast<size_t>(token)] - lse);
  // A min-heap of the best top_n (value, id): "better" = larger value, then smaller id.
  const auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::vector<std::pair<float, int32_t>> heap;
  const size_t n = std::min(static_cast<size_t>(top_n), logits.size());
  heap.reserve(n);
  for (size_t i = 0; i < logits.size() && n > 0; ++i) {
    const std::pair<float, int32_t> c{logits[i], static_cast<int32_t>(i)};
    if (heap.size() < n) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(c, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = c;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), better);  // best first
  bool has_token = false;
  result.top.reserve(heap.size() + 1);
  for (const auto& [value, id] : heap) {
    result.top.emplace_back(id, static_cast<float>(value - lse));
    has_token = has_token || id == token;
  }
  if (!has_token) result.top.emplace_back(token, result.logprob);
  return result;
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (params_.temperature == 0.f || params_.top_k == 1) return argmax(logits);
  if ((params_.top_k == 0 || static_cast<size_t>(params_.top_k) >= logits.size()) && params_.top_p >= 1.f &&
      !logits.empty()) {
    // The whole vocabulary: softmax weights with the vectorised exp, then the draw, in token order (no
    // sort, no pairs: the same draw as below, at a fraction of the cost).
    const float inv_t = 1.f / params_.temperature;
    weights_.resize(logits.size());
    float max_weight = -INFINITY;
    for (size_t i = 0; i < logits.size(); ++i) {
      weights_[i] = logits[i] * inv_t;
      max_weight = std::max(max_weight, weights_[i]);
    }
    const double total = exp_and_sum(weights_.data(), static_cast<int>(weights_.size()), max_weight);
    const double target = next_uniform() * total;
    double cumulative = 0.0;
    for (size_t i = 0; i < weights_.size(); ++i) {
      cumulative += weights_[i];
      if (target < cumulative) return static_cast<int32_t>(i);
    }
    for (size_t i = weights_.size(); i-- > 0;)  // rounding left the target past the sum: the last possible
      if (weights_[i] > 0.f) return static_cast<int32_t>(i);
    return argmax(logits);
  }
  const auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  candidates_.clear();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < logits.size()) {
    // The k best in one pass: a heap of the k kept so far whose top is the worst of them; almost every
    // token falls below it and costs one comparison (a partial sort of all 50 257 pairs cost ~10× more).
    const size_t k = static_cast<size_t>(params_.top_k);
    for (size_t i = 0; i < k; ++i) candidates_.emplace_back(logits[i], static_cast<int32_t>(i));
    std::make_heap(candidates_.begin(), candidates_.end(), by_logit);
    for (size_t i = k; i < logits.size(); ++i) {
      // Later tokens lose ties (by_logit: equal logits go to the lower id), so only a greater logit enters.
      if (!(logits[i] > candidates_.front().first)) continue;
      std::pop_heap(candidates_.begin(), candidates_.end(), by_logit);
      candidates_.back() = {logits[i], static_cast<int32_t>(i)};
      std::push_heap(candidates_.begin(), candidates_.end(), by_logit);
    }
    std::sort_heap(candidates_.begin(), candidates_.end(), by_logit);  // best first
  } else {
    candidates_.reserve(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) candidates_.emplace_back(logits[i], static_cast<int32_t>(i));
    if (params_.top_p < 1.f) std::sort(candidates_.begin(), candidates_.end(), by_logit);
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
