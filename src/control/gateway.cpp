#include "control/gateway.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "serving/http_server.h"
#include "serving/metrics.h"
#include "util/clock.h"

namespace cortex::control {

using serving::HttpRequest;
using serving::ResponseChannel;
using json = nlohmann::json;

namespace {

std::string error_body(const std::string& message, const std::string& type, const json& param = nullptr) {
  return json{{"error", {{"message", message}, {"type", type}, {"param", param}, {"code", nullptr}}}}.dump() +
         "\n";
}

// Reusable libcurl handles: each keeps its connections to replicas open between requests.
class CurlPool {
 public:
  ~CurlPool() {
    for (CURL* h : idle_) curl_easy_cleanup(h);
  }
  CURL* take() {
    std::lock_guard lock(mutex_);
    if (idle_.empty()) return curl_easy_init();
    CURL* h = idle_.back();
    idle_.pop_back();
    curl_easy_reset(h);
    return h;
  }
  void give_back(CURL* h) {
    std::lock_guard lock(mutex_);
    idle_.push_back(h);
  }

 private:
  std::mutex mutex_;
  std::vector<CURL*> idle_;
};

// One attempt at one replica: what came back and whether anything reached the client.
struct Attempt {
  std::shared_ptr<ResponseChannel> channel;
  CURL* curl = nullptr;
  const std::atomic<bool>* stopping = nullptr;
  std::string content_type;
  std::string retry_after;
  std::string body;        // buffered (non-streamed) response
  bool streaming = false;  // the client has been sent the status line
  bool client_gone = false;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    if (name == "content-type") a->content_type = value;
    if (name == "retry-after") a->retry_after = value;
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  if (a->channel->closed()) {
    a->client_gone = true;
    return 0;  // aborts the transfer: the replica sees the connection close and cancels
  }
  long status = 0;
  curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &status);
  if (!a->streaming && status == 200 && a->content_type.rfind("text/event-stream", 0) == 0) {
    a->streaming = true;
    a->channel->start_stream(200, a->content_type);
  }
  if (a->streaming)
    a->channel->write(std::string(data, size * n));
  else
    a->body.append(data, size * n);
  return size * n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* a = static_cast<Attempt*>(user);
  if (a->channel->closed()) a->client_gone = true;
  return (a->client_gone || a->stopping->load()) ? 1 : 0;
}

}  // namespace

struct Gateway::Impl : std::enable_shared_from_this<Gateway::Impl> {
  GatewayOptions options;
  std::shared_ptr<RoutingTable> routes;
  std::unique_ptr<serving::HttpServer> server;
  CurlPool curl_pool;
  std::atomic<bool> stopping{false};
  std::mutex workers_mutex;
  std::condition_variable workers_done;
  int workers = 0;  // guarded by workers_mutex
  std::mutex histograms_mutex;
  std::map<std::string, std::unique_ptr<serving::Histogram>> latency;  // by API; guarded by histograms_mutex

  void handle(HttpRequest request, std::shared_ptr<ResponseChannel> channel);
  void proxy(std::shared_ptr<const Route> route, std::string path, HttpRequest request,
             std::shared_ptr<ResponseChannel> channel);
  std::string render_metrics();
  serving::Histogram& histogram(const std::string& api) {
    std::lock_guard lock(histograms_mutex);
    auto& h = latency[api];
    if (!h) h = std::make_unique<serving::Histogram>();
    return *h;
  }

  // Runs fn on a thread of its own, counted so that the destructor can wait for it. Returns false (and
  // runs nothing) when the gateway is stopping or already runs max_in_flight requests.
  template <typename Fn>
  bool spawn(Fn fn) {
    {
      std::lock_guard lock(workers_mutex);
      if (stopping.load() || workers >= options.max_in_flight) return false;
      ++workers;
    }
    try {
      std::thread([self = shared_from_this(), fn = std::move(fn)]() mutable {
        {
          auto f = std::move(fn);  // what it holds (the response channel) goes before the count does
          f();
        }
        std::lock_guard lock(self->workers_mutex);
        if (--self->workers == 0) self->workers_done.notify_all();
      }).detach();
    } catch (const std::system_error& e) {
      spdlog::error("gateway: cannot start a request thread: {}", e.what());
      std::lock_guard lock(workers_mutex);
      if (--workers == 0) workers_done.notify_all();
      return false;
    }
    return true;
  }
};

