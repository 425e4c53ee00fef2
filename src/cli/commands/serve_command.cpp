// cortex serve: one replica of one API, until SIGINT or SIGTERM.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands/commands.h"
#include "cli/progress_bar.h"
#include "control/api_spec.h"
#include "model/weight_types.h"
#include "serving/python_handler.h"
#include "serving/replica_server.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::cli {

namespace {

control::ApiSpec read_spec(const std::string& path) {
  auto j = nlohmann::json::parse(read_file(path), nullptr, false);
  if (j.is_discarded()) throw invalid_argument(path + ": not JSON");
  try {
    return control::api_spec_from_json(j);
  } catch (const Error& e) {
    throw invalid_argument(path + ": " + e.what());
  }
}

// Settings of the spec, for every flag not given on the command line.
void apply_spec(const control::ApiSpec& spec, const CLI::App& cmd, serving::ReplicaOptions& r,
                std::string& handler, std::string& model_endpoint, std::string& model_region) {
  auto unset = [&](const char* flag) { return cmd.count(flag) == 0; };
  if (unset("--model")) {
    r.model_path = spec.model;
    model_endpoint = spec.model_endpoint;
    model_region = spec.model_region;
  }
  if (unset("--name")) r.api_name = spec.name;
  if (unset("--handler")) handler = spec.request_handler;
  if (unset("--max-concurrency")) r.scheduler.max_concurrency = spec.max_concurrency;
  if (unset("--max-queue-length")) r.scheduler.max_queue_length = spec.max_queue_length;
  if (unset("--max-tokens")) r.defaults.max_tokens = spec.generation.max_tokens;
  if (unset("--max-tokens-limit")) r.limits.max_tokens = spec.generation.max_tokens_limit;
  if (unset("--temperature"))
    r.defaults.sampling.temperature = static_cast<float>(spec.generation.temperature);
  if (unset("--top-k")) r.defaults.sampling.top_k = spec.generation.top_k;
  if (unset("--top-p")) r.defaults.sampling.top_p = static_cast<float>(spec.generation.top_p);
  if (unset("--kv-cache-tokens") && spec.kv_cache_tokens > 0) r.model.kv_cache_tokens = spec.kv_cache_tokens;
  if (unset("--dtype") && !spec.dtype.empty()) r.model.dtype = model::parse_dtype(spec.dtype);
  if (unset("--kv-cache-dtype") && !spec.kv_cache_dtype.empty())
    r.model.kv_cache_dtype = model::parse_kv_cache_dtype(spec.kv_cache_dtype);
  int threads = spec.threads > 0 ? spec.threads : static_cast<int>((spec.compute.cpu_millis + 999) / 1000);
  if (unset("--threads") && threads > 0) r.model.threads = threads;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  struct Options {
    serving::ReplicaOptions replica;
    std::string port_file;
    int timeout_s = 300;
    int read_timeout_s = 30;
    std::string spec_file;
    std::string handler;
    std::string dtype;
    std::string kv_cache_dtype;
    std::string converted_cache = default_converted_cache_dir();
  };
  auto o = std::make_shared<Options>();
  auto& r = o->replica;
  r.model.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto* cmd = app.add_subcommand("serve", "Serve one model over HTTP (/predict, /v1/completions, /metrics)");
  cmd->add_option(
      "--model", r.model_path,
      "Model folder (Hugging Face layout) or .gguf file, or a URI: file://, s3://, https://, hf://");
  cmd->add_option(
      "--spec", o->spec_file,
      "A resolved API spec (JSON, as in `cortex get API -o json`'s \"spec\"); flags given override it");
  cmd->add_option("--handler", o->handler,
                  "A Python request handler (a .py file defining pre_inference and/or post_inference)");
  cmd->add_option("--name", r.api_name, "API name (the model name in /v1/completions)")
      ->capture_default_str();
  cmd->add_option("--host", r.http.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", r.http.port, "Port (0: any free port)")->capture_default_str();
  cmd->add_option("--port-file", o->port_file, "Write the port listened on to this file");
  cmd->add_option("--threads", r.model.threads, "Compute threads")->capture_default_str();
  cmd->add_option("--kv-cache-tokens", r.model.kv_cache_tokens, "KV cache budget in tokens (0: 8 × context)");
  cmd->add_option("--dtype", o->dtype, "Weight type: f32, f16 or q8_0 (default: as stored)");
  cmd->add_option(
      "--kv-cache-dtype", o->kv_cache_dtype,
      "KV cache type: f32, or f16 for half its memory and the attention's reads (default: f16 for "
      "f16 and q8_0 weights, f32 for f32)");
  add_converted_cache_option(*cmd, o->converted_cache);
  cmd->add_option("--max-concurrency", r.scheduler.max_concurrency, "Sequences generated at once")
      ->capture_default_str();
  cmd->add_option("--max-queue-length", r.scheduler.max_queue_length, "Requests waiting; more get 503")
      ->capture_default_str();
  cmd->add_option("--request-timeout", o->timeout_s, "Seconds before a request is ended")
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", r.http.max_body_bytes, "Largest request body (more gets 413)")
      ->capture_default_str();
  cmd->add_option("--read-timeout", o->read_timeout_s,
                  "Seconds a client has to send a whole request (slower ones are disconnected)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--request-threads", r.request_threads,
                  "Threads that parse and tokenize requests (off the network thread)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-tokens", r.defaults.max_tokens, "Default tokens per /predict sample")
      ->capture_default_str();
  cmd->add_option("--max-tokens-limit", r.limits.max_tokens, "Most tokens a request may ask for")
      ->capture_default_str();
  cmd->add_option("--temperature", r.defaults.sampling.temperature, "Default temperature")
      ->capture_default_str();
  cmd->add_option("--top-k", r.defaults.sampling.top_k, "Default top-k")->capture_default_str();
  cmd->add_option("--top-p", r.defaults.sampling.top_p, "Default top-p")->capture_default_str();
  cmd->callback([o, cmd] {
    std::string model_endpoint, model_region;
    if (!o->spec_file.empty())
      apply_spec(read_spec(o->spec_file), *cmd, o->replica, o->handler, model_endpoint, model_region);
    if (!o->dtype.empty()) o->replica.model.dtype = model::parse_dtype(o->dtype);
    if (!o->kv_cache_dtype.empty())
      o->replica.model.kv_cache_dtype = model::parse_kv_cache_dtype(o->kv_cache_dtype);
    o->replica.model.converted_cache_dir = converted_cache_dir(o->converted_cache);
    if (o->replica.model_path.empty())
      throw invalid_argument("--model (or a --spec naming a model) is required");
    // A remote model is downloaded (or found in the cache) before anything listens.
    o->replica.model_path = local_model_path(o->replica.model_path, model_endpoint, model_region);
    o->replica.scheduler.request_timeout = std::chrono::seconds(o->timeout_s);
    o->replica.http.read_timeout = std::chrono::seconds(o->read_timeout_s);
    o->replica.scheduler.max_step_tokens = std::max(256, o->replica.scheduler.max_concurrency + 64);
    // Block the stop signals before any thread starts, so that only sigwait below receives them.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    if (!o->handler.empty()) {
      // Imported before anything listens: an import error ends the replica at once, with the Python
      // traceback on stderr (the replica's log).
      serving::PythonHandlerOptions handler_options;
      handler_options.call_timeout = o->replica.scheduler.request_timeout;
      handler_options.threads = std::max(2, o->replica.request_threads);
      o->replica.handler = serving::PythonHandler::load(o->handler, handler_options);
      std::fprintf(stderr, "cortex serve: request handler %s\n", o->handler.c_str());
    }
    auto server = serving::ReplicaServer::start(o->replica);
    std::fprintf(stderr, "cortex serve: listening on http://%s:%d (loading %s)\n",
                 o->replica.http.host.c_str(), server->port(), o->replica.model_path.c_str());
    if (!o->port_file.empty()) std::ofstream(o->port_file) << server->port() << "\n";
    std::string error = server->wait_ready();
    if (!error.empty()) throw Error(ErrorCode::kCorruptData, error);
    std::fprintf(stderr, "cortex serve: ready\n");
    int sig = 0;
    sigwait(&stop, &sig);
    std::fprintf(stderr, "cortex serve: stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  });
}

}  // namespace cortex::cli
