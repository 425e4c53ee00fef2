#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
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

// part() is what parallel_for hands each thread: parts in thread order, end to end over [0, n), every
// inner boundary a multiple of the alignment, none longer than ceil(n / threads) rounded up to it.
TEST(ThreadPoolTest, PartsCoverTheRangeInThreadOrderAsParallelForSplitsIt) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (size_t n : {0u, 1u, 15u, 16u, 17u, 768u, 1000u, 4099u})
      for (size_t align : {1u, 4u, 16u}) {
        std::vector<std::pair<size_t, size_t>> seen(static_cast<size_t>(threads), {0, 0});
        pool.parallel_for(
            n,
            [&](size_t b, size_t e) {
              for (int t = 0; t < threads; ++t)
                if (pool.part(n, t, align).first == b) seen[static_cast<size_t>(t)] = {b, e};
            },
            align);
        size_t next = 0;
        const size_t most = ((n + threads - 1) / threads + align - 1) / align * align;
        for (int t = 0; t < threads; ++t) {
          const auto [b, e] = pool.part(n, t, align);
          ASSERT_EQ(b, next) << threads << " threads, n " << n << ", part " << t;
          ASSERT_LE(e - b, most);
          if (e < n) {
            ASSERT_EQ(e % align, 0u);
          }
          if (b < e) {
            ASSERT_EQ(seen[static_cast<size_t>(t)], std::make_pair(b, e));
          }
          next = e;
        }
        ASSERT_EQ(next, n) << threads << " threads, n " << n;
      }
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

TEST(ThreadPoolTest, RunSharesCallsEveryPieceOfEveryShareOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int per_share : {0, 1, 2, 7, 100}) {
      // Share t has per_share + t pieces.
      std::vector<std::vector<std::atomic<int>>> hits;
      for (int t = 0; t < threads; ++t) hits.emplace_back(static_cast<size_t>(per_share + t));
      for (int rep = 0; rep < 20; ++rep)
        pool.run_shares([&](int t) { return per_share + t; },
                        [&](int thread, int t, uint32_t p) {
                          ASSERT_GE(thread, 0);
                          ASSERT_LT(thread, threads);
                          hits[static_cast<size_t>(t)][p]++;
                        });
      for (int t = 0; t < threads; ++t)
        for (int p = 0; p < per_share + t; ++p)
          ASSERT_EQ(hits[static_cast<size_t>(t)][static_cast<size_t>(p)].load(), 20)
              << threads << " threads, share " << t << " piece " << p;
    }
  }
}

TEST(ThreadPoolTest, AThreadDoneWithItsShareTakesPiecesFromTheBackOfAnother) {
  ThreadPool pool(2);
  constexpr uint32_t kPieces = 50;
  const auto caller = std::this_thread::get_id();
  std::atomic<uint32_t> taken_by_caller{0};  // pieces of share 1 done on the caller's thread
  std::vector<uint32_t> caller_order;        // which, in order (written by the caller only)
  std::atomic<bool> caller_is_thread_0{true};
  std::vector<std::atomic<int>> hits(2 * kPieces);
  bool waited_in_vain = false;
  pool.run_shares([](int) { return kPieces; },
                  [&](int thread, int t, uint32_t p) {
                    hits[static_cast<size_t>(t) * kPieces + p]++;
                    if ((std::this_thread::get_id() == caller) != (thread == 0)) caller_is_thread_0 = false;
                    if (t != 1) return;
                    if (std::this_thread::get_id() == caller) {
                      caller_order.push_back(p);
                      taken_by_caller++;
                      return;
                    }
                    // The worker, stuck in the first piece of its share until the caller has done all
                    // the others, which the caller takes once done with its own share.
                    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
                    while (taken_by_caller.load() < kPieces - 1 - p)
                      if (std::chrono::steady_clock::now() > deadline) {
                        waited_in_vain = true;
                        return;
                      }
                  });
  EXPECT_FALSE(waited_in_vain);
  EXPECT_TRUE(caller_is_thread_0.load());
  EXPECT_GE(taken_by_caller.load(), kPieces - 1);
  // From the back: 49, 48, ... (down to 0 where the worker started late and took none).
  for (size_t i = 0; i < caller_order.size(); ++i) EXPECT_EQ(caller_order[i], kPieces - 1 - i) << i;
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << "piece " << i;
}