void Gateway::Impl::handle(HttpRequest request, std::shared_ptr<ResponseChannel> channel) {
  std::string path = request.target.substr(0, request.target.find('?'));
  if (path == "/healthz") {
    channel->respond(200, "application/json", R"({"status":"ok"})");
    return;
  }
  if (path == "/metrics") {
    channel->respond(200, "text/plain; version=0.0.4", render_metrics());
    return;
  }
  if (path == "/v1/models") {
    json data = json::array();
    for (const auto& r : routes->all())
      data.push_back({{"id", r->api}, {"object", "model"}, {"owned_by", r->deployment}});
    channel->respond(200, "application/json", json{{"object", "list"}, {"data", data}}.dump());
    return;
  }
  std::shared_ptr<const Route> route;
  std::string upstream_path;
  if (path == "/v1/completions") {
    if (request.method != "POST") {
      channel->respond(405, "application/json", error_body("use POST for " + path, "invalid_request_error"),
                       {{"Allow", "POST"}});
      return;
    }
    json body = json::parse(request.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      channel->respond(400, "application/json",
                       error_body("the request body is not a JSON object", "invalid_request_error"));
      return;
    }
    auto model = body.find("model");
    if (model == body.end() || !model->is_string()) {
      channel->respond(400, "application/json",
                       error_body("'model' must name a deployed API (see GET /v1/models)",
                                  "invalid_request_error", "model"));
      return;
    }
    route = routes->find(model->get<std::string>());
    if (!route) {
      channel->respond(404, "application/json",
                       error_body("no API named '" + model->get<std::string>() + "' is deployed",
                                  "invalid_request_error", "model"));
      return;
    }
    upstream_path = "/v1/completions";
  } else {
    // /<deployment>/<api>
    auto slash = path.find('/', 1);
    std::string deployment = slash == std::string::npos ? "" : path.substr(1, slash - 1);
    std::string api = slash == std::string::npos ? "" : path.substr(slash + 1);
    route = api.empty() ? nullptr : routes->find(api);
    if (!route || route->deployment != deployment) {
      channel->respond(
          404, "application/json",
          error_body("no API at " + path + " (routes are /<deployment>/<api>)", "not_found_error"));
      return;
    }
    if (request.method != "POST") {
      channel->respond(405, "application/json", error_body("use POST for " + path, "invalid_request_error"),
                       {{"Allow", "POST"}});
      return;
    }
    upstream_path = "/predict";
  }
  if (!route->api_key.empty()) {
    std::string given;
    if (auto it = request.headers.find("authorization"); it != request.headers.end()) {
      if (it->second.rfind("Bearer ", 0) == 0) given = it->second.substr(7);
    }
    if (auto it = request.headers.find("x-api-key"); it != request.headers.end()) given = it->second;
    if (given != route->api_key) {
      channel->respond(401, "application/json",
                       error_body("this API needs its key: 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                                  "authentication_error"),
                       {{"WWW-Authenticate", "Bearer"}});
      return;
    }
  }
  bool started = spawn([this, route, upstream_path, request = std::move(request), channel]() mutable {
    proxy(route, upstream_path, std::move(request), channel);
  });
  if (!started)
    channel->respond(
        503, "application/json",
        error_body(stopping.load() ? "the gateway is shutting down" : "the gateway is at its request limit",
                   "server_unavailable"),
        {{"Retry-After", "1"}});
}

void Gateway::Impl::proxy(std::shared_ptr<const Route> route, std::string path, HttpRequest request,
                          std::shared_ptr<ResponseChannel> channel) {
  auto start = SteadyClock::now();
  auto traffic = route->traffic;
  ++traffic->in_flight;
  std::set<std::string> tried;
  int final_status = 0;
  bool busy = false;         // a replica answered 503 (its queue was full)
  bool unreachable = false;  // a replica could not be connected to
  while (!stopping.load()) {
    // The route may have changed since the last attempt (a replica became ready or went away).
    auto current = routes->find(route->api);
    const Backend* pick = nullptr;
    if (current) {
      for (const auto& b : current->backends) {
        if (tried.count(b.replica_id)) continue;
        if (!pick || b.outstanding->load() < pick->outstanding->load()) pick = &b;
      }
    }
    if (!pick) {
      std::string message = busy ? "every replica of API '" + route->api + "' is busy; retry shortly"
                            : unreachable
                                ? "no replica of API '" + route->api + "' could be reached; retry shortly"
                            : current && !current->unavailable.empty()
                                ? current->unavailable
                                : "API '" + route->api + "' has no ready replica yet; retry shortly";
      final_status = 503;
      channel->respond(503, "application/json", error_body(message, "server_unavailable"),
                       {{"Retry-After", "1"}});
      break;
    }
    Backend backend = *pick;
    tried.insert(backend.replica_id);
    ++*backend.outstanding;
    // The reconciler stops a drained replica once nothing is outstanding on it: count first, then make
    // sure it is still routed (if it was taken off meanwhile, it may be stopping: pick again).
    auto now_route = routes->find(route->api);
    bool still_routed =
        now_route && std::any_of(now_route->backends.begin(), now_route->backends.end(),
                                 [&](const Backend& b) { return b.replica_id == backend.replica_id; });
    if (!still_routed) {
      --*backend.outstanding;
      continue;
    }
    Attempt a;
    a.channel = channel;
    a.curl = curl_pool.take();
    a.stopping = &stopping;
    CURL* h = a.curl;
    std::string url = backend.endpoint + path;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options.request_timeout.count() * 1000 + 5000));
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &a);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_pool.give_back(h);
    --*backend.outstanding;
    if (a.client_gone) {
      final_status = 499;  // client closed the request (nginx's convention), counted as 4xx
      break;
    }
    if (a.streaming) {
      // The stream has begun: whatever happened, end it (a replica that died leaves it short).
      if (rc != CURLE_OK) {
        spdlog::warn("gateway: stream from {} broke: {}", backend.replica_id, curl_easy_strerror(rc));
        channel->write("data: " + error_body("the replica failed mid-stream", "server_error") + "\n\n");
      }
      channel->end();
      final_status = rc == CURLE_OK ? 200 : 502;
      break;
    }
    if (rc != CURLE_OK) {
      // Nothing reached the client: the same request can go to another replica.
      spdlog::warn("gateway: replica {} failed ({}); trying another", backend.replica_id,
                   curl_easy_strerror(rc));
      continue;
    }
    if (status == 503) {
      busy = true;
      continue;
    }
    std::map<std::string, std::string> headers_out;
    if (!a.retry_after.empty()) headers_out["Retry-After"] = a.retry_after;
    final_status = static_cast<int>(status);
    channel->respond(final_status, a.content_type.empty() ? "application/json" : a.content_type,
                     std::move(a.body), headers_out);
    break;
  }
  if (stopping.load() && final_status == 0) {
    final_status = 503;
    channel->respond(503, "application/json",
                     error_body("the gateway is shutting down", "server_unavailable"),
                     {{"Retry-After", "1"}});
  }
  double seconds = seconds_since(start);
  traffic->finished(final_status, seconds);
  histogram(route->api).observe(seconds);
  --traffic->in_flight;
}

