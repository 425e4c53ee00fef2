// The buffer behind `cortex bench`'s read-bandwidth limits: one allocation serves reads of several sizes.
#include "bench/machine_limits.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace cortex::bench {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

TEST(MachineLimitsTest, NothingToReadBeforeASizeIsSet) {
  MachineLimits limits(2);
  EXPECT_EQ(limits.threads(), 2);
  EXPECT_EQ(limits.buffer_bytes(), 0u);
  EXPECT_EQ(limits.allocated_bytes(), 0u);
  EXPECT_THROW(limits.read_bandwidth(1), Error);
  ThreadPool pool(1);
  EXPECT_THROW(limits.timed_read(pool), Error);
}

TEST(MachineLimitsTest, ReadsAPrefixOfTheLargestBufferSoFar) {
  MachineLimits limits(2);
  limits.set_read_bytes(16 * kMiB + 100);  // rounded down to whole 4 KiB
  EXPECT_EQ(limits.buffer_bytes(), 16 * kMiB);
  EXPECT_EQ(limits.allocated_bytes(), 16 * kMiB);
  const double sixteen = limits.read_bandwidth(1);
  EXPECT_GT(sixteen, 0);

  limits.set_read_bytes(8 * kMiB);  // a prefix: no new buffer
  EXPECT_EQ(limits.buffer_bytes(), 8 * kMiB);
  EXPECT_EQ(limits.allocated_bytes(), 16 * kMiB);
  EXPECT_GT(limits.read_bandwidth(1), 0);

  limits.set_read_bytes(1000);  // at least 4 MiB
  EXPECT_EQ(limits.buffer_bytes(), 4 * kMiB);
  EXPECT_EQ(limits.allocated_bytes(), 16 * kMiB);

  limits.set_read_bytes(24 * kMiB);  // beyond the buffer: a larger one replaces it
  EXPECT_EQ(limits.buffer_bytes(), 24 * kMiB);
  EXPECT_EQ(limits.allocated_bytes(), 24 * kMiB);
  ThreadPool pool(2);
  EXPECT_GT(limits.timed_read(pool), 0);
}

// The read goes in 2 MiB pieces, a thread done with its own taking the others': whatever the threads, the
// buffer's length (here 2.5 pieces, 4 MiB being the least) and the way it streams (prefetched or left to
// the hardware), every value is read once. The buffer holds ones, and its per-stream sums (a few hundred
// thousand) are exact in floats.
TEST(MachineLimitsTest, ATimedReadTakesEveryValueOnce) {
  MachineLimits limits(1);
  for (const size_t bytes : {5 * kMiB, 4 * kMiB, 5 * kMiB + 4096})
    for (int threads : {1, 2, 3, 5})
      for (ReadWay way : kReadWays) {
        limits.set_read_bytes(bytes);
        ThreadPool pool(threads);
        EXPECT_GT(limits.timed_read(pool, way), 0);
        EXPECT_EQ(limits.last_read_sum(), static_cast<double>(bytes / sizeof(float)))
            << bytes << " bytes, " << threads << " threads, way " << static_cast<int>(way);
      }
}

TEST(MachineLimitsTest, ARoundTripTakesTheFirstTwoThreads) {
  ThreadPool one(1);
  EXPECT_EQ(MachineLimits::timed_round_trip(one, 100), 0) << "no second thread to hand the line to";
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    EXPECT_EQ(MachineLimits::timed_round_trip(pool, 0), 0);
    // A round trip crosses between cores at least twice: more than a nanosecond. Under 100 ms on
    // average even where the suite's other tests take the CPUs and the two threads share one (each waiter
    // yields after a while).
    const double seconds = MachineLimits::timed_round_trip(pool, 1000);
    EXPECT_GT(seconds, 1e-9) << threads << " threads";
    EXPECT_LT(seconds, 0.1) << threads << " threads";
  }
}

}  // namespace
}  // namespace cortex::bench
