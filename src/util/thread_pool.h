// A fork-join pool for compute kernels. `run(fn)` calls fn(i) once on each of size() threads (the calling
// thread is index 0) and returns when all have finished. Workers spin briefly between calls, then sleep,
// so the dozens of fork-joins in one decode step cost microseconds, and an idle server costs no CPU.
// An exception thrown by fn on any thread reaches run()'s caller, once every thread has finished (the
// first one thrown, if several are); the pool serves the next run as before.
//
// Threading: run() may be called from one thread at a time (the model's owner); it is not reentrant.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <utility>
#include <vector>

namespace cortex {

class ThreadPool {
 public:
  // `threads` is the total number of threads doing work, the caller included (>= 1).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void run(const std::function<void(int)>& fn);

  // Work in shares of pieces, taken by the threads of one run(): set() each share's piece count before the
  // run; inside it, thread t calls take_all(t, fn), which calls fn(share, piece) for its own share's
  // pieces front to back and then for pieces from the back of the other shares until none are left, so
  // that a thread slowed down for a while (a shared machine) does not keep the others waiting. One Shares
  // serves one round of work at a time (run_shares below); a run() doing several rounds between barriers
  // keeps one per round.
  class Shares {
   public:
    explicit Shares(int parts);
    void set(int share, uint32_t pieces) {
      s_[static_cast<size_t>(share)].range.store(pieces, std::memory_order_relaxed);
    }
    template <class F>
    void take_all(int t, F&& fn) {
      uint32_t p;
      while (take(s_[static_cast<size_t>(t)], false, &p)) fn(t, p);
      for (int i = 1; i < parts_; ++i) {
        const int s = (t + i) % parts_;
        while (take(s_[static_cast<size_t>(s)], true, &p)) fn(s, p);
      }
    }

   private:
    // A share's pieces not yet taken, [begin, end) in one word (begin in the high half): its own thread
    // takes them from the front, the others from the back, each piece by one compare-and-swap. On a cache
    // line of its own, so that a thread's takes from its share stay in its cache until another steals.
    struct alignas(64) SharePieces {
      std::atomic<uint64_t> range{0};
    };
    // Takes the first (or last) piece left in s into *piece; false when none is left.
    static bool take(SharePieces& s, bool last, uint32_t* piece);
    std::unique_ptr<SharePieces[]> s_;
    int parts_;
  };

  // Work in size() shares, share t made of pieces(t) pieces: calls fn(thread, share, piece) once for
  // every piece of every share (piece counts below 2^32), on the thread of index `thread`, the pieces
  // taken as Shares::take_all takes them.
  template <class Pieces, class F>
  void run_shares(Pieces&& pieces, F&& fn) {
    const int parts = size();
    if (parts == 1) {
      for (uint32_t p = 0, n = static_cast<uint32_t>(pieces(0)); p < n; ++p) fn(0, 0, p);
      return;
    }
    for (int t = 0; t < parts; ++t) shares_.set(t, static_cast<uint32_t>(pieces(t)));
    run([&](int t) { shares_.take_all(t, [&](int s, uint32_t p) { fn(t, s, p); }); });
  }

