// The reconciler: makes the replicas that run match what is deployed. Every tick it looks at each API's
// replicas through the provider, and:
//   - starts replicas up to the requested count (the autoscaler's, within min/max), with backoff after
//     failures; an API whose replicas keep failing is in status `error` with the last log lines;
//   - marks a replica ready once its /readyz answers, and publishes the ready ones to the gateway;
//   - rolls replicas over when the spec they run changed (new ones ready before old ones drain);
//   - drains surplus or outdated replicas: off the gateway first, stopped once their outstanding
//     requests have finished.
// Replica lifecycle: starting → ready → draining → stopping → (gone); starting → stopping on a timeout.
//
// Threading: one loop thread does all the work; the public methods take the same mutex, so they wait
// for at most one tick. Probes of replicas (HTTP) run on the loop thread without the mutex.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/autoscaler.h"
#include "control/model_download.h"
#include "control/replica_provider.h"
#include "control/routing_table.h"
#include "control/state_store.h"
#include "util/clock.h"

namespace cortex::control {

struct ReconcilerOptions {
  std::chrono::milliseconds tick{200};
  std::chrono::milliseconds autoscale_interval{1000};
  std::chrono::seconds startup_timeout{300};
  std::chrono::seconds drain_timeout{310};
  std::chrono::milliseconds stop_grace{10'000};
  int failures_before_error = 3;  // consecutive failed starts before the API's status is `error`
  std::chrono::milliseconds health_interval{5000};  // /healthz of ready replicas
  int health_failures_before_restart = 3;
  std::string model_cache_dir;  // where remote models are downloaded; empty: $CORTEX_HOME/cache
};

struct ReplicaView {
  std::string id;
  std::string state;  // starting, ready, draining, stopping
  bool up_to_date = true;
  std::string endpoint;
  int pid = 0;
  int outstanding = 0;
  double age_seconds = 0;
  std::string log_path;
};

struct ApiView {
  StoredApi stored;
  std::string status;  // live, updating, error, error (out of memory), compute unavailable
  std::string reason;  // why it is not live (empty when live)
  int requested = 0;
  int ready = 0;             // replicas taking requests
  int up_to_date_ready = 0;  // of those, running the current spec
  std::vector<ReplicaView> replicas;
  std::vector<std::string> last_log_lines;  // of the last replica that failed
  std::vector<std::string> log_paths;       // of current replicas
  Autoscaler::Decision autoscaling;
  int64_t in_flight = 0;
  uint64_t status_2xx = 0, status_4xx = 0, status_5xx = 0;
  double average_latency_seconds = 0;
  // A remote model being downloaded (download_active), how far it got.
  bool download_active = false;
  storage::FetchProgress download;
};

enum class ApplyResult { kCreated, kUpdated, kUpToDate, kDeleted };
std::string to_string(ApplyResult r);

class Reconciler {
 public:
  Reconciler(StateStore& store, ReplicaProvider& provider, std::shared_ptr<RoutingTable> routes,
             ReconcilerOptions options = {});
  ~Reconciler();  // stops the loop and every replica (see shutdown)

  // Loads the deployed APIs from the store and starts the loop.
  void start();
  // Stops every replica (SIGTERM, then SIGKILL after the grace period) and the loop. Idempotent.
  void shutdown();

  // Records a deployment: new APIs are created, changed ones updated (their replicas roll over if what
  // they run changed), APIs of this deployment that the config no longer has are deleted. Throws Error
  // (kInvalidArgument) when an API name belongs to another deployment; nothing changes then.
  std::vector<std::pair<std::string, ApplyResult>> apply(const DeploymentSpec& deployment);
  bool remove(const std::string& api);   // false when no such API
  bool refresh(const std::string& api);  // rolls its replicas over; false when no such API

  std::vector<ApiView> views();
  std::optional<ApiView> view(const std::string& api);

 private:
  struct Replica {
    std::string id;
    std::string template_id;
    enum State { kStarting, kReady, kDraining, kStopping } state = kStarting;
    std::string endpoint;
    int pid = 0;
    SteadyClock::time_point started;
    SteadyClock::time_point draining_since;
    std::shared_ptr<std::atomic<int>> outstanding = std::make_shared<std::atomic<int>>(0);
    bool answered_ready = false;  // the last /readyz probe succeeded
    int health_failures = 0;      // /healthz probes failed in a row (ready replicas)
    SteadyClock::time_point last_health_check;
  };
  // An HTTP probe of one replica, made without holding mutex_.
  struct Probe {
    std::string api, replica_id, url;
    bool health = false;  // /healthz of a ready replica (else /readyz of a starting one)
    bool ok = false;
  };
  struct Api {
    StoredApi stored;
    bool deleted = false;  // removed from the store; replicas are draining
    std::vector<Replica> replicas;
    std::unique_ptr<Autoscaler> autoscaler;
    std::shared_ptr<ApiTraffic> traffic = std::make_shared<ApiTraffic>();
    int consecutive_failures = 0;
    bool last_failure_oom = false;
    std::string last_failure;
    std::vector<std::string> last_log_lines;
    SteadyClock::time_point next_start;
    SteadyClock::time_point last_autoscale;
    // Remote models: the download for the current replica template, and when a failed one is retried.
    std::unique_ptr<ModelDownload> download;
    std::string download_template;
    std::string download_settings;  // the spec it was started with
    SteadyClock::time_point download_retry_at;
    int download_failures = 0;
  };

  void loop();
  void tick();
  std::vector<Probe> probes_due(SteadyClock::time_point now);
  void apply_probes(const std::vector<Probe>& probes, SteadyClock::time_point now);
  void fail_replica(Api& api, Replica& r, const std::string& why, SteadyClock::time_point now);
  void tick_api(Api& api, SteadyClock::time_point now);
  void observe(Api& api, Replica& r, SteadyClock::time_point now);
  void converge(Api& api, SteadyClock::time_point now);
  void autoscale(Api& api, SteadyClock::time_point now);
  void publish(const Api& api);
  void start_replica(Api& api, const std::string& model_path);
  // For a remote model: starts or follows its download; the local path once it is there, "" before.
  std::string model_ready(Api& api, SteadyClock::time_point now);
  void drain(Replica& r, SteadyClock::time_point now);
  void reset_autoscaler(Api& api);
  ApiView make_view(const Api& api);
  std::string status_of(const Api& api, std::string* reason) const;
  std::string new_replica_id(const std::string& api);

  StateStore& store_;
  ReplicaProvider& provider_;
  std::shared_ptr<RoutingTable> routes_;
  ReconcilerOptions options_;
  std::mutex mutex_;  // guards everything below
  std::map<std::string, Api> apis_;
  uint64_t next_replica_ = 0;
  bool stopping_ = false;
  bool shut_down_ = false;
  std::condition_variable wake_;
  std::thread thread_;
};

// The fingerprint of what a replica of `spec` runs (model, handler, compute, generation settings, and
// the size and modification time of the model's and handler's files), so that a change rolls replicas.
std::string replica_template_of(const ApiSpec& spec);

}  // namespace cortex::control
