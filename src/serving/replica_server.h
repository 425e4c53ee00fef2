// One replica of one API (what `cortex serve` runs): loads the model, then answers
//   POST /predict          {"samples": [{"text": ...}, ...]} -> {"predictions": [...]} (the seed's API)
//   POST /v1/completions   OpenAI-compatible, with server-sent events when "stream": true. "logprobs": n
//                          (0..5) gives each choice OpenAI's legacy logprobs object: per token its text,
//                          log-probability, the n most likely tokens (and itself) with theirs, and its
//                          offset in the choice's text (characters); with "echo" the prompt's tokens
//                          come first (the first with null). Values are the raw model's: log-softmax of
//                          the logits, before temperature, top-k and top-p, as OpenAI reports them.
//                          Streamed, each event carries its own tokens' entries.
//   GET  /v1/models, /healthz (alive), /readyz (model loaded), /signature, /metrics (Prometheus)
// Errors are JSON: {"error": {"message", "type", "param", "code"}}.
//
// Threading: the HTTP server's network thread routes each request and answers the cheap ones itself;
// the body of a /predict or /v1/completions request (JSON parsing, pre_inference, tokenizing, submitting
// to the scheduler) is worked on by a small pool of request threads, so that a large or slow request
// never holds up the network thread (other clients' streams) or a lock. The scheduler thread then
// generates and answers through the request's ResponseChannel; when a /predict request's generation ends,
// its post_inference runs on a request thread again (never on the scheduler's thread, which keeps
// decoding the batch meanwhile).
#pragma once

#include <atomic>
#include <boost/asio/thread_pool.hpp>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "model/model_loader.h"
#include "serving/batch_scheduler.h"
#include "serving/completion.h"
#include "serving/http_server.h"
#include "serving/metrics.h"
#include "serving/request_handler.h"

namespace cortex::serving {

struct ReplicaOptions {
  std::string model_path;
  std::string api_name = "gpt2";  // the model name clients use in /v1/completions
  model::ModelOptions model;
  SchedulerOptions scheduler;
  HttpServerOptions http;
  CompletionParams defaults;  // generation defaults; requests override them within `limits`
  CompletionLimits limits;
  int max_samples = 64;     // samples in one /predict request
  int max_n = 16;           // choices per prompt in /v1/completions
  int request_threads = 2;  // threads that parse, pre-process and tokenize requests
  // The /predict request handler (a PythonHandler); null: the built-in GPT-2 handler. It gets the
  // built-in one (set_builtin) for the halves it does not implement.
  std::shared_ptr<RequestHandler> handler;
};

class ReplicaServer {
 public:
  // Listens at once (/healthz answers) and loads the model on a background thread (/readyz answers 503
  // until it is loaded). Throws Error when the address cannot be bound.
  static std::unique_ptr<ReplicaServer> start(const ReplicaOptions& options);
  ~ReplicaServer();  // ends running requests (clients get an error), then stops listening

  int port() const { return http_->port(); }
  // Blocks until the model is loaded or failed to load; returns the error ("" when ready).
  std::string wait_ready();

  struct Request;  // one HTTP request being answered

 private:
  explicit ReplicaServer(const ReplicaOptions& options);
  void load();
  void handle(HttpRequest request, std::shared_ptr<ResponseChannel> channel);
  // On a request thread; `scheduler` is kept alive by the caller.
  void predict(const std::shared_ptr<Request>& r, BatchScheduler& scheduler);
  void completions(const std::shared_ptr<Request>& r, BatchScheduler& scheduler);

  ReplicaOptions options_;
  Metrics metrics_;

  std::mutex mutex_;  // guards the fields below, held only to read or set them
  std::condition_variable loaded_cv_;
  bool loading_ = true;
  std::string load_error_;
  // Set once by load(), with scheduler_, and not changed after: whoever has seen scheduler_ set (under
  // mutex_) may use model_ and handler_ without the lock until the server is destroyed.
  model::LoadedModel model_;
  std::unique_ptr<RequestHandler> builtin_handler_;
  std::shared_ptr<RequestHandler> handler_;  // options_.handler, or the built-in one
  nlohmann::json signature_;                 // GET /signature
  nlohmann::json metadata_;                  // what handlers get: the signature and the model's path
  // Shared with the requests being pre-processed, so that the destructor can take it away while they run.
  std::shared_ptr<BatchScheduler> scheduler_;

  std::thread loader_;
  boost::asio::thread_pool workers_;  // request threads (options_.request_threads)
  std::unique_ptr<HttpServer> http_;
};

}  // namespace cortex::serving
