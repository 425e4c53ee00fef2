// A fork-join pool for compute kernels. `run(fn)` calls fn(i) once on each of size() threads (the calling
// thread is index 0) and returns when all have finished. Workers spin briefly between calls, then sleep,
// so the dozens of fork-joins in one decode step cost microseconds, and an idle server costs no CPU.
//
// Threading: run() may be called from one thread at a time (the model's owner); it is not reentrant.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
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

  // Splits [0, n) into size() contiguous ranges and calls fn(begin, end) for each non-empty one.
  // `align` rounds range boundaries to a multiple (for SIMD-friendly column splits).
  template <class F>
  void parallel_for(size_t n, F&& fn, size_t align = 1) {
    const size_t parts = static_cast<size_t>(size());
    if (parts == 1 || n <= align) {
      if (n > 0) fn(size_t{0}, n);
      return;
    }
    run([&](int t) {
      size_t per = (n + parts - 1) / parts;
      per = (per + align - 1) / align * align;
      size_t begin = std::min(n, per * static_cast<size_t>(t));
      size_t end = std::min(n, begin + per);
      if (begin < end) fn(begin, end);
    });
  }

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  const std::function<void(int)>* task_ = nullptr;  // valid while a run() is in progress
  std::atomic<uint64_t> generation_{0};             // bumped once per run(); workers wait on it
  std::atomic<int> pending_{0};                     // workers that have not finished this run
  std::atomic<int> sleepers_{0};                    // workers blocked on wake_ (counted under mutex_)
  std::mutex mutex_;                                // guards sleeping and waking only
  std::condition_variable wake_;
  std::atomic<bool> stop_{false};
};

}  // namespace cortex
