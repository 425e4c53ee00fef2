// Cortex's request-based autoscaler for one API: from samples of the API's in-flight requests it decides
// how many replicas the API should have. Pure and clock-injected: every call takes the time, nothing reads
// a clock or sleeps, so tests drive it with hand-made time points.
//
// One recommend() tick, as in Cortex's autoscaler:
//   avg   = arithmetic mean of the in-flight samples taken in (now - window, now] (a sample average, like
//           Prometheus' avg_over_time that Cortex queries; the caller samples at a regular interval, so it
//           equals the time-weighted average up to the sampling grain). Older samples are dropped.
//   raw   = avg / target_replica_concurrency
//   rec   = ceil(raw), but `current` when raw lies strictly between current·(1 - downscale_tolerance) and
//           current·(1 + upscale_tolerance);
//           limited to [min(current - 1, ceil(current·max_downscale_factor)),
//                       max(current + 1, ceil(current·max_upscale_factor))]  (one step always allowed;
//           ceil keeps a downscale within the factor: 10 replicas at 0.75 go to 8, not 7);
//           clamped to [min_replicas, max_replicas]. rec is kept in a timestamped history.
//   result: if rec < current: max(rec, min(current, max rec in the last downscale_stabilization_period));
//           if rec > current: min(rec, max(current, min rec in the last upscale_stabilization_period));
//           a count outside [min_replicas, max_replicas] is corrected at once, whatever the above says.
// Startup (the autoscaler remembers the first time it was given, by record() or recommend()):
//   - no downscale during the first downscale_stabilization_period and no upscale during the first
//     upscale_stabilization_period (Cortex's rule: until then the history is too short to stabilize on,
//     e.g. just after an operator restart);
//   - no samples in the window: the load counts as 0, except during the first `window`, when the count is
//     held and nothing enters the history (no data is not "no load").
//
// Threading: not thread-safe; the operator calls it from one thread.
#pragma once

#include <chrono>
#include <deque>
#include <optional>
#include <string>

#include "control/api_spec.h"

namespace cortex::control {

class Autoscaler {
 public:
  using Clock = std::chrono::steady_clock;

  // `target_replica_concurrency` is the resolved target (spec.target_replica_concurrency, or the API's
  // max_concurrency when that is 0); the spec's own field is not read. Throws Error(kInvalidArgument)
  // naming the argument when target <= 0, min_replicas < 0, min_replicas > max_replicas,
  // max_replicas < 1, window <= 0, a negative stabilization period, max_upscale_factor <= 1,
  // max_downscale_factor outside [0, 1), downscale_tolerance outside [0, 1) or upscale_tolerance < 0.
  Autoscaler(const AutoscalingSpec& spec, int min_replicas, int max_replicas,
             double target_replica_concurrency);

  // One sample of the API's total in-flight requests (running + queued at the gateway) at time `now`.
  // Throws Error(kInvalidArgument) when in_flight is negative or not finite.
  void record(Clock::time_point now, double in_flight);

  // The replica count the API should have now, given the count it has (requested) now.
  // Throws Error(kInvalidArgument) when current_replicas < 0.
  int recommend(Clock::time_point now, int current_replicas);

  // What the last recommend() saw, for `cortex describe` / logs.
  struct Decision {
    double avg_in_flight = 0;  // mean of the samples in the window (0 without samples)
    double raw = 0;            // avg_in_flight / target_replica_concurrency
    int recommended = 0;       // after tolerance, step limits and min/max: what enters the history
    int stabilized = 0;        // what recommend() returned
    std::string reason;        // one line: why `stabilized` is what it is
    int current = 0;           // the current_replicas recommend() was given
    int samples = 0;           // samples in the window
  };
  // Before the first recommend(): all zeros, reason "no decision yet".
  const Decision& last_decision() const { return last_; }

 private:
  struct Sample {
    Clock::time_point at;
    double in_flight;
  };
  struct Recommendation {
    Clock::time_point at;
    int replicas;
  };

  void note_time(Clock::time_point now);
  std::optional<int> max_since(Clock::time_point now, std::chrono::milliseconds period) const;
  std::optional<int> min_since(Clock::time_point now, std::chrono::milliseconds period) const;

  AutoscalingSpec spec_;
  int min_replicas_;
  int max_replicas_;
  double target_;
  std::optional<Clock::time_point> start_;  // the earliest time given to record() or recommend()
  std::deque<Sample> samples_;              // ordered by time; none older than the window
  std::deque<Recommendation> history_;      // ordered by time; none older than the longer period
  Decision last_{0, 0, 0, 0, "no decision yet", 0, 0};
};

}  // namespace cortex::control
