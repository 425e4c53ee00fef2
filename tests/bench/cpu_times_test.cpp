// The /proc/stat reading behind `cortex bench`'s share of CPU time stolen by the hypervisor.
#include "bench/cpu_times.h"

#include <gtest/gtest.h>

namespace cortex::bench {
namespace {

TEST(CpuTimesTest, ParsesTheAggregateLineOfProcStat) {
  // user nice system idle iowait irq softirq steal guest guest_nice, at 100 ticks a second.
  const auto t = parse_cpu_times("cpu  5352291 50092 1043751 6217315 11884 0 2971 118102 7 9", 100);
  ASSERT_TRUE(t.has_value());
  EXPECT_DOUBLE_EQ(t->steal_seconds, 1181.02);
  // Guest time is already in user and nice: the first eight counters are the total.
  EXPECT_DOUBLE_EQ(t->total_seconds,
                   (5352291.0 + 50092 + 1043751 + 6217315 + 11884 + 0 + 2971 + 118102) / 100);
}

TEST(CpuTimesTest, RejectsOtherLines) {
  EXPECT_FALSE(parse_cpu_times("cpu0 1 2 3 4 5 6 7 8", 100).has_value());  // one CPU, not all of them
  EXPECT_FALSE(parse_cpu_times("cpu  1 2 3 4 5 6 7", 100).has_value());    // no steal counter (old kernels)
  EXPECT_FALSE(parse_cpu_times("cpu  1 2 3 x 5 6 7 8", 100).has_value());
  EXPECT_FALSE(parse_cpu_times("", 100).has_value());
  EXPECT_FALSE(parse_cpu_times("cpu  1 2 3 4 5 6 7 8", 0).has_value());
}

TEST(CpuTimesTest, StealShareOfADifferenceNeedsEnoughTime) {
  const CpuTimes before{10, 1000}, after{11, 1004};
  const auto share = (after - before).steal_share();
  ASSERT_TRUE(share.has_value());
  EXPECT_DOUBLE_EQ(*share, 0.25);
  CpuTimes sum = after - before;
  sum += CpuTimes{1, 6};
  EXPECT_DOUBLE_EQ(*sum.steal_share(), 0.2);
  // Under half a second of CPU time a few ticks would swing the share: no figure.
  EXPECT_FALSE((CpuTimes{0.01, 0.4}).steal_share().has_value());
}

TEST(CpuTimesTest, ReadsThisMachinesCounters) {
  const auto t = read_cpu_times();
  ASSERT_TRUE(t.has_value()) << "/proc/stat is unreadable or not as Linux writes it";
  EXPECT_GT(t->total_seconds, 0);
  EXPECT_GE(t->steal_seconds, 0);
  EXPECT_LE(t->steal_seconds, t->total_seconds);
}

}  // namespace
}  // namespace cortex::bench
