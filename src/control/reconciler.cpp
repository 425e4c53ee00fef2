#include "control/reconciler.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "storage/model_uri.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::control {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string to_string(ApplyResult r) {
  switch (r) {
    case ApplyResult::kCreated:
      return "created";
    case ApplyResult::kUpdated:
      return "updated";
    case ApplyResult::kUpToDate:
      return "up to date";
    case ApplyResult::kDeleted:
      return "deleted";
  }
  return "?";
}

namespace {

// Size and modification time of a file, or of every file under a folder.
void fingerprint_path(const std::string& path, json& out) {
  std::error_code ec;
  if (path.empty() || path.find("://") != std::string::npos) return;
  auto add = [&](const fs::path& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0)
      out[p.string()] = std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec) + "." +
                        std::to_string(st.st_mtim.tv_nsec);
  };
  if (fs::is_directory(path, ec)) {
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.is_regular_file(ec)) add(e.path());
  } else {
    add(path);
  }
}

std::vector<std::string> tail_lines(const std::string& path, size_t n) {
  constexpr size_t kMaxBytes = 16384;
  std::string text = read_file_tail(path, kMaxBytes);
  bool cut = text.size() == kMaxBytes;
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  if (cut && !lines.empty()) lines.erase(lines.begin());  // probably cut in the middle
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - static_cast<std::ptrdiff_t>(n));
  return lines;
}

// The replica count an API should run: what the autoscaler last asked for, within its min and max.
int desired_replicas(const StoredApi& api) {
  return std::clamp(api.requested_replicas, api.spec.compute.min_replicas, api.spec.compute.max_replicas);
}

std::string describe_exit(int code) {
  if (code > 128) return "killed by signal " + std::to_string(code - 128);
  return "exited with status " + std::to_string(code);
}

}  // namespace

std::string replica_template_of(const ApiSpec& spec) {
  json j = to_json(spec);
  // What does not change a replica: how many there are, how they scale, who may call them.
  j.erase("autoscaling");
  j.erase("api_key");
  j.erase("model_env");  // used by the operator's download only
  j["compute"].erase("min_replicas");
  j["compute"].erase("max_replicas");
  j["compute"].erase("init_replicas");
  json files = json::object();
  fingerprint_path(spec.model, files);
  fingerprint_path(spec.request_handler, files);
  j["files"] = files;
  size_t h = std::hash<std::string>{}(j.dump());
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016zx", h);
  return buf;
}

Reconciler::Reconciler(StateStore& store, ReplicaProvider& provider, std::shared_ptr<RoutingTable> routes,
                       ReconcilerOptions options)
    : store_(store), provider_(provider), routes_(std::move(routes)), options_(options) {}

Reconciler::~Reconciler() {
  shutdown();
}

void Reconciler::reset_autoscaler(Api& api) {
  const ApiSpec& s = api.stored.spec;
  double target = s.autoscaling.target_replica_concurrency > 0 ? s.autoscaling.target_replica_concurrency
                                                               : static_cast<double>(s.max_concurrency);
  api.autoscaler =
      std::make_unique<Autoscaler>(s.autoscaling, s.compute.min_replicas, s.compute.max_replicas, target);
}

void Reconciler::start() {
  std::lock_guard lock(mutex_);
  for (auto& stored : store_.apis()) {
    Api api;
    api.stored = stored;
    reset_autoscaler(api);
    std::string name = stored.spec.name;
    apis_[name] = std::move(api);
    publish(apis_[name]);
  }
  thread_ = std::thread([this] { loop(); });
}

