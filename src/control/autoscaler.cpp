#include "control/autoscaler.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>

#include "util/error.h"

namespace cortex::control {
namespace {

// ceil() that ignores floating-point noise: 50 × 1.1 is 55.00000000000001 in binary, which must give 55.
double tolerant_ceil(double x) {
  return std::ceil(x - 1e-9);
}

double seconds(std::chrono::milliseconds d) {
  return std::chrono::duration<double>(d).count();
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[256];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  return buf;
}

// Inserts keeping `items` ordered by time; callers give non-decreasing times, so this is a push_back.
template <typename T>
void insert_in_order(std::deque<T>& items, T item) {
  if (items.empty() || items.back().at <= item.at) {
    items.push_back(item);
    return;
  }
  auto pos = std::upper_bound(items.begin(), items.end(), item.at,
                              [](Autoscaler::Clock::time_point t, const T& x) { return t < x.at; });
  items.insert(pos, item);
}

}  // namespace

Autoscaler::Autoscaler(const AutoscalingSpec& spec, int min_replicas, int max_replicas,
                       double target_replica_concurrency)
    : spec_(spec),
      min_replicas_(min_replicas),
      max_replicas_(max_replicas),
      target_(target_replica_concurrency) {
  // Comparisons are written so that NaN fails them.
  if (!(target_ > 0) || !std::isfinite(target_)) {
    throw invalid_argument(format("autoscaling.target_replica_concurrency must be > 0 (got %g)", target_));
  }
  if (min_replicas < 0)
    throw invalid_argument(format("compute.min_replicas must be >= 0 (got %d)", min_replicas));
  if (max_replicas < 1)
    throw invalid_argument(format("compute.max_replicas must be >= 1 (got %d)", max_replicas));
  if (min_replicas > max_replicas) {
    throw invalid_argument(
        format("compute.min_replicas (%d) must be <= compute.max_replicas (%d)", min_replicas, max_replicas));
  }
  if (spec.window.count() <= 0) {
    throw invalid_argument(
        format("autoscaling.window must be > 0 (got %lldms)", (long long)spec.window.count()));
  }
  if (spec.downscale_stabilization_period.count() < 0) {
    throw invalid_argument(format("autoscaling.downscale_stabilization_period must be >= 0 (got %lldms)",
                                  (long long)spec.downscale_stabilization_period.count()));
  }
  if (spec.upscale_stabilization_period.count() < 0) {
    throw invalid_argument(format("autoscaling.upscale_stabilization_period must be >= 0 (got %lldms)",
                                  (long long)spec.upscale_stabilization_period.count()));
  }
  if (!(spec.max_upscale_factor > 1) || !std::isfinite(spec.max_upscale_factor)) {
    throw invalid_argument(
        format("autoscaling.max_upscale_factor must be > 1 (got %g)", spec.max_upscale_factor));
  }
  if (!(spec.max_downscale_factor >= 0 && spec.max_downscale_factor < 1)) {
    throw invalid_argument(
        format("autoscaling.max_downscale_factor must be in [0, 1) (got %g)", spec.max_downscale_factor));
  }
  if (!(spec.downscale_tolerance >= 0 && spec.downscale_tolerance < 1)) {
    throw invalid_argument(
        format("autoscaling.downscale_tolerance must be in [0, 1) (got %g)", spec.downscale_tolerance));
  }
  if (!(spec.upscale_tolerance >= 0) || !std::isfinite(spec.upscale_tolerance)) {
    throw invalid_argument(
        format("autoscaling.upscale_tolerance must be >= 0 (got %g)", spec.upscale_tolerance));
  }
}

void Autoscaler::note_time(Clock::time_point now) {
  if (!start_ || now < *start_) start_ = now;
}

void Autoscaler::record(Clock::time_point now, double in_flight) {
  if (!(in_flight >= 0) || !std::isfinite(in_flight)) {
    throw invalid_argument(format("in-flight sample must be a finite number >= 0 (got %g)", in_flight));
  }
  note_time(now);
  insert_in_order(samples_, Sample{now, in_flight});
  // Keeps memory bounded by the sampling rate × window even when recommend() is called rarely.
  const Clock::time_point horizon = samples_.back().at - spec_.window;
  while (!samples_.empty() && samples_.front().at <= horizon) samples_.pop_front();
}

std::optional<int> Autoscaler::max_since(Clock::time_point now, std::chrono::milliseconds period) const {
  std::optional<int> best;
  for (const Recommendation& r : history_) {
    if (r.at >= now - period && r.at <= now && (!best || r.replicas > *best)) best = r.replicas;
  }
  return best;
}

std::optional<int> Autoscaler::min_since(Clock::time_point now, std::chrono::milliseconds period) const {
  std::optional<int> best;
  for (const Recommendation& r : history_) {
    if (r.at >= now - period && r.at <= now && (!best || r.replicas < *best)) best = r.replicas;
  }
  return best;
}

int Autoscaler::recommend(Clock::time_point now, int current) {
  if (current < 0) throw invalid_argument(format("current replica count must be >= 0 (got %d)", current));
  note_time(now);
  const auto since_start = now - *start_;
  const int in_range = std::clamp(current, min_replicas_, max_replicas_);

  Decision d;
  d.current = current;

  // The window is (now - window, now]: a sample exactly `window` old is out.
  while (!samples_.empty() && samples_.front().at <= now - spec_.window) samples_.pop_front();
  double sum = 0;
  for (const Sample& s : samples_) {
    if (s.at > now) break;
    sum += s.in_flight;
    ++d.samples;
  }
  d.avg_in_flight = d.samples > 0 ? sum / d.samples : 0;
  d.raw = d.avg_in_flight / target_;

  // No data during the first window: hold (only a count outside [min, max] is corrected), record nothing.
  if (d.samples == 0 && since_start < spec_.window) {
    d.recommended = d.stabilized = in_range;
    d.reason = format("no in-flight samples yet: holding %d replicas during the first %gs window", in_range,
                      seconds(spec_.window));
    if (in_range != current) {
      d.reason +=
          format(" (%d corrected to the [%d, %d] replica range)", current, min_replicas_, max_replicas_);
    }
    last_ = d;
    return in_range;
  }

  // The recommendation: ceil(raw) within the tolerance band, step limits and [min, max].
  const double cur = current;
  double rec = tolerant_ceil(d.raw);
  bool within_tolerance = false;
  if ((d.raw < cur && d.raw > cur * (1 - spec_.downscale_tolerance)) ||
      (d.raw > cur && d.raw < cur * (1 + spec_.upscale_tolerance))) {
    rec = cur;
    within_tolerance = true;
  }
  const double downscale_floor = std::min(cur - 1, tolerant_ceil(cur * spec_.max_downscale_factor));
  const double upscale_ceil = std::max(cur + 1, tolerant_ceil(cur * spec_.max_upscale_factor));
  std::string limit;
  if (rec > upscale_ceil) {
    rec = upscale_ceil;
    limit = format("; step limited by max_upscale_factor %g", spec_.max_upscale_factor);
  } else if (rec < downscale_floor) {
    rec = downscale_floor;
    limit = format("; step limited by max_downscale_factor %g", spec_.max_downscale_factor);
  }
  if (rec > max_replicas_) {
    rec = max_replicas_;
    limit = format("; limited by max_replicas %d", max_replicas_);
  } else if (rec < min_replicas_) {
    rec = min_replicas_;
    limit = format("; limited by min_replicas %d", min_replicas_);
  }
  d.recommended = static_cast<int>(rec);

  // History: everything that uses past recommendations comes after this one is added.
  insert_in_order(history_, Recommendation{now, d.recommended});
  const auto keep = std::max(spec_.downscale_stabilization_period, spec_.upscale_stabilization_period);
  while (!history_.empty() && history_.front().at < now - keep) history_.pop_front();

  // Stabilization.
  int request = d.recommended;
  std::string held;
  if (request < current) {
    if (since_start < spec_.downscale_stabilization_period) {
      request = current;
      held = format("downscale to %d held: the first %gs after start", d.recommended,
                    seconds(spec_.downscale_stabilization_period));
    } else if (std::optional<int> highest = max_since(now, spec_.downscale_stabilization_period)) {
      const int f = std::min(*highest, current);
      if (request < f) {
        request = f;
        held = format("downscale to %d held at %d: the highest recommendation in the last %gs", d.recommended,
                      f, seconds(spec_.downscale_stabilization_period));
      }
    }
  } else if (request > current) {
    if (since_start < spec_.upscale_stabilization_period) {
      request = current;
      held = format("upscale to %d held: the first %gs after start", d.recommended,
                    seconds(spec_.upscale_stabilization_period));
    } else if (std::optional<int> lowest = min_since(now, spec_.upscale_stabilization_period)) {
      const int c = std::max(*lowest, current);
      if (request > c) {
        request = c;
        held = format("upscale to %d held at %d: the lowest recommendation in the last %gs", d.recommended, c,
                      seconds(spec_.upscale_stabilization_period));
      }
    }
  }
  // A count outside [min, max] is corrected whatever stabilization says.
  d.stabilized = std::clamp(request, min_replicas_, max_replicas_);

  const std::string load =
      format("raw %.2f = avg in-flight %.2f / target %g", d.raw, d.avg_in_flight, target_);
  if (d.stabilized != request) {
    d.reason = format("%d replicas outside [min_replicas %d, max_replicas %d]: corrected to %d (%s)", current,
                      min_replicas_, max_replicas_, d.stabilized, load.c_str());
  } else if (!held.empty()) {
    d.reason = held + " (" + load + limit + ")";
  } else if (d.stabilized == current) {
    d.reason = (within_tolerance ? "within tolerance (" : "steady (") + load + limit + ")";
  } else {
    d.reason = format("scale %s %d -> %d (", d.stabilized > current ? "up" : "down", current, d.stabilized) +
               load + limit + ")";
  }
  last_ = d;
  return d.stabilized;
}

}  // namespace cortex::control
