#include "serving/metrics.h"

#include <sstream>

namespace cortex::serving {

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < kBuckets.size(); ++i)
    if (v <= kBuckets[i]) ++counts_[i];
  ++count_;
  sum_ += v;
}

std::string Histogram::render(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream os;
  for (size_t i = 0; i < kBuckets.size(); ++i)
    os << name << "_bucket{le=\"" << kBuckets[i] << "\"} " << counts_[i] << "\n";
  os << name << "_bucket{le=\"+Inf\"} " << count_ << "\n"
     << name << "_sum " << sum_ << "\n"
     << name << "_count " << count_ << "\n";
  return os.str();
}

void Metrics::request_started() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++in_flight_;
}

void Metrics::request_finished(const std::string& route, int status, double seconds) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --in_flight_;
    ++requests_[{route, status}];
  }
  latency_.observe(seconds);
}

void Metrics::tokens_generated(int n) {
  std::lock_guard<std::mutex> lock(mutex_);
  tokens_ += static_cast<uint64_t>(n);
}

std::string Metrics::render(int queued, int active) const {
  std::ostringstream os;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    os << "# HELP cortex_requests_total Requests answered, by route and status code.\n"
          "# TYPE cortex_requests_total counter\n";
    for (const auto& [key, n] : requests_)
      os << "cortex_requests_total{route=\"" << key.first << "\",code=\"" << key.second << "\"} " << n
         << "\n";
    os << "# HELP cortex_requests_in_flight Requests being answered.\n# TYPE cortex_requests_in_flight "
          "gauge\n"
       << "cortex_requests_in_flight " << in_flight_ << "\n";
    os << "# HELP cortex_tokens_generated_total Tokens generated.\n# TYPE cortex_tokens_generated_total "
          "counter\n"
       << "cortex_tokens_generated_total " << tokens_ << "\n";
  }
  os << "# HELP cortex_queue_length Generation requests waiting for a slot.\n# TYPE cortex_queue_length "
        "gauge\n"
     << "cortex_queue_length " << queued << "\n";
  os << "# HELP cortex_batch_size Sequences in the running batch.\n# TYPE cortex_batch_size gauge\n"
     << "cortex_batch_size " << active << "\n";
  os << "# HELP cortex_request_duration_seconds Request latency.\n# TYPE cortex_request_duration_seconds "
        "histogram\n"
     << latency_.render("cortex_request_duration_seconds");
  os << "# HELP cortex_time_to_first_token_seconds Time from request to first generated token.\n"
        "# TYPE cortex_time_to_first_token_seconds histogram\n"
     << ttft_.render("cortex_time_to_first_token_seconds");
  return os.str();
}

}  // namespace cortex::serving