std::string Gateway::Impl::render_metrics() {
  std::ostringstream out;
  auto all = routes->all();
  out << "# HELP cortex_gateway_requests_total Requests answered by the gateway, by API and status class.\n"
      << "# TYPE cortex_gateway_requests_total counter\n";
  for (const auto& r : all) {
    out << "cortex_gateway_requests_total{api=\"" << r->api << "\",code=\"2xx\"} " << r->traffic->status_2xx
        << "\n"
        << "cortex_gateway_requests_total{api=\"" << r->api << "\",code=\"4xx\"} " << r->traffic->status_4xx
        << "\n"
        << "cortex_gateway_requests_total{api=\"" << r->api << "\",code=\"5xx\"} " << r->traffic->status_5xx
        << "\n";
  }
  out << "# HELP cortex_gateway_in_flight Requests in flight at the gateway, by API.\n"
      << "# TYPE cortex_gateway_in_flight gauge\n";
  for (const auto& r : all)
    out << "cortex_gateway_in_flight{api=\"" << r->api << "\"} " << r->traffic->in_flight << "\n";
  out << "# HELP cortex_gateway_ready_replicas Replicas taking requests, by API.\n"
      << "# TYPE cortex_gateway_ready_replicas gauge\n";
  for (const auto& r : all)
    out << "cortex_gateway_ready_replicas{api=\"" << r->api << "\"} " << r->backends.size() << "\n";
  out << "# HELP cortex_gateway_request_duration_seconds Time from request to the end of the response.\n"
      << "# TYPE cortex_gateway_request_duration_seconds histogram\n";
  for (const auto& r : all) {
    std::string text = histogram(r->api).render("cortex_gateway_request_duration_seconds");
    // Label each series with its API.
    std::string labelled;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      auto brace = line.find('{');
      auto space = line.find(' ');
      if (brace != std::string::npos && brace < space)
        line.insert(brace + 1, "api=\"" + r->api + "\",");
      else if (space != std::string::npos)
        line.insert(space, "{api=\"" + r->api + "\"}");
      labelled += line + "\n";
    }
    out << labelled;
  }
  return out.str();
}

std::unique_ptr<Gateway> Gateway::start(const GatewayOptions& options, std::shared_ptr<RoutingTable> routes) {
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  auto impl = std::make_shared<Impl>();
  impl->options = options;
  impl->routes = std::move(routes);
  serving::HttpServerOptions http;
  http.host = options.host;
  http.port = options.port;
  http.max_body_bytes = options.max_body_bytes;
  Impl* raw = impl.get();
  impl->server =
      serving::HttpServer::start(http, [raw](HttpRequest request, std::shared_ptr<ResponseChannel> channel) {
        raw->handle(std::move(request), std::move(channel));
      });
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

Gateway::~Gateway() {
  {
    std::lock_guard lock(impl_->workers_mutex);  // no request thread starts after this
    impl_->stopping = true;
  }
  {
    std::unique_lock lock(impl_->workers_mutex);
    impl_->workers_done.wait(lock, [&] { return impl_->workers == 0; });
  }
  impl_->server.reset();
}

int Gateway::port() const {
  return impl_->server->port();
}

}  // namespace cortex::control
