#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace cortex {
namespace {

TEST(ThreadPoolTest, RunCallsEveryThreadIndexOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> calls(static_cast<size_t>(threads));
    for (int rep = 0; rep < 1000; ++rep) pool.run([&](int t) { calls[static_cast<size_t>(t)]++; });
    for (auto& c : calls) EXPECT_EQ(c.load(), 1000);
  }
}

TEST(ThreadPoolTest, ParallelForCoversTheRangeExactlyOnce) {
  ThreadPool pool(3);
  for (size_t n : {0u, 1u, 15u, 16u, 17u, 1000u, 4099u}) {
    std::vector<std::atomic<int>> hits(n);
    pool.parallel_for(
        n,
        [&](size_t b, size_t e) {
          for (size_t i = b; i < e; ++i) hits[i]++;
        },
        16);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPoolTest, WorkersWakeAfterSleeping) {
  ThreadPool pool(2);
  std::atomic<int> sum{0};
  pool.run([&](int) { sum++; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // past the spin phase: workers sleep
  pool.run([&](int) { sum++; });
  EXPECT_EQ(sum.load(), 4);
}

}  // namespace
}  // namespace cortex
