// What the gateway routes to: for each API, its deployment, its API key and the replicas ready to take
// requests. The reconciler publishes a new route whenever a replica becomes ready, starts draining or
// stops; the gateway reads routes per request. Traffic counters live here too, shared by both: the
// gateway counts, the autoscaler and `cortex get` read. Thread-safe.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace cortex::control {

// Requests of one API, counted at the gateway.
struct ApiTraffic {
  std::atomic<int64_t> in_flight{0};
  std::atomic<uint64_t> status_2xx{0}, status_4xx{0}, status_5xx{0};
  std::atomic<uint64_t> latency_count{0};
  std::atomic<uint64_t> latency_micros{0};  // sum
  void finished(int status, double seconds) {
    (status >= 500 || status == 0 ? status_5xx : status >= 400 ? status_4xx : status_2xx)++;
    latency_count++;
    latency_micros += static_cast<uint64_t>(seconds * 1e6);
  }
  double average_latency_seconds() const {
    uint64_t n = latency_count.load();
    return n ? static_cast<double>(latency_micros.load()) / 1e6 / static_cast<double>(n) : 0.0;
  }
};

struct Backend {
  std::string replica_id;
  std::string endpoint;                           // http://127.0.0.1:PORT
  std::shared_ptr<std::atomic<int>> outstanding;  // requests the gateway has sent it and not finished
};

struct Route {
  std::string deployment;
  std::string api;
  std::string api_key;  // empty: none required
  std::vector<Backend> backends;
  std::shared_ptr<ApiTraffic> traffic;
  std::string unavailable;  // why no replica will be ready soon (compute unavailable, error), or ""
};

class RoutingTable {
 public:
  void put(Route route) {
    std::string name = route.api;
    auto shared = std::make_shared<const Route>(std::move(route));
    std::lock_guard lock(mutex_);
    routes_[name] = std::move(shared);
  }
  void remove(const std::string& api) {
    std::lock_guard lock(mutex_);
    routes_.erase(api);
  }
  std::shared_ptr<const Route> find(const std::string& api) const {
    std::lock_guard lock(mutex_);
    auto it = routes_.find(api);
    return it == routes_.end() ? nullptr : it->second;
  }
  std::vector<std::shared_ptr<const Route>> all() const {
    std::lock_guard lock(mutex_);
    std::vector<std::shared_ptr<const Route>> out;
    for (const auto& [name, route] : routes_) out.push_back(route);
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const Route>> routes_;  // by API name
};

}  // namespace cortex::control
