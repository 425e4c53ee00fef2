// One replica of one API (what `cortex serve` runs): loads the model, then answers
//   POST /predict          {"samples": [{"text": ...}, ...]} -> {"predictions": [...]} (the seed's API)
//   POST /v1/completions   OpenAI-compatible, with server-sent events when "stream": true
//   GET  /v1/models, /healthz (alive), /readyz (model loaded), /signature, /metrics (Prometheus)
// Errors are JSON: {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <atomic>
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
  int max_samples = 64;  // samples in one /predict request
  int max_n = 16;        // choices per prompt in /v1/completions
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
  void predict(const std::shared_ptr<Request>& r);
  void completions(const std::shared_ptr<Request>& r);

  ReplicaOptions options_;
  Metrics metrics_;

  std::mutex mutex_;  // guards the fields below; the scheduler is submitted to under it
  std::condition_variable loaded_cv_;
  bool loading_ = true;
  std::string load_error_;
  model::LoadedModel model_;
  std::unique_ptr<RequestHandler> handler_;
  std::unique_ptr<BatchScheduler> scheduler_;

  std::thread loader_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace cortex::serving