  // Thread t's part of [0, n) split into size() contiguous parts: ceil(n / size()) rounded up to a
  // multiple of `align` each, the last ones shorter or empty. What parallel_for hands each thread.
  std::pair<size_t, size_t> part(size_t n, int t, size_t align = 1) const {
    return part(n, size(), t, align);
  }
  // The same for `parts` threads, without a pool.
  static std::pair<size_t, size_t> part(size_t n, int parts, int t, size_t align) {
    const size_t p = static_cast<size_t>(parts);
    const size_t per = ((n + p - 1) / p + align - 1) / align * align;
    const size_t begin = std::min(n, per * static_cast<size_t>(t));
    return {begin, std::min(n, begin + per)};
  }
  // Part t of [0, n) for threads of relative speeds `speeds` (one per thread, above 0): contiguous, in
  // proportion, boundaries on multiples of `align`, the last part ending at n.
  static std::pair<size_t, size_t> part(size_t n, std::span<const float> speeds, int t, size_t align) {
    double total = 0, before = 0;
    for (size_t i = 0; i < speeds.size(); ++i) {
      total += speeds[i];
      if (i < static_cast<size_t>(t)) before += speeds[i];
    }
    const size_t units = (n + align - 1) / align;
    const auto boundary = [&](double at) {
      return std::min(n, static_cast<size_t>(at / total * static_cast<double>(units) + 0.5) * align);
    };
    const size_t begin = t == 0 ? 0 : boundary(before);
    const size_t end =
        static_cast<size_t>(t) + 1 == speeds.size() ? n : boundary(before + speeds[static_cast<size_t>(t)]);
    return {begin, std::max(begin, end)};
  }

  // Splits [0, n) into size() contiguous parts (part() above) and calls fn(begin, end) for each non-empty
  // one. `align` rounds part boundaries to a multiple (for SIMD-friendly column splits).
  template <class F>
  void parallel_for(size_t n, F&& fn, size_t align = 1) {
    if (size() == 1 || n <= align) {
      if (n > 0) fn(size_t{0}, n);
      return;
    }
    run([&](int t) {
      const auto [begin, end] = part(n, t, align);
      if (begin < end) fn(begin, end);
    });
  }

 private:
  void worker_loop(int index);
  // Calls fn(index), keeping what it throws for run() to rethrow (the first, if several threads throw).
  void run_task(const std::function<void(int)>& fn, int index);

  Shares shares_;  // for run_shares

  std::vector<std::thread> workers_;
  const std::function<void(int)>* task_ = nullptr;  // valid while a run() is in progress
  std::atomic<uint64_t> generation_{0};             // bumped once per run(); workers wait on it
  std::atomic<int> pending_{0};                     // workers that have not finished this run
  std::atomic<int> sleepers_{0};                    // workers blocked on wake_ (counted under mutex_)
  std::mutex mutex_;                                // guards sleeping and waking only
  std::condition_variable wake_;
  std::atomic<bool> stop_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;         // the first exception a thread's task threw in this run
  std::atomic<bool> failed_{false};  // whether error_ holds one
};

// The threads of one ThreadPool::run() meeting between rounds of work: thread t calls wait(t) as often as
// the others, which returns true once all have arrived; what each wrote before arriving is visible to all
// after. reset() between runs, with no thread inside. A thread waits spinning and then yielding, as the
// pool's caller does. A thread that cannot go on (its work threw) calls abort(): every wait() of the run,
// from then on or already waiting, returns false instead of waiting for it, so that the others return
// from the run rather than wait for ever.
//
// Each thread counts its arrivals on a cache line of its own and waits until every other thread's count
// reaches its own. (Before 2026-12-05 all counted on one line: the last to arrive took the line from the
// others' caches to add to it, and the others then took it back to see the count, a second hand-over
// between cores on every barrier's way out, ~350 ns when this machine's two vCPUs sit on separate
// chiplets. With a line each, every waiter sees the last arrival with one hand-over: Q8_0 decode steps
// took 0.98× the time at 60–64 GB/s, 0.96–1.01× at 35–41, 0.99× on average over 20 series.)
class SpinBarrier {
 public:
  explicit SpinBarrier(int threads);
  void reset();
  [[nodiscard]] bool wait(int thread);
  void abort() { aborted_.store(true, std::memory_order_release); }
  // The barriers thread t has passed (or left, aborted) since reset().
  uint64_t passed(int thread) const { return arrivals_[static_cast<size_t>(thread)].count.load(); }

 private:
  struct alignas(64) Arrivals {
    std::atomic<uint64_t> count{0};
  };
  int threads_;
  std::unique_ptr<Arrivals[]> arrivals_;
  alignas(64) std::atomic<bool> aborted_{false};  // written only by abort() and reset()
};

}  // namespace cortex
