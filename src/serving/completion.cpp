#include "serving/completion.h"

#include <random>

#include "tokenizer/utf8_stream_decoder.h"
#include "util/error.h"

namespace cortex::serving {

namespace {

template <class T>
T get_number(const nlohmann::json& j, const char* field) {
  const auto& v = j.at(field);
  if (!v.is_number()) throw invalid_argument(std::string(field) + ": must be a number");
  if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) throw invalid_argument(std::string(field) + ": must be an integer");
  }
  return v.get<T>();
}

// Length of the longest suffix of `text` that is a proper prefix of one of the stop strings.
size_t held_back(const std::string& text, const std::vector<std::string>& stop) {
  size_t hold = 0;
  for (const auto& s : stop)
    for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  return hold;
}

struct State {
  const tokenizer::BpeTokenizer* tokenizer;
  std::vector<std::string> stop;
  tokenizer::Utf8StreamDecoder decoder;
  std::string text;
  size_t emitted = 0;
  bool stopped_by_string = false;
  std::vector<int32_t> tokens;
  std::function<void(const std::string&)> on_text;
  std::function<void(CompletionOutput)> on_done;

  void emit(size_t upto) {
    if (upto > emitted) {
      if (on_text) on_text(text.substr(emitted, upto - emitted));
      emitted = upto;
    }
  }
};

}  // namespace

CompletionParams parse_completion_params(const nlohmann::json& j, const CompletionParams& defaults,
                                         const CompletionLimits& limits) {
  CompletionParams p = defaults;
  if (!j.is_object()) throw invalid_argument("request: must be a JSON object");
  auto has = [&](const char* f) { return j.contains(f) && !j.at(f).is_null(); };
  if (has("max_tokens")) {
    const int64_t m = get_number<int64_t>(j, "max_tokens");
    if (m < 0 || m > limits.max_tokens)
      throw invalid_argument("max_tokens: must be between 0 and " + std::to_string(limits.max_tokens));
    p.max_tokens = static_cast<int>(m);
  }
  if (has("temperature")) {
    double t = get_number<double>(j, "temperature");
    if (!(t >= 0 && t <= 100)) throw invalid_argument("temperature: must be between 0 and 100");
    p.sampling.temperature = static_cast<float>(t);
  }
  if (has("top_k")) {
    int64_t k = get_number<int64_t>(j, "top_k");
    if (k < 0 || k > 1000000) throw invalid_argument("top_k: must be >= 0 (0 = no limit)");
    p.sampling.top_k = static_cast<int>(k);
  }
  if (has("top_p")) {
    double tp = get_number<double>(j, "top_p");
    if (!(tp > 0 && tp <= 1)) throw invalid_argument("top_p: must be in (0, 1]");
    p.sampling.top_p = static_cast<float>(tp);
  }
  if (has("seed")) {
    const auto& s = j.at("seed");
    if (!s.is_number_integer()) throw invalid_argument("seed: must be an integer");
    p.sampling.seed = s.is_number_unsigned() ? s.get<uint64_t>() : static_cast<uint64_t>(s.get<int64_t>());
    p.seed_given = true;
  }
  if (has("ignore_eos")) {
    if (!j.at("ignore_eos").is_boolean()) throw invalid_argument("ignore_eos: must be true or false");
    p.ignore_eos = j.at("ignore_eos").get<bool>();
  }
  if (has("stop")) {
    const auto& s = j.at("stop");
    p.stop.clear();
    if (s.is_string()) {
      p.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const auto& e : s) {
        if (!e.is_string()) throw invalid_argument("stop: must be a string or a list of strings");
        p.stop.push_back(e.get<std::string>());
      }
    } else {
      throw invalid_argument("stop: must be a string or a list of strings");
    }
    if (p.stop.size() > limits.max_stop_strings)
      throw invalid_argument("stop: at most " + std::to_string(limits.max_stop_strings) + " strings");
    for (const auto& e : p.stop)
      if (e.empty()) throw invalid_argument("stop: strings must not be empty");
  }
  if (!p.seed_given)
    p.sampling.seed = std::random_device{}() * 0x9E3779B97F4A7C15ull ^ std::random_device{}();
  return p;
}

std::string failure_of(const GenerationResult& result) {
  switch (result.reason) {
    case FinishReason::kLength:
    case FinishReason::kStop:
      return "";
    case FinishReason::kTimeout:
      return "request timed out";
    default:
      return "generation " + std::string(finish_reason_name(result.reason)) +
             (result.error.empty() ? "" : ": " + result.error);
  }
}

int failure_status(const GenerationResult& result) {
  return result.reason == FinishReason::kTimeout ? 504 : 500;
}

std::shared_ptr<RequestHandle> start_completion(BatchScheduler& scheduler,
                                                const tokenizer::BpeTokenizer& tokenizer,
                                                std::vector<int32_t> prompt, const CompletionParams& params,
                                                std::function<void(const std::string&)> on_text,
                                                std::function<void(CompletionOutput)> on_done) {
  auto state = std::make_shared<State>();
  state->tokenizer = &tokenizer;
  state->stop = params.stop;
  state->on_text = std::move(on_text);
  state->on_done = std::move(on_done);
  GenerationRequest request;
  request.prompt = std::move(prompt);
  request.max_tokens = params.max_tokens;
  request.sampling = params.sampling;
  request.ignore_eos = params.ignore_eos;
  request.eos_id = tokenizer.eos_id();
  request.on_token = [state](int32_t token) {
    State& s = *state;
    s.tokens.push_back(token);
    const size_t before = s.text.size();
    s.text += s.decoder.push(s.tokenizer->token_bytes(token));
    for (const auto& stop : s.stop) {
      const size_t from = before >= stop.size() ? before - stop.size() + 1 : 0;
      const size_t pos = s.text.find(stop, from);
      if (pos != std::string::npos) {
        s.text.resize(pos);
        s.stopped_by_string = true;
        s.emit(s.text.size());
        return false;
      }
    }
    s.emit(s.text.size() - held_back(s.text, s.stop));
    return true;
  };
  request.on_done = [state](const GenerationResult& result) {
    State& s = *state;
    if (!s.stopped_by_string) {
      s.text += s.decoder.finish();
      if (result.reason != FinishReason::kCancelled && result.reason != FinishReason::kError)
        s.emit(s.text.size());
    }
    CompletionOutput out;
    out.text = std::move(s.text);
    out.tokens = std::move(s.tokens);
    out.result = result;
    if (s.on_done) s.on_done(std::move(out));
  };
  return scheduler.submit(std::move(request));
}

void CompletionGroup::add(std::shared_ptr<RequestHandle> handle) {
  std::lock_guard<std::mutex> lock(mutex_);
  handles_.push_back(std::move(handle));
}

void CompletionGroup::cancel_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& h : handles_) h->cancel();
}

std::optional<std::vector<CompletionOutput>> CompletionGroup::complete(size_t i, CompletionOutput output) {
  std::lock_guard<std::mutex> lock(mutex_);
  outputs_[i] = std::move(output);
  if (--remaining_ > 0) return std::nullopt;
  return std::move(outputs_);
}

}  // namespace cortex::serving
