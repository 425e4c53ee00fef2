// The request-based autoscaler on a simulated clock: every case is worked by hand in the comments.
#include "control/autoscaler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "util/error.h"

namespace cortex::control {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = Autoscaler::Clock;
using Changes = std::vector<std::pair<int, int>>;  // (second, new replica count)

Clock::time_point at(int s) {
  return Clock::time_point{} + seconds(s);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

AutoscalingSpec spec_with(seconds window, seconds downscale_period, seconds upscale_period) {
  AutoscalingSpec spec;
  spec.window = window;
  spec.downscale_stabilization_period = downscale_period;
  spec.upscale_stabilization_period = upscale_period;
  return spec;
}

// What the operator does: a tick every 10 s from `from` to `to` (seconds, inclusive) records the load,
// asks for a count and applies it at once. Returns the changes of `current`.
Changes simulate(Autoscaler& a, int from, int to, int& current, const std::function<double(int)>& load) {
  Changes changes;
  for (int t = from; t <= to; t += 10) {
    a.record(at(t), load(t));
    const int next = a.recommend(at(t), current);
    if (next != current) changes.emplace_back(t, next);
    current = next;
  }
  return changes;
}

// One tick on a fresh autoscaler: one sample, one recommendation, both at t = 0.
int one_tick(const AutoscalingSpec& spec, int min_replicas, int max_replicas, double target, double load,
             int current) {
  Autoscaler a(spec, min_replicas, max_replicas, target);
  a.record(at(0), load);
  return a.recommend(at(0), current);
}

// Stabilization off (periods 0, so no startup hold either) and a 10 s window: one sample per tick.
const AutoscalingSpec kNoStabilization = spec_with(seconds(10), seconds(0), seconds(0));

TEST(AutoscalerTest, LastDecisionBeforeAnyRecommend) {
  Autoscaler a(AutoscalingSpec{}, 1, 10, 1);
  EXPECT_EQ(a.last_decision().reason, "no decision yet");
  EXPECT_EQ(a.last_decision().stabilized, 0);
}

TEST(AutoscalerTest, SteadyLoadAtTargetKeepsCount) {
  // Target 8 per replica, 24 in flight on 3 replicas: raw = 24 / 8 = 3 = ceil(3) every tick, for 15 minutes
  // (past every startup hold and stabilization period of the defaults).
  Autoscaler a(AutoscalingSpec{}, 1, 100, 8);
  int current = 3;
  EXPECT_EQ(simulate(a, 0, 900, current, [](int) { return 24.0; }), Changes{});
  EXPECT_EQ(current, 3);
  const Autoscaler::Decision& d = a.last_decision();
  EXPECT_DOUBLE_EQ(d.avg_in_flight, 24);
  EXPECT_DOUBLE_EQ(d.raw, 3);
  EXPECT_EQ(d.recommended, 3);
  EXPECT_EQ(d.stabilized, 3);
  EXPECT_EQ(d.current, 3);
  EXPECT_EQ(d.samples, 6);  // the window (840, 900] holds the samples at 850, 860, ..., 900
  EXPECT_TRUE(contains(d.reason, "steady")) << d.reason;
}

TEST(AutoscalerTest, BurstScalesUpAsStabilizationAllows) {
  // Defaults: window 60 s, upscale stabilization 60 s, max_upscale_factor 1.5. Target 1, 10 in flight from
  // t = 0, so raw = 10 at every tick and the recommendation from c replicas is min(10, max(c+1, ceil(1.5c))):
  //   from 1: max(2, ceil(1.5)=2) = 2;  from 2: max(3, 3) = 3;  from 3: max(4, ceil(4.5)=5) = 5;
  //   from 5: max(6, ceil(7.5)=8) = 8;  from 8: min(10, max(9, 12)) = 10.
  // Upscaling is held for the first 60 s after start (t = 0), then a step happens once every recommendation
  // in the last 60 s (inclusive) is at least the new count, i.e. once the last recommendation made from the
  // previous count is 60 s old: 2 at t = 60 (recs 2 since t = 0), 3 at t = 130 (the last 2 was made at t =
  // 60), 5 at t = 200, 8 at t = 270, 10 at t = 340.
  Autoscaler a(AutoscalingSpec{}, 1, 100, 1);
  int current = 1;
  auto burst = [](int) { return 10.0; };

  EXPECT_EQ(simulate(a, 0, 0, current, burst), Changes{});
  EXPECT_DOUBLE_EQ(a.last_decision().raw, 10);
  EXPECT_EQ(a.last_decision().recommended, 2);  // 1.5 × 1 → ceil(1.5) = 2, also the +1 rule
  EXPECT_EQ(a.last_decision().stabilized, 1);
  EXPECT_TRUE(contains(a.last_decision().reason, "first 60s after start")) << a.last_decision().reason;

  EXPECT_EQ(simulate(a, 10, 70, current, burst), (Changes{{60, 2}}));
  // t = 70 on 2 replicas: recommends 3, but the recommendations at 10..60 (inclusive window [10, 70]) were 2.
  EXPECT_EQ(a.last_decision().recommended, 3);
  EXPECT_EQ(a.last_decision().stabilized, 2);
  EXPECT_TRUE(contains(a.last_decision().reason, "lowest recommendation in the last 60s"))
      << a.last_decision().reason;

  EXPECT_EQ(simulate(a, 80, 600, current, burst), (Changes{{130, 3}, {200, 5}, {270, 8}, {340, 10}}));
  EXPECT_EQ(current, 10);
}

TEST(AutoscalerTest, ToleranceBandHolds) {
  // Target 1, default tolerances 0.05, no stabilization.
  // 20 replicas: the band is (19, 21). raw 20.9 would be ceil → 21, the band keeps 20; raw 21.5 is outside
  // → 22.
  EXPECT_EQ(one_tick(kNoStabilization, 1, 100, 1, 20.9, 20), 20);
  EXPECT_EQ(one_tick(kNoStabilization, 1, 100, 1, 21.5, 20), 22);
  // 40 replicas: the band is (38, 40) below. raw 38.5 would be ceil → 39, the band keeps 40; 37.5 → 38.
  EXPECT_EQ(one_tick(kNoStabilization, 1, 100, 1, 38.5, 40), 40);
  EXPECT_EQ(one_tick(kNoStabilization, 1, 100, 1, 37.5, 40), 38);

  // The same loads with both tolerances 0: plain ceil.
  AutoscalingSpec exact = kNoStabilization;
  exact.downscale_tolerance = 0;
  exact.upscale_tolerance = 0;
  EXPECT_EQ(one_tick(exact, 1, 100, 1, 20.9, 20), 21);
  EXPECT_EQ(one_tick(exact, 1, 100, 1, 38.5, 40), 39);

  Autoscaler a(kNoStabilization, 1, 100, 1);
  a.record(at(0), 20.9);
  EXPECT_EQ(a.recommend(at(0), 20), 20);
  EXPECT_EQ(a.last_decision().recommended, 20);
  EXPECT_TRUE(contains(a.last_decision().reason, "within tolerance")) << a.last_decision().reason;
}

TEST(AutoscalerTest, StepLimitsAlwaysAllowOneReplica) {
  // Target 1, no stabilization, factors 0.75 / 1.5.
  // 10 replicas, 1000 in flight: at most max(11, ceil(15)) = 15.
  EXPECT_EQ(one_tick(kNoStabilization, 0, 1000, 1, 1000, 10), 15);
  // 10 replicas, idle: at least min(9, ceil(7.5)) = 8 (ceil keeps the step within 0.75: 8/10 >= 0.75).
  EXPECT_EQ(one_tick(kNoStabilization, 0, 1000, 1, 0, 10), 8);
  // 3 replicas, idle: ceil(2.25) = 3 would never move; the -1 rule gives min(2, 3) = 2.
  EXPECT_EQ(one_tick(kNoStabilization, 0, 1000, 1, 0, 3), 2);
  // 0 replicas, 5 in flight: ceil(0 × 1.5) = 0 would never move; the +1 rule gives max(1, 0) = 1.
  EXPECT_EQ(one_tick(kNoStabilization, 0, 1000, 1, 5, 0), 1);
  // 1 replica, idle, min 0: min(0, ceil(0.75) = 1) = 0.
  EXPECT_EQ(one_tick(kNoStabilization, 0, 1000, 1, 0, 1), 0);
  // max_upscale_factor 1.1 from 50: 50 × 1.1 is 55.00000000000001 in binary; the ceiling is 55, not 56.
  AutoscalingSpec slow = kNoStabilization;
  slow.max_upscale_factor = 1.1;
  EXPECT_EQ(one_tick(slow, 0, 1000, 1, 1000, 50), 55);
}

TEST(AutoscalerTest, DownscaleWaitsForStabilizationAndRespectsMaxDownscaleFactor) {
  // Window 10 s (each tick sees only its own sample), stabilization 60 s both ways, target 1.
  // 20 replicas at 20 in flight until t = 90, idle from t = 100. Every idle tick recommends the step floor
  // min(c-1, ceil(0.75c)) from the current count c:
  //   20 → 15, 15 → ceil(11.25) = 12, 12 → 9, 9 → ceil(6.75) = 7, 7 → ceil(5.25) = 6, 6 → ceil(4.5) = 5,
  //   5 → ceil(3.75) = 4, 4 → min(3, 3) = 3, 3 → min(2, ceil(2.25) = 3) = 2, 2 → min(1, 2) = 1.
  // A step happens once the highest recommendation in the last 60 s (inclusive) is the new count: the last 20
  // was recommended at t = 90, so 15 at t = 160; the last 15 at t = 160, so 12 at t = 230; then every 70 s.
  Autoscaler a(spec_with(seconds(10), seconds(60), seconds(60)), 1, 100, 1);
  int current = 20;
  auto load = [](int t) { return t < 100 ? 20.0 : 0.0; };

  EXPECT_EQ(simulate(a, 0, 100, current, load), Changes{});
  EXPECT_DOUBLE_EQ(a.last_decision().raw, 0);
  EXPECT_EQ(a.last_decision().recommended, 15);
  EXPECT_EQ(a.last_decision().stabilized, 20);
  EXPECT_TRUE(contains(a.last_decision().reason, "highest recommendation in the last 60s"))
      << a.last_decision().reason;

  EXPECT_EQ(simulate(a, 110, 900, current, load), (Changes{{160, 15},
                                                           {230, 12},
                                                           {300, 9},
                                                           {370, 7},
                                                           {440, 6},
                                                           {510, 5},
                                                           {580, 4},
                                                           {650, 3},
                                                           {720, 2},
                                                           {790, 1}}));
}

TEST(AutoscalerTest, ShortSpikeOrDipDoesNotScale) {
  // Window 10 s, 4 replicas at target 1 with 4 in flight; one tick of 12 at t = 100 and one of 0 at t = 200.
  // t = 100 recommends min(12, max(5, ceil(6))) = 6, but the lowest recommendation in [40, 100] is 4: held.
  // t = 200 recommends min(3, ceil(3)) = 3, but the highest in [140, 200] is 4: held.
  auto load = [](int t) { return t == 100 ? 12.0 : t == 200 ? 0.0 : 4.0; };
  Autoscaler a(spec_with(seconds(10), seconds(60), seconds(60)), 1, 100, 1);
  int current = 4;
  EXPECT_EQ(simulate(a, 0, 100, current, load), Changes{});
  EXPECT_EQ(a.last_decision().recommended, 6);
  EXPECT_EQ(simulate(a, 110, 400, current, load), Changes{});

  // Without stabilization the same load moves the count: 6 at t = 100, then 6 → min(5, ceil(4.5)) = 5 → 4;
  // at t = 200, 4 → 3, then back up to 4.
  Autoscaler b(kNoStabilization, 1, 100, 1);
  current = 4;
  EXPECT_EQ(simulate(b, 0, 400, current, load), (Changes{{100, 6}, {110, 5}, {120, 4}, {200, 3}, {210, 4}}));
}

TEST(AutoscalerTest, MinAndMaxClamp) {
  // min 2, max 5, target 1, no stabilization.
  // 2 replicas idle: the step floor is min(1, ceil(1.5)) = 1, min_replicas keeps 2.
  Autoscaler a(kNoStabilization, 2, 5, 1);
  a.record(at(0), 0);
  EXPECT_EQ(a.recommend(at(0), 2), 2);
  EXPECT_TRUE(contains(a.last_decision().reason, "limited by min_replicas 2")) << a.last_decision().reason;
  // 4 replicas, 100 in flight: the step ceiling is max(5, 6) = 6, max_replicas keeps 5; from 5 it stays 5.
  EXPECT_EQ(one_tick(kNoStabilization, 2, 5, 1, 100, 4), 5);
  EXPECT_EQ(one_tick(kNoStabilization, 2, 5, 1, 100, 5), 5);

  // A count outside [min, max] is corrected at once, even under the defaults' startup holds (t = 0 is within
  // the first 60 s / 300 s) and even against the load.
  const AutoscalingSpec defaults;
  EXPECT_EQ(one_tick(defaults, 2, 5, 1, 0, 1), 2);    // below min, idle
  EXPECT_EQ(one_tick(defaults, 2, 5, 1, 100, 7), 5);  // above max, loaded
  EXPECT_EQ(one_tick(defaults, 2, 5, 1, 0, 7), 5);    // above max, idle: down to max, not further yet
  // min 3 from 1 replica under heavy load: the step ceiling max(2, ceil(1.5)) = 2 gives way to min_replicas.
  EXPECT_EQ(one_tick(defaults, 3, 10, 1, 1000, 1), 3);
  // No samples at all (the no-data hold) still corrects the count.
  Autoscaler b(defaults, 2, 5, 1);
  EXPECT_EQ(b.recommend(at(0), 1), 2);
  EXPECT_TRUE(contains(b.last_decision().reason, "corrected")) << b.last_decision().reason;
}

TEST(AutoscalerTest, WindowAverageDropsOldSamples) {
  // Window 60 s, target 2. Samples: 12 at t = 0, 6 at t = 30, 0 at t = 50. The window is (now - 60, now].
  Autoscaler a(AutoscalingSpec{}, 1, 100, 2);
  a.record(at(0), 12);
  a.record(at(30), 6);
  a.record(at(50), 0);

  // t = 50: all three, (12 + 6 + 0) / 3 = 6; raw 6 / 2 = 3.
  a.recommend(at(50), 3);
  EXPECT_EQ(a.last_decision().samples, 3);
  EXPECT_DOUBLE_EQ(a.last_decision().avg_in_flight, 6);
  EXPECT_DOUBLE_EQ(a.last_decision().raw, 3);
  // t = 65: t = 0 is out, (6 + 0) / 2 = 3. (A time-weighted average would give (12·25 + 6·20 + 0·15) / 60
  // = 7.)
  a.recommend(at(65), 3);
  EXPECT_EQ(a.last_decision().samples, 2);
  EXPECT_DOUBLE_EQ(a.last_decision().avg_in_flight, 3);
  // t = 90: t = 30 is exactly 60 s old, out; only the 0 remains.
  a.recommend(at(90), 3);
  EXPECT_EQ(a.last_decision().samples, 1);
  EXPECT_DOUBLE_EQ(a.last_decision().avg_in_flight, 0);
  // t = 110: nothing left; past the first window, no samples count as 0 load.
  a.recommend(at(110), 3);
  EXPECT_EQ(a.last_decision().samples, 0);
  EXPECT_DOUBLE_EQ(a.last_decision().avg_in_flight, 0);
  EXPECT_FALSE(contains(a.last_decision().reason, "no in-flight samples")) << a.last_decision().reason;
}

TEST(AutoscalerTest, NoDataDuringFirstWindowDoesNotScaleDown) {
  // Window 60 s, stabilization 0 (so only the no-data rule can hold), target 1, 3 replicas, no samples.
  // t = 0..50: held at 3. t = 60: the first window is over, no data counts as 0 load: min(2, ceil(2.25)) = 2.
  Autoscaler a(spec_with(seconds(60), seconds(0), seconds(0)), 1, 100, 1);
  for (int t = 0; t <= 50; t += 10) {
    EXPECT_EQ(a.recommend(at(t), 3), 3) << "t=" << t;
    EXPECT_EQ(a.last_decision().samples, 0);
    EXPECT_TRUE(contains(a.last_decision().reason, "no in-flight samples")) << a.last_decision().reason;
  }
  EXPECT_EQ(a.recommend(at(60), 3), 2);

  // A sample of 0 is data: the same autoscaler scales down at once when the gateway reports idle at t = 20.
  Autoscaler b(spec_with(seconds(60), seconds(0), seconds(0)), 1, 100, 1);
  EXPECT_EQ(b.recommend(at(0), 3), 3);
  b.record(at(20), 0);
  EXPECT_EQ(b.recommend(at(20), 3), 2);

  // The defaults also hold any downscale for the first 300 s after start, data or not.
  Autoscaler c(AutoscalingSpec{}, 1, 100, 1);
  int current = 3;
  EXPECT_EQ(simulate(c, 0, 290, current, [](int) { return 0.0; }), Changes{});
  EXPECT_TRUE(contains(c.last_decision().reason, "first 300s after start")) << c.last_decision().reason;
  // t = 300: recommendations since t = 0 were all 2, so the stabilization floor lets it go.
  EXPECT_EQ(simulate(c, 300, 300, current, [](int) { return 0.0; }), (Changes{{300, 2}}));
}

// Runs `f` and checks it throws Error(kInvalidArgument) with `field` in the message.
void expect_invalid(const std::function<void()>& f, const std::string& field) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one naming " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_TRUE(contains(e.what(), field)) << e.what();
  }
}

