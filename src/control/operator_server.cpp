#include "control/operator_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "control/local_provider.h"
#include "control/state_store.h"
#include "serving/http_server.h"
#include "util/error.h"

namespace cortex::control {

namespace fs = std::filesystem;
using json = nlohmann::json;
using serving::HttpRequest;
using serving::ResponseChannel;

std::string operator_socket_path(const std::string& home) {
  return (fs::path(home) / "operator.sock").string();
}

namespace {

json error_json(const std::string& message) {
  return json{{"error", {{"message", message}}}};
}

// True when `pid` runs `cortex ... serve` (so that a recycled pid is never killed by mistake).
bool is_cortex_replica(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  size_t start = 0;
  while (start < cmdline.size()) {
    size_t end = cmdline.find('\0', start);
    if (end == std::string::npos) end = cmdline.size();
    args.push_back(cmdline.substr(start, end - start));
    start = end + 1;
  }
  if (args.empty() || fs::path(args[0]).filename() != "cortex") return false;
  return std::find(args.begin(), args.end(), "serve") != args.end();
}

// The spec as shown to users: the API key is never repeated.
json redacted_spec(const ApiSpec& spec) {
  json j = to_json(spec);
  if (!spec.api_key.empty()) j["api_key"] = "(set)";
  if (spec.model_env)  // credentials: only which variables were set
    for (auto& [k, v] : j["model_env"].items()) v = "(set)";
  return j;
}

json view_to_json(const ApiView& v, const std::string& gateway_url) {
  json replicas = json::array();
  for (const auto& r : v.replicas)
    replicas.push_back({{"id", r.id},
                        {"state", r.state},
                        {"up_to_date", r.up_to_date},
                        {"endpoint", r.endpoint},
                        {"pid", r.pid},
                        {"outstanding", r.outstanding},
                        {"age_seconds", r.age_seconds},
                        {"log", r.log_path}});
  const std::string& base = gateway_url;
  json download = nullptr;
  if (v.download_active)
    download = {{"stage", v.download.stage},
                {"file", v.download.file},
                {"bytes_done", v.download.done},
                {"bytes_total", v.download.total},
                {"bytes_per_second", v.download.bytes_per_second}};
  return json{{"name", v.stored.spec.name},
              {"deployment", v.stored.deployment},
              {"project_dir", v.stored.project_dir},
              {"status", v.status},
              {"reason", v.reason},
              {"version", v.stored.version},
              {"updated_at", v.stored.updated_at},
              {"requested", v.requested},
              {"ready", v.ready},
              {"up_to_date", v.up_to_date_ready},
              {"endpoint", base + "/" + v.stored.deployment + "/" + v.stored.spec.name},
              {"completions_endpoint", base + "/v1/completions"},
              {"api_key_required", !v.stored.spec.api_key.empty()},
              {"replicas", replicas},
              {"model_download", download},
              {"last_log_lines", v.last_log_lines},
              {"logs", v.log_paths},
              {"autoscaling",
               {{"avg_in_flight", v.autoscaling.avg_in_flight},
                {"raw", v.autoscaling.raw},
                {"recommended", v.autoscaling.recommended},
                {"reason", v.autoscaling.reason}}},
              {"traffic",
               {{"in_flight", v.in_flight},
                {"2xx", v.status_2xx},
                {"4xx", v.status_4xx},
                {"5xx", v.status_5xx},
                {"avg_latency_seconds", v.average_latency_seconds}}},
              {"spec", redacted_spec(v.stored.spec)}};
}

}  // namespace

struct OperatorServer::Impl {
  OperatorOptions options;
  int lock_fd = -1;
  std::unique_ptr<StateStore> store;
  std::unique_ptr<LocalProvider> provider;
  std::shared_ptr<RoutingTable> routes = std::make_shared<RoutingTable>();
  std::unique_ptr<Gateway> gateway;
  std::unique_ptr<Reconciler> reconciler;
  std::unique_ptr<serving::HttpServer> api_server;
  // The API's requests run here, off the socket's network thread (some wait on the reconciler or on a
  // replica); joined before anything they use goes away.
  std::unique_ptr<boost::asio::thread_pool> api_workers = std::make_unique<boost::asio::thread_pool>(4);

