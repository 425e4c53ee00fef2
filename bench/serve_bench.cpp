#include "bench/serve_bench.h"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "util/clock.h"
#include "util/error.h"

namespace cortex::bench {

namespace {

struct Sample {
  bool ok = false;
  long tokens = 0;
  double ttft = 0;
  double latency = 0;
};

// Parses server-sent events as they arrive; counts events that carry generated text.
struct StreamState {
  SteadyClock::time_point start;
  std::string pending;
  bool llama = false;
  Sample* sample = nullptr;
  bool error = false;
  long exact_tokens = -1;  // from the usage event, when the server sends one

  void feed(const char* data, size_t n) {
    pending.append(data, n);
    size_t end;
    while ((end = pending.find("\n\n")) != std::string::npos) {
      std::string event = pending.substr(0, end);
      pending.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      std::string payload = event.substr(6);
      if (payload == "[DONE]") continue;
      auto j = nlohmann::json::parse(payload, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) {
        error = true;
        continue;
      }
      if (j.contains("usage") && j["usage"].is_object()) {  // exact count, sent last
        exact_tokens = j["usage"].value("completion_tokens", 0L);
        continue;
      }
      std::string text;
      if (llama) {
        text = j.value("content", "");
      } else if (j.contains("choices") && !j["choices"].empty()) {
        text = j["choices"][0].value("text", "");
      }
      if (!text.empty() && sample->tokens++ == 0) sample->ttft = seconds_since(start);
    }
  }
};

size_t on_data(char* data, size_t size, size_t n, void* user) {
  static_cast<StreamState*>(user)->feed(data, size * n);
  return size * n;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

ServeBenchReport run_serve_bench(const ServeBenchOptions& o) {
  if (o.url.rfind("http://", 0) != 0) throw invalid_argument("url: must start with http://");
  if (o.api != "openai" && o.api != "llama" && o.api != "predict")
    throw invalid_argument("api: must be openai, llama or predict");
  if (o.clients < 1 || o.requests_per_client < 1) throw invalid_argument("clients and requests must be >= 1");
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const bool llama = o.api == "llama", predict = o.api == "predict";
  const bool has_path = o.url.find('/', 7) != std::string::npos && o.url.back() != '/';
  const std::string url =
      predict ? (has_path ? o.url : o.url + "/predict") : o.url + (llama ? "/completion" : "/v1/completions");
  std::mutex mutex;
  std::vector<Sample> samples;
  auto start = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&, c] {
      CURL* curl = curl_easy_init();
      curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
      for (int r = 0; r < o.requests_per_client; ++r) {
        nlohmann::json body;
        if (predict) {
          body = {{"samples",
                   {{{"text", o.prompt},
                     {"max_tokens", o.max_tokens},
                     {"ignore_eos", true},
                     {"seed", c * 1000 + r}}}}};
        } else if (llama) {
          body = {{"prompt", o.prompt},
                  {"n_predict", o.max_tokens},
                  {"stream", true},
                  {"ignore_eos", true},
                  {"seed", c * 1000 + r}};
        } else {
          body = {{"model", o.model},
                  {"prompt", o.prompt},
                  {"max_tokens", o.max_tokens},
                  {"stream", true},
                  {"ignore_eos", true},
                  {"seed", c * 1000 + r},
                  {"stream_options", {{"include_usage", true}}}};
        }
        std::string text = body.dump();
        Sample sample;
        StreamState state;
        state.llama = llama;
        state.sample = &sample;
        state.start = SteadyClock::now();
        curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text.c_str());
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, 600L);
        CURLcode rc = curl_easy_perform(curl);
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        sample.latency = seconds_since(state.start);
        if (state.exact_tokens >= 0) sample.tokens = state.exact_tokens;
        if (predict) {  // one JSON answer: max_tokens generated (ignore_eos) when it holds a prediction
          auto j = nlohmann::json::parse(state.pending, nullptr, false);
          const bool ok = !j.is_discarded() && j.contains("predictions") && j["predictions"].size() == 1;
          sample.tokens = ok ? o.max_tokens : 0;
          sample.ttft = sample.latency;
        }
        sample.ok = rc == CURLE_OK && status == 200 && !state.error && sample.tokens > 0;
        std::lock_guard<std::mutex> lock(mutex);
        samples.push_back(sample);
      }
      curl_slist_free_all(headers);
      curl_easy_cleanup(curl);
    });
  }
  for (auto& t : threads) t.join();
  ServeBenchReport report;
  report.seconds = seconds_since(start);
  std::vector<double> ttft, latency;
  for (const auto& s : samples) {
    ++report.requests;
    if (!s.ok) {
      ++report.failed;
      continue;
    }
    report.tokens += s.tokens;
    ttft.push_back(s.ttft);
    latency.push_back(s.latency);
  }
  if (ttft.empty()) throw Error(ErrorCode::kNotFound, "no request to " + url + " succeeded");
  report.tokens_per_second = static_cast<double>(report.tokens) / report.seconds;
  report.requests_per_second = static_cast<double>(report.requests - report.failed) / report.seconds;
  report.ttft_p50 = percentile(ttft, 0.5), report.ttft_p99 = percentile(ttft, 0.99);
  report.latency_p50 = percentile(latency, 0.5), report.latency_p99 = percentile(latency, 0.99);
  return report;
}

}  // namespace cortex::bench
