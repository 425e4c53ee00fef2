// Measures this machine's limits in the same run as a benchmark, so that figures can be reported as a
// fraction of what the hardware allows: memory read bandwidth and single-precision matrix-multiply rate.
//
// On a shared machine both limits move from one second to the next (other tenants, clock changes), so a
// benchmark measures them interleaved with its own tests. The bandwidth a test is set beside is best
// read in the test's own moments, between its steps and on its threads (timed_read); a best over passes
// read apart from the test is above anything the test can average when the passes are shorter than it,
// and off in either direction when they run in other seconds (read_bandwidth, for the figures reported
// beside: the best single read, a buffer beyond any cache).
#pragma once

#include <cstddef>
#include <memory>

#include "util/thread_pool.h"

namespace cortex::bench {

// How a read streams the buffer: each stream prefetched 1 KiB ahead into L1 by the loop, or left to the
// hardware's prefetchers. Which is faster changes with the machine's moment (docs/performance.md,
// 2026-12-05): a limit is the faster way's.
enum class ReadWay { kPrefetched, kHardware };
inline constexpr ReadWay kReadWays[] = {ReadWay::kPrefetched, ReadWay::kHardware};

class MachineLimits {
 public:
  // `threads`: this object's own (read_bandwidth, sgemm_flops). No buffer to read until set_read_bytes.
  explicit MachineLimits(int threads);
  ~MachineLimits();

  // From now on the reads below take the buffer's first `bytes` (rounded down to 4 KiB, at least 4 MiB):
  // the size of the working set being compared (a model's weights; on machines whose last-level cache
  // holds a large share of that set, a buffer far beyond it would understate what streaming it reaches).
  // Allocates and touches a buffer of that size when the one held is smaller, and otherwise reads a
  // prefix of it: one object serves a benchmark's buffers of several sizes with the pages of one
  // allocation (a VM backs fresh pages as they are first written, which took 1–13 s of system time per
  // 2 GiB on the machine the figures in docs/performance.md come from).
  void set_read_bytes(size_t bytes);
  int threads() const { return pool_.size(); }
  // Bytes of the buffer held (the largest set_read_bytes so far), of which the reads take buffer_bytes().
  size_t allocated_bytes() const;

  // Bytes per second read by this object's threads streaming the buffer: the best of `passes` reads of
  // it each way. On a shared machine the best of such short passes (a few milliseconds each) catches
  // moments of more bandwidth than any test of hundreds of milliseconds can average.
  double read_bandwidth(int passes);
  // Seconds `pool`'s threads take to read the buffer's first buffer_bytes() once (read_bandwidth's passes on
  // this object's threads; a test's own threads for reads interleaved with its steps, so that the test and
  // the reads share the machine's moments).
  double timed_read(ThreadPool& pool, ReadWay way = ReadWay::kPrefetched);
  // The sum of the values the last read took (the buffer holds ones, so: how many it read), which keeps
  // the read from being optimised away and lets a test check that every value was read once.
  double last_read_sum() const { return last_read_sum_; }
  size_t buffer_bytes() const { return floats_ * sizeof(float); }
  // Seconds a cache line takes from `pool`'s first thread to its second and back, the mean of `trips`
  // such round trips (0 with fewer than two threads). Each exchange between a decode step's threads (a
  // barrier, an activation one wrote and the other reads) waits about this long. On a VM whose vCPUs move
  // between the host's cores it changes with the moment: tens of ns where the two share a cache, several
  // hundred where they sit on separate chiplets (which may read memory faster together: two links).
  static double timed_round_trip(ThreadPool& pool, int trips);
  // FLOP/s of an sgemm on the batched MLP shape (OpenBLAS, one slice of columns per thread, as the model
  // calls it): the best of `passes` products.
  double sgemm_flops(int passes);
  // Seconds `pool`'s threads take for one such product (sgemm_flop() FLOP), as timed_read.
  double timed_sgemm(ThreadPool& pool);
  static double sgemm_flop();

 private:
  ThreadPool pool_;
  size_t floats_ = 0;  // read from the buffer (set_read_bytes)
  double last_read_sum_ = 0;
  struct Buffers;
  std::unique_ptr<Buffers> buffers_;
};

}  // namespace cortex::bench