void Reconciler::shutdown() {
  {
    std::unique_lock lock(mutex_);
    if (shut_down_) return;
    shut_down_ = true;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mutex_);
  // Stop every replica and wait (bounded by the grace period) for them to exit.
  for (auto& [name, api] : apis_) {
    // The gateway answers 503 (not 404: the API still exists) while the replicas stop.
    Route route;
    route.deployment = api.stored.deployment;
    route.api = name;
    route.api_key = api.stored.spec.api_key;
    route.traffic = api.traffic;
    route.unavailable = "the operator is shutting down";
    routes_->put(std::move(route));
    for (auto& r : api.replicas) provider_.stop(r.id, options_.stop_grace);
  }
  auto deadline = SteadyClock::now() + options_.stop_grace + std::chrono::seconds(2);
  for (auto& [name, api] : apis_) {
    for (auto& r : api.replicas) {
      while (provider_.poll(r.id).running && SteadyClock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      provider_.forget(r.id);
      store_.delete_replica(r.id);
    }
    api.replicas.clear();
  }
}

void Reconciler::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    tick();
    // Probe replicas without the lock, so that the CLI is never kept waiting by a slow replica.
    auto probes = probes_due(SteadyClock::now());
    if (!probes.empty()) {
      lock.unlock();
      for (auto& p : probes) {
        HttpCall call;
        call.url = p.url;
        call.timeout = std::chrono::milliseconds(p.health ? 2000 : 500);
        call.connect_timeout = std::chrono::milliseconds(500);
        p.ok = http_call(call).status == 200;
      }
      lock.lock();
      apply_probes(probes, SteadyClock::now());
    }
    wake_.wait_for(lock, options_.tick, [&] { return stopping_; });
  }
}

void Reconciler::tick() {
  auto now = SteadyClock::now();
  for (auto it = apis_.begin(); it != apis_.end();) {
    try {
      tick_api(it->second, now);
    } catch (const std::exception& e) {  // one API's trouble (a state store error) does not stop the others
      spdlog::error("reconciler: api {}: {}", it->first, e.what());
    }
    if (it->second.deleted && it->second.replicas.empty())
      it = apis_.erase(it);
    else
      ++it;
  }
}

std::vector<Reconciler::Probe> Reconciler::probes_due(SteadyClock::time_point now) {
  std::vector<Probe> probes;
  for (auto& [name, api] : apis_)
    for (auto& r : api.replicas) {
      if (r.endpoint.empty()) continue;
      if (r.state == Replica::kStarting) {
        probes.push_back({name, r.id, r.endpoint + "/readyz", false, false});
      } else if (r.state == Replica::kReady && now - r.last_health_check >= options_.health_interval) {
        r.last_health_check = now;
        probes.push_back({name, r.id, r.endpoint + "/healthz", true, false});
      }
    }
  return probes;
}

void Reconciler::apply_probes(const std::vector<Probe>& probes, SteadyClock::time_point now) {
  for (const auto& p : probes) {
    auto it = apis_.find(p.api);
    if (it == apis_.end()) continue;
    for (auto& r : it->second.replicas) {
      if (r.id != p.replica_id) continue;
      if (!p.health) {
        r.answered_ready = p.ok;
      } else if (r.state == Replica::kReady) {
        r.health_failures = p.ok ? 0 : r.health_failures + 1;
        if (r.health_failures >= options_.health_failures_before_restart)
          fail_replica(it->second, r,
                       "did not answer /healthz " + std::to_string(r.health_failures) + " times", now);
      }
    }
  }
}

// A replica that is alive but not working (never ready in time, or no longer answering): stopped and
// counted as a failure; the next tick starts a replacement.
void Reconciler::fail_replica(Api& api, Replica& r, const std::string& why, SteadyClock::time_point now) {
  api.last_failure = "replica " + r.id + " " + why;
  api.last_log_lines = tail_lines(provider_.log_path(api.stored.spec.name, r.id), 12);
  api.last_failure_oom = false;
  api.consecutive_failures++;
  auto backoff = std::chrono::milliseconds(500) * (1 << std::min(api.consecutive_failures - 1, 6));
  api.next_start = now + std::min<std::chrono::milliseconds>(backoff, std::chrono::seconds(30));
  spdlog::warn("api {}: {}", api.stored.spec.name, api.last_failure);
  provider_.stop(r.id, options_.stop_grace);
  r.state = Replica::kStopping;
  store_.add_event(api.stored.spec.name, api.last_failure);
}

void Reconciler::tick_api(Api& api, SteadyClock::time_point now) {
  for (auto& r : api.replicas) observe(api, r, now);
  // Replicas that are gone.
  auto gone = std::remove_if(api.replicas.begin(), api.replicas.end(), [&](const Replica& r) {
    if (r.state != Replica::kStopping) return false;
    ReplicaStatus s = provider_.poll(r.id);
    if (s.running) return false;
    provider_.forget(r.id);
    store_.delete_replica(r.id);
    return true;
  });
  api.replicas.erase(gone, api.replicas.end());
  if (!api.deleted) autoscale(api, now);
  converge(api, now);
  publish(api);
}