  void handle(const HttpRequest& request, const std::shared_ptr<ResponseChannel>& channel);
  // Where clients reach the gateway (a wildcard listen address is reached on loopback).
  std::string gateway_url() const {
    std::string host = options.gateway.host;
    if (host == "0.0.0.0" || host == "::") host = "127.0.0.1";
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    return "http://" + host + ":" + std::to_string(gateway->port());
  }
  json info() const {
    return json{{"pid", ::getpid()},
                {"home", options.home},
                {"socket", operator_socket_path(options.home)},
                {"gateway", gateway_url()},
                {"gateway_port", gateway->port()},
                {"provider", provider->name()},
                {"apis", reconciler->views().size()}};
  }
};

void OperatorServer::Impl::handle(const HttpRequest& request,
                                  const std::shared_ptr<ResponseChannel>& channel) {
  auto reply = [&](int status, const json& body) {
    channel->respond(status, "application/json", body.dump());
  };
  std::string path = request.target.substr(0, request.target.find('?'));
  const std::string& method = request.method;
  try {
    if (path == "/v1/info" && method == "GET") return reply(200, info());
    if (path == "/v1/shutdown" && method == "POST") {
      reply(200, json{{"stopping", true}});
      ::kill(::getpid(), SIGTERM);
      return;
    }
    if (path == "/v1/deployments" && method == "POST") {
      json body = json::parse(request.body, nullptr, false);
      if (body.is_discarded()) return reply(400, error_json("the request body is not JSON"));
      DeploymentSpec deployment = deployment_spec_from_json(body);
      json results = json::array();
      for (const auto& [api, result] : reconciler->apply(deployment))
        results.push_back({{"api", api}, {"result", to_string(result)}});
      return reply(200, json{{"deployment", deployment.name}, {"results", results}});
    }
    if (path == "/v1/apis" && method == "GET") {
      json out = json::array();
      for (const auto& v : reconciler->views()) out.push_back(view_to_json(v, gateway_url()));
      return reply(200, out);
    }
    if (path == "/v1/apis" && method == "DELETE") {
      json deleted = json::array();
      for (const auto& v : reconciler->views())
        if (reconciler->remove(v.stored.spec.name)) deleted.push_back(v.stored.spec.name);
      return reply(200, json{{"deleted", deleted}});
    }
    const std::string prefix = "/v1/apis/";
    if (path.rfind(prefix, 0) == 0) {
      std::string rest = path.substr(prefix.size());
      bool is_refresh = rest.size() > 8 && rest.compare(rest.size() - 8, 8, "/refresh") == 0;
      std::string name = is_refresh ? rest.substr(0, rest.size() - 8) : rest;
      if (is_refresh && method == "POST") {
        if (!reconciler->refresh(name)) return reply(404, error_json("no API named '" + name + "'"));
        return reply(200, json{{"api", name}, {"result", "refreshing"}});
      }
      if (method == "DELETE") {
        if (!reconciler->remove(name)) return reply(404, error_json("no API named '" + name + "'"));
        return reply(200, json{{"deleted", json::array({name})}});
      }
      if (method == "GET") {
        auto view = reconciler->view(name);
        if (!view) return reply(404, error_json("no API named '" + name + "'"));
        json out = view_to_json(*view, gateway_url());
        // The model's signature, from a ready replica.
        for (const auto& r : view->replicas) {
          if (r.state != "ready") continue;
          HttpCall call;
          call.url = r.endpoint + "/signature";
          call.timeout = std::chrono::milliseconds(2000);
          auto res = http_call(call);
          if (res.ok()) out["signature"] = json::parse(res.body, nullptr, false);
          break;
        }
        json events = json::array();
        for (const auto& e : store->events(name, 20))
          events.push_back({{"time", e.time}, {"message", e.message}});
        out["events"] = events;
        return reply(200, out);
      }
    }
    reply(404, error_json("no route " + method + " " + path));
  } catch (const Error& e) {
    reply(e.code() == ErrorCode::kInvalidArgument ? 400
          : e.code() == ErrorCode::kNotFound      ? 404
                                                  : 500,
          error_json(e.what()));
  } catch (const std::exception& e) {
    reply(500, error_json(e.what()));
  }
}

OperatorServer::OperatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<OperatorServer> OperatorServer::start(const OperatorOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  fs::create_directories(options.home);
  fs::permissions(options.home, fs::perms::owner_all, fs::perm_options::replace);
  std::string lock_path = (fs::path(options.home) / "operator.lock").string();
  impl->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (impl->lock_fd < 0)
    throw Error(ErrorCode::kInternal, "cannot open " + lock_path + ": " + std::strerror(errno));
  if (::flock(impl->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(impl->lock_fd);
    throw invalid_argument("an operator already runs for " + options.home + " (see `cortex cluster info`)");
  }
  impl->store = StateStore::open((fs::path(options.home) / "state.db").string());
  // Replicas of an operator that died: stop them; the reconciler starts fresh ones.
  for (const auto& r : impl->store->replicas()) {
    if (r.pid > 0 && is_cortex_replica(r.pid)) {
      spdlog::info("stopping replica {} (pid {}) left by a previous operator", r.id, r.pid);
      ::kill(r.pid, SIGKILL);
    }
    impl->store->delete_replica(r.id);
  }
  LocalProviderOptions provider;
  provider.cortex_binary = options.cortex_binary;
  provider.home = options.home;
  provider.request_timeout_s = static_cast<int>(options.gateway.request_timeout.count());
  impl->provider = std::make_unique<LocalProvider>(provider);
  impl->gateway = Gateway::start(options.gateway, impl->routes);
  ReconcilerOptions reconciler_options = options.reconciler;
  if (reconciler_options.model_cache_dir.empty())
    reconciler_options.model_cache_dir = (fs::path(options.home) / "cache").string();
  impl->reconciler =
      std::make_unique<Reconciler>(*impl->store, *impl->provider, impl->routes, reconciler_options);
  impl->reconciler->start();
  serving::HttpServerOptions api;
  api.unix_socket_path = operator_socket_path(options.home);
  Impl* raw = impl.get();
  impl->api_server =
      serving::HttpServer::start(api, [raw](HttpRequest request, std::shared_ptr<ResponseChannel> channel) {
        raw->handle(request, channel);
      });
  return std::unique_ptr<OperatorServer>(new OperatorServer(std::move(impl)));
}

OperatorServer::~OperatorServer() {
  impl_->api_workers->join();  // requests in progress finish (their answers are queued on the socket)
  impl_->api_server.reset();
  ::unlink(operator_socket_path(impl_->options.home).c_str());
  impl_->reconciler->shutdown();
  impl_->gateway.reset();
  impl_->reconciler.reset();
  impl_->provider.reset();
  impl_->store.reset();
  ::close(impl_->lock_fd);
}

void OperatorServer::wait() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  int sig = 0;
  sigwait(&stop, &sig);
  spdlog::info("operator: stopping ({})", sig == SIGINT ? "SIGINT" : "SIGTERM");
}

int OperatorServer::gateway_port() const {
  return impl_->gateway->port();
}

std::string OperatorServer::socket_path() const {
  return operator_socket_path(impl_->options.home);
}

}  // namespace cortex::control
