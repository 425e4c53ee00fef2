#include "serving/completion.h"

#include <cstdio>
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

// Characters (code points) in valid UTF-8: the bytes that do not continue a character.
int64_t count_chars(std::string_view utf8) {
  int64_t n = 0;
  for (unsigned char c : utf8) n += (c & 0xC0) != 0x80;
  return n;
}

TokenLogprob make_entry(const tokenizer::BpeTokenizer& tokenizer, const model::TokenLogprobs& lp,
                        int64_t text_offset) {
  TokenLogprob e;
  e.token = token_text(tokenizer, lp.token);
  e.logprob = lp.logprob;
  e.top.emplace();
  e.top->reserve(lp.top.size());
  for (const auto& [id, logprob] : lp.top) e.top->emplace_back(token_text(tokenizer, id), logprob);
  e.text_offset = text_offset;
  return e;
}

struct State {
  const tokenizer::BpeTokenizer* tokenizer;
  std::vector<std::string> stop;
  tokenizer::Utf8StreamDecoder decoder;
  std::string text;
  size_t emitted = 0;
  bool stopped_by_string = false;
  std::vector<int32_t> tokens;
  CompletionCallbacks callbacks;
  // Logprobs, when asked for.
  std::vector<int32_t> prompt;               // with echo: for the prompt's entries
  int64_t offset_base = 0;                   // characters before the generated text in the choice's text
  int64_t text_chars = 0;                    // characters in `text`
  std::optional<model::TokenLogprobs> next;  // the logprobs of the token on_token gets next
  std::vector<TokenLogprob> logprobs;        // every generated token's
  std::vector<TokenLogprob> pending;         // those not yet passed to on_text
  std::vector<TokenLogprob> prompt_logprobs;

  // Passes on the text up to `upto` not yet passed, with the pending entries.
  void emit(size_t upto) {
    std::string piece;
    if (upto > emitted) {
      piece = text.substr(emitted, upto - emitted);
      emitted = upto;
    }
    if (piece.empty() && pending.empty()) return;
    if (callbacks.on_text) callbacks.on_text(piece, std::move(pending));
    pending.clear();
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

std::string token_text(const tokenizer::BpeTokenizer& tokenizer, int32_t id) {
  const std::string& bytes = tokenizer.token_bytes(id);
  if (tokenizer::is_valid_utf8(bytes)) return bytes;
  std::string out = "bytes:";
  for (unsigned char c : bytes) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02x", c);
    out += hex;
  }
  return out;
}

std::string decode_text(const tokenizer::BpeTokenizer& tokenizer, std::span<const int32_t> ids) {
  tokenizer::Utf8StreamDecoder decoder;
  std::string text = decoder.push(tokenizer.decode(ids));
  return text + decoder.finish();
}

nlohmann::json logprobs_json(std::span<const TokenLogprob> entries) {
  using nlohmann::json;
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(),
       text_offset = json::array();
  for (const auto& e : entries) {
    tokens.push_back(e.token);
    token_logprobs.push_back(e.logprob ? json(*e.logprob) : json(nullptr));
    if (e.top) {
      json top = json::object();
      for (const auto& [token, logprob] : *e.top) top[token] = logprob;
      top_logprobs.push_back(std::move(top));
    } else {
      top_logprobs.push_back(nullptr);
    }
    text_offset.push_back(e.text_offset);
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top_logprobs)},
          {"text_offset", std::move(text_offset)}};
}

std::shared_ptr<RequestHandle> start_completion(BatchScheduler& scheduler,
                                                const tokenizer::BpeTokenizer& tokenizer,
                                                std::vector<int32_t> prompt, const CompletionParams& params,
                                                CompletionCallbacks callbacks) {
  auto state = std::make_shared<State>();
  state->tokenizer = &tokenizer;
  state->stop = params.stop;
  state->callbacks = std::move(callbacks);
  GenerationRequest request;
  if (params.logprobs >= 0) {
    request.logprobs = params.logprobs;
    request.on_logprobs = [state](const model::TokenLogprobs& lp) { state->next = lp; };
    if (params.echo) {
      state->prompt = prompt;
      state->offset_base = count_chars(decode_text(tokenizer, prompt));
      request.prompt_logprobs = true;
      request.on_prompt_logprobs = [state](std::vector<model::TokenLogprobs> lps) {
        State& s = *state;
        tokenizer::Utf8StreamDecoder decoder;
        int64_t chars = 0;
        for (size_t k = 0; k < s.prompt.size(); ++k) {
          TokenLogprob e;
          if (k > 0 && k - 1 < lps.size()) {
            e = make_entry(*s.tokenizer, lps[k - 1], chars);
          } else {
            e.token = token_text(*s.tokenizer, s.prompt[k]);
            e.text_offset = chars;
          }
          s.prompt_logprobs.push_back(std::move(e));
          chars += count_chars(decoder.push(s.tokenizer->token_bytes(s.prompt[k])));
        }
        if (s.callbacks.on_prompt) s.callbacks.on_prompt(s.prompt_logprobs);
      };
    }
  }
  request.prompt = std::move(prompt);
  request.max_tokens = params.max_tokens;
  request.sampling = params.sampling;
  request.ignore_eos = params.ignore_eos;
  request.eos_id = tokenizer.eos_id();
  request.on_token = [state](int32_t token) {
    State& s = *state;
    s.tokens.push_back(token);
    const size_t before = s.text.size();
    if (s.next) {
      s.logprobs.push_back(make_entry(*s.tokenizer, *s.next, s.offset_base + s.text_chars));
      s.pending.push_back(s.logprobs.back());
      s.next.reset();
    }
    const std::string piece = s.decoder.push(s.tokenizer->token_bytes(token));
    s.text += piece;
    s.text_chars += count_chars(piece);
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
    out.prompt_logprobs = std::move(s.prompt_logprobs);
    out.logprobs = std::move(s.logprobs);
    if (s.callbacks.on_done) s.callbacks.on_done(std::move(out));
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