void Reconciler::observe(Api& api, Replica& r, SteadyClock::time_point now) {
  if (r.state == Replica::kStopping) return;
  ReplicaStatus s = provider_.poll(r.id);
  if (!s.running) {
    // It exited without being asked to: a crash (or a failed start).
    std::string log = provider_.log_path(api.stored.spec.name, r.id);
    api.last_log_lines = tail_lines(log, 12);
    api.last_failure = "replica " + r.id + " " + describe_exit(s.exit_code) +
                       (r.state == Replica::kStarting ? " while starting" : "");
    api.last_failure_oom = s.exit_code == 128 + 9;
    api.consecutive_failures++;  // reset when a replica becomes ready
    auto backoff = std::chrono::milliseconds(500) * (1 << std::min(api.consecutive_failures - 1, 6));
    api.next_start = now + std::min<std::chrono::milliseconds>(backoff, std::chrono::seconds(30));
    r.state = Replica::kStopping;  // removed on this tick
    spdlog::warn("api {}: {}", api.stored.spec.name, api.last_failure);
    store_.add_event(api.stored.spec.name, api.last_failure);
    return;
  }
  r.pid = s.pid;
  if (r.endpoint.empty()) r.endpoint = s.endpoint;
  if (r.state == Replica::kStarting) {
    if (r.answered_ready) {
      r.state = Replica::kReady;
      r.last_health_check = now;
      api.consecutive_failures = 0;
      store_.add_event(api.stored.spec.name, "replica " + r.id + " is ready at " + r.endpoint);
      return;
    }
    if (now - r.started > options_.startup_timeout)
      fail_replica(api, r, "was not ready within " + std::to_string(options_.startup_timeout.count()) + " s",
                   now);
  } else if (r.state == Replica::kDraining) {
    if (r.outstanding->load() == 0 || now - r.draining_since > options_.drain_timeout) {
      provider_.stop(r.id, options_.stop_grace);
      r.state = Replica::kStopping;
    }
  }
}

void Reconciler::autoscale(Api& api, SteadyClock::time_point now) {
  api.autoscaler->record(now, static_cast<double>(api.traffic->in_flight.load()));
  if (now - api.last_autoscale < options_.autoscale_interval) return;
  api.last_autoscale = now;
  int current = api.stored.requested_replicas;
  int next = api.autoscaler->recommend(now, current);
  if (next != current) {
    const auto& d = api.autoscaler->last_decision();
    std::string message = "autoscaling from " + std::to_string(current) + " to " + std::to_string(next) +
                          " replicas (average in-flight " + std::to_string(d.avg_in_flight) + ")";
    spdlog::info("api {}: {}", api.stored.spec.name, message);
    store_.add_event(api.stored.spec.name, message);
    api.stored.requested_replicas = next;
    store_.set_requested_replicas(api.stored.spec.name, next);
  }
}

std::string Reconciler::model_ready(Api& api, SteadyClock::time_point now) {
  const ApiSpec& spec = api.stored.spec;
  if (!storage::is_remote_model(spec.model)) {
    api.download.reset();
    return spec.model;
  }
  // A new template, or other credentials/endpoint for the same one: (re)start the download.
  const std::string settings = to_json(spec).dump();
  if (!api.download || api.download_template != api.stored.replica_template ||
      api.download_settings != settings) {
    api.download = std::make_unique<ModelDownload>(spec, options_.model_cache_dir);
    api.download_settings = settings;
    api.download_template = api.stored.replica_template;
    api.download_failures = 0;
    api.download_retry_at = {};
  }
  ModelDownload::State st = api.download->state();
  if (st.phase == ModelDownload::Phase::kDone) return st.local_path;
  if (st.phase == ModelDownload::Phase::kFailed) {
    if (api.download_retry_at == SteadyClock::time_point{}) {
      // First time this failure is seen: schedule the retry (5 s, doubling to 5 min).
      api.download_failures++;
      const auto delay = std::chrono::seconds(std::min(300, 5 << std::min(6, api.download_failures - 1)));
      api.download_retry_at = now + delay;
      store_.add_event(spec.name, "cannot fetch model " + spec.model + ": " + st.error);
    } else if (now >= api.download_retry_at) {
      int failures = api.download_failures;
      api.download = std::make_unique<ModelDownload>(spec, options_.model_cache_dir);
      api.download_failures = failures;
      api.download_retry_at = {};
    }
  }
  return "";
}