TEST(AutoscalerTest, InvalidArgumentsThrow) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  auto make = [](AutoscalingSpec spec, int min_replicas, int max_replicas, double target) {
    return [=] { Autoscaler(spec, min_replicas, max_replicas, target); };
  };
  const AutoscalingSpec ok;
  expect_invalid(make(ok, 1, 10, 0), "target_replica_concurrency");
  expect_invalid(make(ok, 1, 10, -1), "target_replica_concurrency");
  expect_invalid(make(ok, 1, 10, nan), "target_replica_concurrency");
  expect_invalid(make(ok, 1, 10, inf), "target_replica_concurrency");
  expect_invalid(make(ok, -1, 10, 1), "min_replicas");
  expect_invalid(make(ok, 0, 0, 1), "max_replicas");
  expect_invalid(make(ok, 3, 2, 1), "min_replicas (3) must be <= compute.max_replicas (2)");

  auto with = [&](const std::function<void(AutoscalingSpec&)>& change) {
    AutoscalingSpec s = ok;
    change(s);
    return make(s, 1, 10, 1);
  };
  expect_invalid(with([](AutoscalingSpec& s) { s.window = milliseconds(0); }), "window");
  expect_invalid(with([](AutoscalingSpec& s) { s.downscale_stabilization_period = milliseconds(-1); }),
                 "downscale_stabilization_period");
  expect_invalid(with([](AutoscalingSpec& s) { s.upscale_stabilization_period = milliseconds(-1); }),
                 "upscale_stabilization_period");
  expect_invalid(with([](AutoscalingSpec& s) { s.max_upscale_factor = 1; }), "max_upscale_factor");
  expect_invalid(with([&](AutoscalingSpec& s) { s.max_upscale_factor = nan; }), "max_upscale_factor");
  expect_invalid(with([](AutoscalingSpec& s) { s.max_downscale_factor = 1; }), "max_downscale_factor");
  expect_invalid(with([](AutoscalingSpec& s) { s.max_downscale_factor = -0.1; }), "max_downscale_factor");
  expect_invalid(with([](AutoscalingSpec& s) { s.downscale_tolerance = 1; }), "downscale_tolerance");
  expect_invalid(with([](AutoscalingSpec& s) { s.downscale_tolerance = -0.01; }), "downscale_tolerance");
  expect_invalid(with([](AutoscalingSpec& s) { s.upscale_tolerance = -0.01; }), "upscale_tolerance");
  expect_invalid(with([&](AutoscalingSpec& s) { s.upscale_tolerance = inf; }), "upscale_tolerance");

  // The edges of what is allowed.
  AutoscalingSpec edges;
  edges.downscale_stabilization_period = milliseconds(0);
  edges.upscale_stabilization_period = milliseconds(0);
  edges.max_downscale_factor = 0;
  edges.downscale_tolerance = 0;
  edges.upscale_tolerance = 0;
  EXPECT_NO_THROW(Autoscaler(edges, 0, 1, 0.5));

  Autoscaler a(ok, 1, 10, 1);
  expect_invalid([&] { a.record(at(0), -1); }, "in-flight");
  expect_invalid([&] { a.record(at(0), nan); }, "in-flight");
  expect_invalid([&] { a.record(at(0), inf); }, "in-flight");
  expect_invalid([&] { a.recommend(at(0), -1); }, "current replica count");
}

}  // namespace
}  // namespace cortex::control
