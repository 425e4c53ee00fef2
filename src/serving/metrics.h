// Prometheus metrics of a replica: requests by route and status code, in-flight requests, latency and
// time-to-first-token histograms, generated tokens; queue length and batch size are read at scrape time.
// Thread-safe.
#pragma once

#include <array>
#include <map>
#include <mutex>
#include <string>

namespace cortex::serving {

class Histogram {
 public:
  static constexpr std::array<double, 11> kBuckets = {0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  void observe(double v);
  // Prometheus text lines for metric `name` (the caller writes HELP/TYPE).
  std::string render(const std::string& name) const;

 private:
  mutable std::mutex mutex_;
  std::array<uint64_t, kBuckets.size()> counts_{};
  uint64_t count_ = 0;
  double sum_ = 0;
};

class Metrics {
 public:
  void request_started();
  void request_finished(const std::string& route, int status, double seconds);
  void first_token(double seconds) { ttft_.observe(seconds); }
  void tokens_generated(int n);
  std::string render(int queued, int active) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (route, status) -> count
  int64_t in_flight_ = 0;
  uint64_t tokens_ = 0;
  Histogram latency_, ttft_;
};

}  // namespace cortex::serving