void Reconciler::start_replica(Api& api, const std::string& model_path) {
  Replica r;
  r.id = new_replica_id(api.stored.spec.name);
  r.template_id = api.stored.replica_template;
  r.started = SteadyClock::now();
  try {
    ApiSpec launch = api.stored.spec;
    launch.model = model_path;  // a remote model's local copy
    launch.model_env.reset();   // the replica downloads nothing
    provider_.start({r.id, launch});
  } catch (const std::exception& e) {
    api.last_failure = std::string("cannot start a replica: ") + e.what();
    api.consecutive_failures++;
    api.next_start = SteadyClock::now() + std::chrono::seconds(5);
    return;
  }
  ReplicaStatus s = provider_.poll(r.id);
  r.pid = s.pid;
  std::string id = r.id;
  api.replicas.push_back(std::move(r));  // tracked before anything else can fail
  store_.put_replica({id, api.stored.spec.name, s.pid});
}

void Reconciler::drain(Replica& r, SteadyClock::time_point now) {
  if (r.state == Replica::kStarting) {
    provider_.stop(r.id, options_.stop_grace);
    r.state = Replica::kStopping;
  } else if (r.state == Replica::kReady) {
    r.state = Replica::kDraining;
    r.draining_since = now;
  }
}

void Reconciler::converge(Api& api, SteadyClock::time_point now) {
  const ApiSpec& spec = api.stored.spec;
  int desired = api.deleted ? 0 : desired_replicas(api.stored);
  if (!provider_.compute_unavailable(spec.compute).empty()) desired = 0;
  const std::string& current = api.stored.replica_template;
  auto active = [](const Replica& r) { return r.state == Replica::kStarting || r.state == Replica::kReady; };
  int fresh = 0, fresh_ready = 0, old_ready = 0;
  for (const auto& r : api.replicas) {
    if (!active(r)) continue;
    if (r.template_id == current) {
      fresh++;
      fresh_ready += r.state == Replica::kReady;
    } else {
      old_ready += r.state == Replica::kReady;
    }
  }
  // Start what is missing (paced by the backoff after failures), once the model is here.
  if (fresh < desired) {
    const std::string model_path = model_ready(api, now);
    if (!model_path.empty() && now >= api.next_start) {
      int n = desired - fresh;
      if (api.consecutive_failures > 0) n = 1;  // while failing, one at a time
      for (int i = 0; i < n; ++i) start_replica(api, model_path);
    }
  }
  // Outdated replicas: those not ready yet go at once; ready ones drain as fresh ones take over.
  int surplus_old = std::max(0, fresh_ready + old_ready - desired);
  if (desired == 0 || fresh_ready >= desired) surplus_old = old_ready;
  for (auto& r : api.replicas) {
    if (r.template_id == current || !active(r)) continue;
    if (r.state == Replica::kStarting) {
      drain(r, now);
    } else if (surplus_old > 0) {
      drain(r, now);
      surplus_old--;
    }
  }
  // Too many current replicas (scaled down): not-ready ones first, then the least busy.
  int excess = fresh - desired;
  if (excess > 0) {
    std::vector<Replica*> candidates;
    for (auto& r : api.replicas)
      if (r.template_id == current && active(r)) candidates.push_back(&r);
    std::sort(candidates.begin(), candidates.end(), [](const Replica* a, const Replica* b) {
      if ((a->state == Replica::kStarting) != (b->state == Replica::kStarting))
        return a->state == Replica::kStarting;
      return a->outstanding->load() < b->outstanding->load();
    });
    for (int i = 0; i < excess && i < static_cast<int>(candidates.size()); ++i) drain(*candidates[i], now);
  }
}

void Reconciler::publish(const Api& api) {
  if (api.deleted) {
    routes_->remove(api.stored.spec.name);
    return;
  }
  Route route;
  route.deployment = api.stored.deployment;
  route.api = api.stored.spec.name;
  route.api_key = api.stored.spec.api_key;
  route.traffic = api.traffic;
  std::string reason;
  std::string status = status_of(api, &reason);
  if (status != "live" && status != "updating")
    route.unavailable = "API '" + api.stored.spec.name + "' is " + status + ": " + reason;
  for (const auto& r : api.replicas)
    if (r.state == Replica::kReady) route.backends.push_back({r.id, r.endpoint, r.outstanding});
  routes_->put(std::move(route));
}