// Rounds inside one run(), as a decode step's products are: each round's slots written by whichever
// thread takes them, every thread then reading all of them after the barrier. No thread may pass a
// barrier before all have arrived (it would read a slot of the round not yet written), and every slot is
// written once per round.
TEST(ThreadPoolTest, ThreadsMeetAtABarrierBetweenRoundsOfShares) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    constexpr int kRounds = 200, kPiecesPerShare = 3;
    const size_t slots = static_cast<size_t>(threads) * kPiecesPerShare;
    std::vector<ThreadPool::Shares> rounds;
    for (int r = 0; r < kRounds; ++r) rounds.emplace_back(threads);
    SpinBarrier barrier(threads);
    std::vector<std::atomic<int>> written(slots);  // the round that last wrote each slot, + 1
    std::atomic<int> early{0}, twice{0};
    for (int rep = 0; rep < 3; ++rep) {
      for (auto& w : written) w = 0;
      for (auto& r : rounds)
        for (int t = 0; t < threads; ++t) r.set(t, kPiecesPerShare);
      barrier.reset();
      pool.run([&](int t) {
        for (int r = 0; r < kRounds; ++r) {
          rounds[static_cast<size_t>(r)].take_all(t, [&](int share, uint32_t piece) {
            auto& slot = written[static_cast<size_t>(share) * kPiecesPerShare + piece];
            if (slot.exchange(r + 1) != r) twice++;
          });
          EXPECT_TRUE(barrier.wait(t));
          for (auto& w : written)
            if (w.load() < r + 1) early++;
          EXPECT_TRUE(barrier.wait(t));
        }
        EXPECT_EQ(barrier.passed(t), 2u * kRounds);
      });
      EXPECT_EQ(early.load(), 0) << threads << " threads";
      EXPECT_EQ(twice.load(), 0) << threads << " threads";
      for (auto& w : written) EXPECT_EQ(w.load(), kRounds);
    }
  }
}

// What a task throws, on any thread, reaches run()'s caller once every thread has finished its own task,
// and the pool serves the next run as before.
TEST(ThreadPoolTest, AnExceptionOnAnyThreadReachesTheCallerAfterAllHaveFinished) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int thrower = 0; thrower < threads; ++thrower) {
      std::atomic<int> finished{0};
      try {
        pool.run([&](int t) {
          if (t == thrower) throw std::runtime_error("task " + std::to_string(t));
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          finished++;
        });
        ADD_FAILURE() << "run() returned normally; thread " << thrower << " of " << threads << " threw";
      } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "task " + std::to_string(thrower));
      }
      EXPECT_EQ(finished.load(), threads - 1) << thrower << " of " << threads;
      std::vector<std::atomic<int>> calls(static_cast<size_t>(threads));
      pool.run([&](int t) { calls[static_cast<size_t>(t)]++; });
      for (auto& c : calls) EXPECT_EQ(c.load(), 1);
    }
  }
}

// A thread whose work threw aborts the barrier: the others' waits, already waiting or still to come,
// return false instead of waiting for it for ever, and the run ends with its exception.
TEST(ThreadPoolTest, ABarrierAbortedByAThreadThatThrewLetsTheOthersReturn) {
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    SpinBarrier barrier(threads);
    for (int thrower = 0; thrower < threads; ++thrower) {
      barrier.reset();
      std::atomic<int> returned_early{0};
      EXPECT_THROW(pool.run([&](int t) {
        try {
          for (int round = 0; round < 10; ++round) {
            if (t == thrower && round == 3) throw std::runtime_error("round 3");
            if (!barrier.wait(t)) {
              returned_early++;
              return;
            }
          }
        } catch (...) {
          barrier.abort();
          throw;
        }
      }),
                   std::runtime_error);
      EXPECT_EQ(returned_early.load(), threads - 1) << thrower << " of " << threads;
      // reset() clears the abort: the next run's threads meet at every barrier again.
      barrier.reset();
      std::atomic<int> met{0};
      pool.run([&](int t) {
        for (int round = 0; round < 10; ++round)
          if (barrier.wait(t)) met++;
      });
      EXPECT_EQ(met.load(), 10 * threads);
    }
  }
}

}  // namespace
}  // namespace cortex
