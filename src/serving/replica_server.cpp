#include "serving/replica_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <chrono>
#include <filesystem>
#include <set>

#include "model/kernel_table.h"
#include "model/warm_up.h"
#include "model/weight_types.h"
#include "util/clock.h"
#include "util/error.h"

namespace cortex::serving {

using nlohmann::json;

namespace {

constexpr int kMaxLogprobs = 5;  // OpenAI's limit for the legacy completions API

json error_body(const std::string& message, const std::string& type, const std::string& param = "",
                const std::string& code = "") {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

// The request field an invalid_argument message names ("max_tokens: must be ..." -> "max_tokens").
std::string param_of(const std::string& message) {
  auto colon = message.find(':');
  return colon == std::string::npos || message.find(' ') < colon ? "" : message.substr(0, colon);
}

void count_generation(Metrics* metrics, const GenerationResult& result) {
  metrics->tokens_generated(result.generated_tokens);
  if (result.generated_tokens > 0) metrics->first_token(result.time_to_first_token_s);
}

// A boolean field: `fallback` when absent or null; Error(kInvalidArgument) naming it when not a boolean.
bool get_bool(const json& j, const std::string& field, bool fallback, const std::string& name = "") {
  if (!j.contains(field) || j.at(field).is_null()) return fallback;
  if (!j.at(field).is_boolean())
    throw invalid_argument((name.empty() ? field : name) + ": must be true or false");
  return j.at(field).get<bool>();
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// One HTTP request: answers it exactly once and records its metrics.
struct ReplicaServer::Request {
  HttpRequest http;
  std::shared_ptr<ResponseChannel> channel;
  Metrics* metrics;
  std::string route;
  SteadyClock::time_point start = SteadyClock::now();
  std::atomic<bool> answered{false};

  bool begin_answer() { return !answered.exchange(true); }
  void record(int status) { metrics->request_finished(route, status, seconds_since(start)); }
  void json_response(int status, const json& body, std::map<std::string, std::string> headers = {}) {
    if (!begin_answer()) return;
    channel->respond(status, "application/json",
                     body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", std::move(headers));
    record(status);
  }
  void fail(const Error& e) {
    if (dynamic_cast<const HandlerTimeout*>(&e)) {
      json_response(504, error_body(e.what(), "server_error"));
      return;
    }
    switch (e.code()) {
      case ErrorCode::kInvalidArgument:
        json_response(400, error_body(e.what(), "invalid_request_error", param_of(e.what())));
        break;
      case ErrorCode::kNotFound:
        json_response(404, error_body(e.what(), "not_found_error"));
        break;
      case ErrorCode::kResourceExhausted:
        json_response(503, error_body(e.what(), "overloaded_error"), {{"Retry-After", "1"}});
        break;
      default:
        json_response(500, error_body(e.what(), "server_error"));
        break;
    }
  }
};

std::unique_ptr<ReplicaServer> ReplicaServer::start(const ReplicaOptions& options) {
  auto server = std::unique_ptr<ReplicaServer>(new ReplicaServer(options));
  ReplicaServer* raw = server.get();
  server->http_ =
      HttpServer::start(options.http, [raw](HttpRequest req, std::shared_ptr<ResponseChannel> ch) {
        raw->handle(std::move(req), std::move(ch));
      });
  server->loader_ = std::thread([raw] { raw->load(); });
  return server;
}

ReplicaServer::ReplicaServer(const ReplicaOptions& options)
    : options_(options), workers_(static_cast<size_t>(std::max(1, options.request_threads))) {}

ReplicaServer::~ReplicaServer() {
  if (loader_.joinable()) loader_.join();
  std::shared_ptr<BatchScheduler> scheduler;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    scheduler = std::move(scheduler_);  // requests routed from now on get 503
  }
  workers_.join();    // requests being pre-processed finish (their copy of the scheduler goes with them)
  scheduler.reset();  // running requests end (their clients get an error) while the network still runs
  http_.reset();
}

void ReplicaServer::load() {
  try {
    auto loaded = model::load_model(options_.model_path, options_.model);
    // Before /readyz says ready, so that the control plane sends no request to a replica still warming.
    const model::WarmUpReport warm = model::warm_up(*loaded.model, options_.scheduler.max_concurrency);
    auto builtin = std::make_unique<Gpt2RequestHandler>(loaded.tokenizer.get());
    std::shared_ptr<RequestHandler> handler = options_.handler;
    if (handler)
      handler->set_builtin(builtin.get());
    else
      handler = std::shared_ptr<RequestHandler>(builtin.get(), [](RequestHandler*) {});  // owned by builtin_
    const auto& c = loaded.model->config();
    json signature = {{"inputs", {{"context", {{"type", "int32"}, {"shape", {-1, -1}}}}}},
                      {"outputs", {{"sample", {{"type", "int32"}, {"shape", {-1, -1}}}}}},
                      {"model",
                       {{"vocab_size", c.vocab_size},
                        {"n_ctx", c.n_ctx},
                        {"n_embd", c.n_embd},
                        {"n_layer", c.n_layer},
                        {"n_head", c.n_head},
                        {"dtype", model::dtype_flag_name(loaded.model->weights().dtype())},
                        {"kv_cache_dtype", model::dtype_flag_name(loaded.model->kv_cache().dtype())}}}};
    json metadata = signature;
    std::error_code ec;
    auto path = std::filesystem::absolute(options_.model_path, ec);
    metadata["model"]["path"] = ec ? options_.model_path : path.lexically_normal().string();
    auto scheduler = BatchScheduler::create(loaded.model.get(), options_.scheduler);
    std::lock_guard<std::mutex> lock(mutex_);
    model_ = std::move(loaded);
    builtin_handler_ = std::move(builtin);
    handler_ = std::move(handler);
    signature_ = std::move(signature);
    metadata_ = std::move(metadata);
    scheduler_ = std::shared_ptr<BatchScheduler>(std::move(scheduler));
    loading_ = false;
    const std::string converted = model_.model->weights().converted().where();
    spdlog::info(
        "model {} loaded ({} weights{}, {} KV cache, {} kernels) and warmed up in {:.3f} s (a prompt "
        "of {} tokens, batches of up to {} sequences): ready",
        options_.model_path, model::dtype_flag_name(model_.model->weights().dtype()),
        converted.empty() ? "" : ", converted: " + converted,
        model::dtype_flag_name(model_.model->kv_cache().dtype()), model::isa_name(model::kernels().isa),
        warm.seconds, warm.prompt_tokens, warm.batch_sequences);
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    load_error_ = e.what();
    loading_ = false;
    spdlog::error("cannot load the model: {}", e.what());
  }
  loaded_cv_.notify_all();
}

std::string ReplicaServer::wait_ready() {
  std::unique_lock<std::mutex> lock(mutex_);
  loaded_cv_.wait(lock, [&] { return !loading_; });
  return load_error_;
}

void ReplicaServer::handle(HttpRequest http, std::shared_ptr<ResponseChannel> channel) {
  auto r = std::make_shared<Request>();
  r->http = std::move(http);
  r->channel = std::move(channel);
  r->metrics = &metrics_;
  std::string path = r->http.target.substr(0, r->http.target.find('?'));
  static const std::set<std::string> kRoutes = {"/healthz",        "/readyz",    "/metrics",  "/predict",
                                                "/v1/completions", "/v1/models", "/signature"};
  r->route = kRoutes.count(path) ? path : "other";  // bounded label values for /metrics
  metrics_.request_started();
  const std::string& method = r->http.method;
  auto expect = [&](const char* m) {
    if (method == m) return true;
    r->json_response(405,
                     error_body("method " + method + " is not allowed on " + path + " (use " + m + ")",
                                "invalid_request_error"),
                     {{"Allow", m}});
    return false;
  };
  if (path == "/healthz") {
    if (expect("GET")) r->json_response(200, {{"status", "ok"}});
    return;
  }
  if (path == "/metrics") {
    if (!expect("GET")) return;
    int queued = 0, active = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (scheduler_) queued = scheduler_->queued(), active = scheduler_->active();
    }
    if (r->begin_answer()) {
      r->channel->respond(200, "text/plain; version=0.0.4", metrics_.render(queued, active));
      r->record(200);
    }
    return;
  }
  if (path == "/readyz") {
    if (!expect("GET")) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (loading_)
      r->json_response(503, {{"status", "loading"}}, {{"Retry-After", "1"}});
    else if (!load_error_.empty())
      r->json_response(503, {{"status", "error"}, {"error", load_error_}});
    else
      r->json_response(200, {{"status", "ready"}});
    return;
  }
  const bool known =
      path == "/predict" || path == "/v1/completions" || path == "/v1/models" || path == "/signature";
  if (!known) {
    r->json_response(404, error_body("no route " + path, "not_found_error"));
    return;
  }
  std::shared_ptr<BatchScheduler> scheduler;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    scheduler = scheduler_;
    if (!scheduler) {
      if (loading_)
        r->json_response(503, error_body("the model is loading", "overloaded_error"), {{"Retry-After", "1"}});
      else if (!load_error_.empty())
        r->json_response(503, error_body("the model failed to load: " + load_error_, "server_error"));
      else
        r->json_response(503, error_body("the server is shutting down", "overloaded_error"));
      return;
    }
  }
  // From here model_ and handler_ are set and stay so (see the header).
  if (path == "/v1/models") {
    if (expect("GET"))
      r->json_response(200, {{"object", "list"},
                             {"data",
                              {{{"id", options_.api_name},
                                {"object", "model"},
                                {"created", unix_time()},
                                {"owned_by", "cortex"}}}}});
    return;
  }
  if (path == "/signature") {
    if (expect("GET")) r->json_response(200, signature_);
    return;
  }
  if (!expect("POST")) return;
  // Parsing, pre_inference and tokenizing happen on a request thread, not on the network thread. Posted
  // under the lock: the destructor either sees this work when it joins the request threads, or ran first
  // and this request gets 503.
  std::lock_guard<std::mutex> lock(mutex_);
  if (!scheduler_) {
    r->json_response(503, error_body("the server is shutting down", "overloaded_error"));
    return;
  }
  boost::asio::post(workers_, [this, r, scheduler = std::move(scheduler), path] {
    try {
      if (path == "/v1/completions")
        completions(r, *scheduler);
      else
        predict(r, *scheduler);
    } catch (const Error& e) {
      r->fail(e);
    } catch (const std::exception& e) {
      r->fail(Error(ErrorCode::kInternal, e.what()));
    }
  });
}

namespace {
json parse_body(const std::string& body) {
  try {
    return json::parse(body);
  } catch (const json::exception& e) {
    throw invalid_argument(std::string("invalid JSON body: ") + e.what());
  }
}

std::vector<int32_t> context_of(const json& model_input) {
  if (!model_input.is_object() || !model_input.contains("context"))
    throw invalid_argument("pre_inference must return an object with \"context\": [token ids]");
  json ctx = model_input.at("context");
  if (ctx.is_array() && !ctx.empty() && ctx.front().is_array()) ctx = ctx.front();  // [[ids]]: batch of one
  if (!ctx.is_array()) throw invalid_argument("context: must be a list of token ids");
  std::vector<int32_t> ids;
  for (const auto& v : ctx) {
    if (!v.is_number_integer()) throw invalid_argument("context: must be a list of token ids");
    const int64_t id = v.is_number_unsigned() && v.get<uint64_t>() > INT32_MAX ? -1 : v.get<int64_t>();
    if (id < 0 || id > INT32_MAX)
      throw invalid_argument("context: token id " + v.dump() + " is outside the vocabulary");
    ids.push_back(v.get<int32_t>());
  }
  if (ids.empty()) throw invalid_argument("text: the prompt is empty");
  return ids;
}
}  // namespace

// The seed's prediction API.
void ReplicaServer::predict(const std::shared_ptr<Request>& r, BatchScheduler& scheduler) {
  json body = parse_body(r->http.body);
  if (!body.is_object() || !body.contains("samples")) throw invalid_argument("samples: missing");
  const json& samples = body.at("samples");
  if (!samples.is_array() || samples.empty()) throw invalid_argument("samples: must be a non-empty list");
  if (static_cast<int>(samples.size()) > options_.max_samples)
    throw invalid_argument("samples: at most " + std::to_string(options_.max_samples) + " per request");
  const json& metadata = metadata_;
  struct Job {
    std::vector<int32_t> context;
    CompletionParams params;
  };
  std::vector<Job> jobs;
  for (const auto& sample : samples) {
    json input = handler_->pre_inference(sample, metadata);
    json merged = sample.is_object() ? sample : json::object();
    for (auto& [k, v] : input.items())
      if (k != "context") merged[k] = v;
    merged.erase("text");
    jobs.push_back({context_of(input), parse_completion_params(merged, options_.defaults, options_.limits)});
  }
  auto group = std::make_shared<CompletionGroup>(jobs.size());
  auto contexts = std::make_shared<std::vector<std::vector<int32_t>>>();
  for (auto& j : jobs) contexts->push_back(j.context);
  RequestHandler* handler = handler_.get();
  Metrics* metrics = &metrics_;
  for (size_t i = 0; i < jobs.size(); ++i) {
    // On the scheduler thread: hands post_inference to a request thread (a handler may be slow, and
    // Python must never run where the batch decodes).
    auto on_done = [this, r, group, contexts, i, handler, metrics](CompletionOutput out) {
      count_generation(metrics, out.result);
      auto outputs = group->complete(i, std::move(out));
      if (!outputs) return;
      for (auto& o : *outputs) {
        if (std::string failure = failure_of(o.result); !failure.empty()) {
          r->json_response(failure_status(o.result), error_body(failure, "server_error"));
          return;
        }
      }
      auto post = [this, r, outputs = std::move(*outputs), contexts, handler] {
        try {
          json predictions = json::array();
          for (size_t k = 0; k < outputs.size(); ++k) {
            std::vector<int32_t> sample = (*contexts)[k];
            sample.insert(sample.end(), outputs[k].tokens.begin(), outputs[k].tokens.end());
            predictions.push_back(handler->post_inference({{"response", {{"sample", sample}}}}, metadata_));
          }
          r->json_response(200, {{"predictions", predictions}});
        } catch (const Error& e) {
          r->fail(e);
        } catch (const std::exception& e) {
          spdlog::error("post_inference failed: {}", e.what());
          r->json_response(500,
                           error_body(std::string("post_inference failed: ") + e.what(), "server_error"));
        }
      };
      // Posted under the lock, as in handle(): the destructor either joins this work or ran first.
      std::lock_guard<std::mutex> lock(mutex_);
      if (scheduler_)
        boost::asio::post(workers_, std::move(post));
      else
        r->json_response(503, error_body("the server is shutting down", "overloaded_error"));
    };
    auto channel = r->channel;
    CompletionParams params = jobs[i].params;
    try {
      CompletionCallbacks callbacks;
      callbacks.on_text = [channel, group](const std::string&, std::vector<TokenLogprob>) {
        if (channel->closed()) group->cancel_all();  // the client went away: stop generating for it
      };
      callbacks.on_done = on_done;
      auto handle = start_completion(scheduler, *model_.tokenizer, jobs[i].context, params, callbacks);
      group->add(handle);
    } catch (const Error&) {
      group->cancel_all();
      throw;  // answered by the caller (503 when the queue is full); the cancelled ones answer nothing more
    }
  }
}

// OpenAI's completions API.
void ReplicaServer::completions(const std::shared_ptr<Request>& r, BatchScheduler& scheduler) {
  json body = parse_body(r->http.body);
  if (!body.is_object()) throw invalid_argument("request: must be a JSON object");
  if (body.contains("model") && !body["model"].is_null() &&
      (!body["model"].is_string() || body["model"].get<std::string>() != options_.api_name)) {
    r->json_response(404, error_body("the model " + body["model"].dump() +
                                         " does not exist (this replica serves '" + options_.api_name + "')",
                                     "invalid_request_error", "model", "model_not_found"));
    return;
  }
  // OpenAI's legacy completions: logprobs n (0..5) = the chosen token's log-probability and the n most
  // likely tokens' at each position.
  int logprobs = -1;
  if (body.contains("logprobs") && !body["logprobs"].is_null()) {
    const json& lp = body["logprobs"];
    if (!lp.is_number_integer() || lp.get<int64_t>() < 0 || lp.get<int64_t>() > kMaxLogprobs)
      throw invalid_argument("logprobs: must be an integer between 0 and " + std::to_string(kMaxLogprobs));
    logprobs = lp.get<int>();
  }
  if (!body.contains("prompt")) throw invalid_argument("prompt: missing");
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> prompt_texts;
  const json& p = body["prompt"];
  auto add_text = [&](const json& t) {
    prompt_texts.push_back(t.get<std::string>());
    prompts.push_back(model_.tokenizer->encode(prompt_texts.back()));
  };
  auto add_ids = [&](const json& ids) {
    std::vector<int32_t> v;
    const int64_t vocab = model_.model->config().vocab_size;
    for (const auto& x : ids) {
      if (!x.is_number_integer())
        throw invalid_argument("prompt: must be a string, a list of strings or token ids");
      if (x.get<int64_t>() < 0 || x.get<int64_t>() >= vocab)
        throw invalid_argument("prompt: token id " + x.dump() + " is outside the vocabulary (0.." +
                               std::to_string(vocab - 1) + ")");
      v.push_back(x.get<int32_t>());
    }
    prompt_texts.push_back(decode_text(*model_.tokenizer, v));  // valid UTF-8 even if the ids cut a character
    prompts.push_back(std::move(v));
  };
  if (p.is_string()) {
    add_text(p);
  } else if (p.is_array() && !p.empty() && p.front().is_number_integer()) {
    add_ids(p);
  } else if (p.is_array() && !p.empty()) {
    for (const auto& e : p) {
      if (e.is_string())
        add_text(e);
      else if (e.is_array())
        add_ids(e);
      else
        throw invalid_argument("prompt: must be a string, a list of strings or token ids");
    }
  } else {
    throw invalid_argument("prompt: must be a string, a list of strings or token ids");
  }
  for (const auto& ids : prompts)
    if (ids.empty()) throw invalid_argument("prompt: must not be empty");
  int n = 1;
  if (body.contains("n") && !body["n"].is_null()) {
    if (!body["n"].is_number_integer() || body["n"].get<int64_t>() < 1 ||
        body["n"].get<int64_t>() > options_.max_n)
      throw invalid_argument("n: must be an integer between 1 and " + std::to_string(options_.max_n));
    n = body["n"].get<int>();
  }
  if (static_cast<int>(prompts.size()) * n > options_.max_samples)
    throw invalid_argument("prompt: at most " + std::to_string(options_.max_samples) +
                           " completions per request");
  const bool stream = get_bool(body, "stream", false);
  const bool echo = get_bool(body, "echo", false);
  bool include_usage = false;
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    if (!body["stream_options"].is_object()) throw invalid_argument("stream_options: must be an object");
    include_usage =
        stream && get_bool(body["stream_options"], "include_usage", false, "stream_options.include_usage");
  }
  CompletionParams defaults = options_.defaults;
  defaults.max_tokens = std::min(16, options_.limits.max_tokens);  // OpenAI's default
  CompletionParams params = parse_completion_params(body, defaults, options_.limits);
  params.logprobs = logprobs;
  params.echo = echo;