std::string Reconciler::new_replica_id(const std::string& api) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%06llu", static_cast<unsigned long long>(++next_replica_));
  // Unique across operator restarts too: the ids of stored replicas are skipped.
  return api + buf + "-" + std::to_string(::getpid());
}

std::vector<std::pair<std::string, ApplyResult>> Reconciler::apply(const DeploymentSpec& deployment) {
  std::lock_guard lock(mutex_);
  // Check first, change after: a refused deployment changes nothing.
  for (const auto& spec : deployment.apis) {
    auto it = apis_.find(spec.name);
    if (it != apis_.end() && !it->second.deleted && it->second.stored.deployment != deployment.name)
      throw invalid_argument("api '" + spec.name + "' already belongs to deployment '" +
                             it->second.stored.deployment + "'; API names are unique across deployments");
  }
  std::vector<std::pair<std::string, ApplyResult>> results;
  auto now_s = static_cast<int64_t>(std::time(nullptr));
  for (const auto& spec : deployment.apis) {
    std::string tmpl = replica_template_of(spec);
    auto it = apis_.find(spec.name);
    if (it == apis_.end() || it->second.deleted) {
      Api& api = apis_[spec.name];
      bool revived = !api.replicas.empty();
      StoredApi stored;
      stored.deployment = deployment.name;
      stored.project_dir = deployment.project_dir;
      stored.spec = spec;
      stored.version = revived ? api.stored.version + 1 : 1;
      stored.replica_template = tmpl;
      stored.updated_at = now_s;
      stored.requested_replicas = spec.compute.init_replicas;
      api.stored = stored;
      api.deleted = false;
      api.consecutive_failures = 0;
      api.next_start = {};
      api.download.reset();  // a new API checks its remote model again
      reset_autoscaler(api);
      store_.put_api(stored);
      store_.add_event(spec.name, "created (version " + std::to_string(stored.version) + ")");
      results.emplace_back(spec.name, ApplyResult::kCreated);
      publish(api);
      continue;
    }
    Api& api = it->second;
    if (to_json(api.stored.spec) == to_json(spec) && api.stored.replica_template.rfind(tmpl, 0) == 0 &&
        api.stored.project_dir == deployment.project_dir) {
      results.emplace_back(spec.name, ApplyResult::kUpToDate);
      continue;
    }
    bool scaling_changed = to_json(api.stored.spec)["compute"] != to_json(spec)["compute"] ||
                           to_json(api.stored.spec)["autoscaling"] != to_json(spec)["autoscaling"];
    api.stored.spec = spec;
    api.stored.project_dir = deployment.project_dir;
    api.stored.version++;
    // Other model settings or credentials: a download started with the old ones is replaced (and its
    // failure forgotten) on the next tick.
    if (api.download && api.download_settings != to_json(spec).dump()) api.download.reset();
    api.stored.updated_at = now_s;
    if (api.stored.replica_template.rfind(tmpl, 0) != 0) {
      api.stored.replica_template = tmpl;
      api.consecutive_failures = 0;
      api.next_start = {};
    }
    if (scaling_changed) {
      api.stored.requested_replicas = desired_replicas(api.stored);
      reset_autoscaler(api);
    }
    store_.put_api(api.stored);
    store_.add_event(spec.name, "updated (version " + std::to_string(api.stored.version) + ")");
    results.emplace_back(spec.name, ApplyResult::kUpdated);
    publish(api);
  }
  // APIs of this deployment that the config no longer lists.
  for (auto& [name, api] : apis_) {
    if (api.deleted || api.stored.deployment != deployment.name) continue;
    bool listed = std::any_of(deployment.apis.begin(), deployment.apis.end(),
                              [&](const ApiSpec& s) { return s.name == name; });
    if (listed) continue;
    api.deleted = true;
    store_.delete_api(name);
    store_.add_event(name, "deleted");
    publish(api);
    results.emplace_back(name, ApplyResult::kDeleted);
  }
  wake_.notify_all();
  return results;
}

bool Reconciler::remove(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = apis_.find(name);
  if (it == apis_.end() || it->second.deleted) return false;
  it->second.deleted = true;
  store_.delete_api(name);
  store_.add_event(name, "deleted");
  publish(it->second);
  wake_.notify_all();
  return true;
}

