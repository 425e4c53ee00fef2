#include "util/thread_pool.h"

#include "util/spin_wait.h"

namespace cortex {

ThreadPool::Shares::Shares(int parts)
    : s_(std::make_unique<SharePieces[]>(static_cast<size_t>(std::max(1, parts)))),
      parts_(std::max(1, parts)) {}

ThreadPool::ThreadPool(int threads) : shares_(threads) {
  for (int i = 1; i < std::max(1, threads); ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    wake_.notify_all();
  }
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_task(const std::function<void(int)>& fn, int index) {
  try {
    fn(index);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (!error_) error_ = std::current_exception();
    failed_.store(true, std::memory_order_release);
  }
}

void ThreadPool::run(const std::function<void(int)>& fn) {
  if (workers_.empty()) {
    fn(0);
    return;
  }
  task_ = &fn;
  pending_.store(static_cast<int>(workers_.size()));
  generation_.fetch_add(1);
  // A worker counts itself in sleepers_ before it checks generation_ under the mutex, so either it sees
  // the new generation or we see it sleeping and wake it.
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    wake_.notify_all();
  }
  run_task(fn, 0);
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) spin_pause(spins);
  task_ = nullptr;
  if (!failed_.load(std::memory_order_acquire)) return;  // no lock taken on a run that went well
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(error_mutex_);
    error.swap(error_);
    failed_.store(false, std::memory_order_relaxed);
  }
  std::rethrow_exception(error);
}

// The memory order is relaxed: run() publishes the ranges to the workers and their results to the caller.
bool ThreadPool::Shares::take(SharePieces& s, bool last, uint32_t* piece) {
  uint64_t v = s.range.load(std::memory_order_relaxed);
  for (;;) {
    const auto begin = static_cast<uint32_t>(v >> 32), end = static_cast<uint32_t>(v);
    if (begin >= end) return false;
    const uint64_t left = last ? uint64_t{begin} << 32 | (end - 1) : uint64_t{begin + 1} << 32 | end;
    if (s.range.compare_exchange_weak(v, left, std::memory_order_relaxed)) {
      *piece = last ? end - 1 : begin;
      return true;
    }
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;  // the generation at construction: a run() may start before this thread does
  for (;;) {
    uint64_t now = generation_.load(std::memory_order_acquire);
    for (int spins = 0; now == seen && spins < kSpinIterations; ++spins) {
      cpu_relax();
      now = generation_.load(std::memory_order_acquire);
    }
    if (now == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      sleepers_.fetch_sub(1);
      continue;
    }
    seen = now;
    if (stop_.load()) return;
    run_task(*task_, index);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

SpinBarrier::SpinBarrier(int threads)
    : threads_(threads), arrivals_(std::make_unique<Arrivals[]>(static_cast<size_t>(threads))) {}

void SpinBarrier::reset() {
  for (int t = 0; t < threads_; ++t)
    arrivals_[static_cast<size_t>(t)].count.store(0, std::memory_order_relaxed);
  aborted_.store(false, std::memory_order_relaxed);
}

bool SpinBarrier::wait(int thread) {
  auto& mine = arrivals_[static_cast<size_t>(thread)].count;
  const uint64_t round = mine.load(std::memory_order_relaxed) + 1;
  mine.store(round, std::memory_order_release);
  for (int t = 0; t < threads_; ++t) {
    if (t == thread) continue;
    const auto& theirs = arrivals_[static_cast<size_t>(t)].count;
    for (int spins = 0; theirs.load(std::memory_order_acquire) < round; ++spins) {
      if (aborted_.load(std::memory_order_acquire)) return false;
      spin_pause(spins);
    }
  }
  return !aborted_.load(std::memory_order_acquire);
}

}  // namespace cortex
