// `cortex bench serve`: a closed-loop load generator. N clients each send a streaming completion request,
// wait for its end, and send the next, for a fixed number of requests. It measures what clients see:
// aggregate generated tokens/s, requests/s, time to first token and latency percentiles. It speaks our
// OpenAI-compatible /v1/completions and llama.cpp's /completion, so one tool measures both servers, and
// the seed's /predict (not streamed: one sample per request, with ignore_eos so that it generates exactly
// max_tokens tokens, which is what is counted; time to first token is then the whole latency).
#pragma once

#include <string>

namespace cortex::bench {

struct ServeBenchOptions {
  std::string url = "http://127.0.0.1:8080";  // server base URL
  // "openai" (/v1/completions), "llama" (/completion) or "predict" (/predict; a URL with a path, such as
  // a gateway's http://127.0.0.1:8888/text/generator, is used as it is).
  std::string api = "openai";
  std::string model = "gpt2";  // the model name sent with openai requests
  int clients = 8;
  int requests_per_client = 4;
  int max_tokens = 64;
  std::string prompt = "machine learning";
};

struct ServeBenchReport {
  int requests = 0;
  int failed = 0;
  long tokens = 0;  // generated, as counted from the streamed events
  double seconds = 0;
  double tokens_per_second = 0;
  double requests_per_second = 0;
  double ttft_p50 = 0, ttft_p99 = 0;        // seconds
  double latency_p50 = 0, latency_p99 = 0;  // seconds
};

// Throws Error when the URL is malformed or no request succeeds.
ServeBenchReport run_serve_bench(const ServeBenchOptions& options);

}  // namespace cortex::bench