bool Reconciler::refresh(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = apis_.find(name);
  if (it == apis_.end() || it->second.deleted) return false;
  Api& api = it->second;
  // A new template id (same spec) makes every replica outdated: they roll over.
  api.stored.replica_template =
      replica_template_of(api.stored.spec) + "+r" + std::to_string(api.stored.version + 1);
  api.stored.version++;
  api.stored.updated_at = static_cast<int64_t>(std::time(nullptr));
  api.consecutive_failures = 0;
  api.next_start = {};
  store_.put_api(api.stored);
  store_.add_event(name, "refresh requested (version " + std::to_string(api.stored.version) + ")");
  wake_.notify_all();
  return true;
}

std::string Reconciler::status_of(const Api& api, std::string* reason) const {
  std::string unavailable = provider_.compute_unavailable(api.stored.spec.compute);
  if (!unavailable.empty()) {
    *reason = unavailable;
    return "compute unavailable";
  }
  int desired = desired_replicas(api.stored);
  int fresh_ready = 0;
  bool outdated = false;
  for (const auto& r : api.replicas) {
    if (r.template_id == api.stored.replica_template)
      fresh_ready += r.state == Replica::kReady;
    else if (r.state == Replica::kReady || r.state == Replica::kStarting)
      outdated = true;
  }
  if (api.consecutive_failures >= options_.failures_before_error) {
    *reason = api.last_failure;
    return api.last_failure_oom ? "error (out of memory)" : "error";
  }
  if (api.download && api.download_template == api.stored.replica_template && fresh_ready < desired) {
    ModelDownload::State st = api.download->state();
    if (st.phase == ModelDownload::Phase::kFailed) {
      *reason = "cannot fetch model " + api.stored.spec.model + ": " + st.error +
                " (retried automatically; `cortex refresh` retries now)";
      return "error";
    }
    if (st.phase == ModelDownload::Phase::kRunning) {
      *reason = "downloading model " + api.stored.spec.model + ": " + ModelDownload::describe(st.progress);
      return "updating";
    }
  }
  if (fresh_ready >= desired && !outdated) return "live";
  *reason = fresh_ready < desired
                ? std::to_string(fresh_ready) + " of " + std::to_string(desired) + " replicas ready" +
                      (api.last_failure.empty() ? "" : "; last failure: " + api.last_failure)
                : "replacing outdated replicas";
  return "updating";
}

ApiView Reconciler::make_view(const Api& api) {
  ApiView v;
  v.stored = api.stored;
  v.status = status_of(api, &v.reason);
  if (api.download && api.download_template == api.stored.replica_template) {
    ModelDownload::State st = api.download->state();
    v.download_active = st.phase == ModelDownload::Phase::kRunning;
    v.download = st.progress;
  }
  v.requested = desired_replicas(api.stored);
  auto now = SteadyClock::now();
  static const char* kStates[] = {"starting", "ready", "draining", "stopping"};
  for (const auto& r : api.replicas) {
    ReplicaView rv;
    rv.id = r.id;
    rv.state = kStates[r.state];
    rv.up_to_date = r.template_id == api.stored.replica_template;
    rv.endpoint = r.endpoint;
    rv.pid = r.pid;
    rv.outstanding = r.outstanding->load();
    rv.age_seconds = std::chrono::duration<double>(now - r.started).count();
    rv.log_path = provider_.log_path(api.stored.spec.name, r.id);
    v.log_paths.push_back(rv.log_path);
    v.ready += r.state == Replica::kReady;
    v.up_to_date_ready += r.state == Replica::kReady && rv.up_to_date;
    v.replicas.push_back(rv);
  }
  v.last_log_lines = api.last_log_lines;
  v.autoscaling = api.autoscaler->last_decision();
  v.in_flight = api.traffic->in_flight.load();
  v.status_2xx = api.traffic->status_2xx.load();
  v.status_4xx = api.traffic->status_4xx.load();
  v.status_5xx = api.traffic->status_5xx.load();
  v.average_latency_seconds = api.traffic->average_latency_seconds();
  return v;
}

std::vector<ApiView> Reconciler::views() {
  std::lock_guard lock(mutex_);
  std::vector<ApiView> out;
  for (const auto& [name, api] : apis_)
    if (!api.deleted) out.push_back(make_view(api));
  return out;
}

std::optional<ApiView> Reconciler::view(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = apis_.find(name);
  if (it == apis_.end() || it->second.deleted) return std::nullopt;
  return make_view(it->second);
}

}  // namespace cortex::control