  const size_t total = prompts.size() * static_cast<size_t>(n);
  auto group = std::make_shared<CompletionGroup>(total);
  const std::string id = "cmpl-" + std::to_string(unix_time()) + "-" +
                         std::to_string(reinterpret_cast<uintptr_t>(r.get()) % 100000);
  const int64_t created = unix_time();
  const std::string model_name = options_.api_name;
  // One server-sent event. With logprobs, every chunk carries the entries of its tokens (the last one,
  // with finish_reason, none); their text offsets count the whole choice's text, as in a whole response.
  auto chunk = [id, created, model_name, logprobs](size_t index, const std::string& text, const json& finish,
                                                   std::span<const TokenLogprob> entries = {}) {
    json c = {{"id", id},
              {"object", "text_completion"},
              {"created", created},
              {"model", model_name},
              {"choices",
               {{{"text", text},
                 {"index", index},
                 {"logprobs", logprobs >= 0 ? logprobs_json(entries) : json(nullptr)},
                 {"finish_reason", finish}}}}};
    return "data: " + c.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
  };
  auto finish_name = [](FinishReason reason) -> json {
    return reason == FinishReason::kStop ? "stop" : "length";
  };
  std::vector<int> prompt_token_counts;
  for (const auto& ids : prompts) prompt_token_counts.push_back(static_cast<int>(ids.size()));
  if (stream) {
    // Once the headers are out, a full queue can only be reported inside the stream; refuse before (503,
    // which a gateway may retry elsewhere) when it is full already.
    if (!scheduler.has_room(static_cast<int>(total)))
      throw Error(ErrorCode::kResourceExhausted, "queue full: " + std::to_string(scheduler.queued()) +
                                                     " requests waiting and every slot busy");
    r->answered = true;  // answered by the stream below
    r->channel->start_stream(200, "text/event-stream");
    if (echo && logprobs < 0)  // with logprobs the echo waits for the prompt's (after its prefill)
      for (size_t i = 0; i < total; ++i)
        r->channel->write(chunk(i, prompt_texts[i / static_cast<size_t>(n)], nullptr));
  }
  Metrics* metrics = &metrics_;
  for (size_t i = 0; i < total; ++i) {
    CompletionParams choice_params = params;
    choice_params.sampling.seed = params.sampling.seed + (i % static_cast<size_t>(n));
    auto channel = r->channel;
    CompletionCallbacks callbacks;
    callbacks.on_text = [channel, group, stream, i, chunk](const std::string& text,
                                                           std::vector<TokenLogprob> entries) {
      if (channel->closed()) {  // the client went away: stop generating for it
        group->cancel_all();
        return;
      }
      if (stream) channel->write(chunk(i, text, nullptr, entries));
    };
    if (stream && echo && logprobs >= 0)
      callbacks.on_prompt = [channel, i, chunk, text = prompt_texts[i / static_cast<size_t>(n)]](
                                std::vector<TokenLogprob> entries) {
        channel->write(chunk(i, text, nullptr, entries));
      };
    callbacks.on_done = [r, group, i, n, stream, echo, logprobs, include_usage, chunk, finish_name,
                         prompt_texts, prompt_token_counts, id, created, model_name,
                         metrics](CompletionOutput out) {
      count_generation(metrics, out.result);
      if (stream && failure_of(out.result).empty())
        r->channel->write(chunk(i, "", finish_name(out.result.reason)));
      auto outputs = group->complete(i, std::move(out));
      if (!outputs) return;
      int prompt_tokens = 0, completion_tokens = 0;
      std::string error;
      int error_status = 500;
      for (size_t k = 0; k < outputs->size(); ++k) {
        const auto& o = (*outputs)[k];
        if (k % static_cast<size_t>(n) == 0) prompt_tokens += prompt_token_counts[k / static_cast<size_t>(n)];
        completion_tokens += o.result.generated_tokens;
        if (std::string failure = failure_of(o.result); !failure.empty()) {
          error = failure;
          error_status = failure_status(o.result);
        }
      }
      json usage = {{"prompt_tokens", prompt_tokens},
                    {"completion_tokens", completion_tokens},
                    {"total_tokens", prompt_tokens + completion_tokens}};
      if (stream) {
        if (!error.empty()) {
          r->channel->write("data: " + error_body(error, "server_error").dump() + "\n\n");
        } else if (include_usage) {
          json u = {{"id", id},
                    {"object", "text_completion"},
                    {"created", created},
                    {"model", model_name},
                    {"choices", json::array()},
                    {"usage", usage}};
          r->channel->write("data: " + u.dump() + "\n\n");
        }
        r->channel->write("data: [DONE]\n\n");
        r->channel->end();
        r->record(error.empty() ? 200 : error_status);
        return;
      }
      if (!error.empty()) {
        r->json_response(error_status, error_body(error, "server_error"));
        return;
      }
      json choices = json::array();
      for (size_t k = 0; k < outputs->size(); ++k) {
        auto& o = (*outputs)[k];
        json lp = nullptr;
        if (logprobs >= 0) {  // the prompt's entries (with echo), then the generated tokens'
          o.prompt_logprobs.insert(o.prompt_logprobs.end(), o.logprobs.begin(), o.logprobs.end());
          lp = logprobs_json(o.prompt_logprobs);
        }
        choices.push_back({{"text", (echo ? prompt_texts[k / static_cast<size_t>(n)] : "") + o.text},
                           {"index", k},
                           {"logprobs", std::move(lp)},
                           {"finish_reason", finish_name(o.result.reason)}});
      }
      r->json_response(200, {{"id", id},
                             {"object", "text_completion"},
                             {"created", created},
                             {"model", model_name},
                             {"choices", choices},
                             {"usage", usage}});
    };
    try {
      auto handle = start_completion(scheduler, *model_.tokenizer, prompts[i / static_cast<size_t>(n)],
                                     choice_params, std::move(callbacks));
      group->add(handle);
    } catch (const Error& e) {
      group->cancel_all();
      if (stream) {  // headers are out: report in the stream
        r->channel->write("data: " + error_body(e.what(), "invalid_request_error").dump() + "\n\n");
        r->channel->write("data: [DONE]\n\n");
        r->channel->end();
        r->record(e.code() == ErrorCode::kResourceExhausted ? 503 : 400);
        return;
      }
      throw;
    }
  }
}

}  // namespace cortex::serving
