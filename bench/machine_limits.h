// Measures this machine's limits in the same run as a benchmark, so that figures can be reported as a
// fraction of what the hardware allows: memory read bandwidth and single-precision matrix-multiply rate.
//
// On a shared machine both limits move from one second to the next (other tenants, clock changes), so a
// benchmark measures them in passes interleaved with its own tests and keeps the best of each: the best
// pass of a probe and the best run of a test are both what the machine gives when nothing else competes.
// A pass should last about as long as the test it is set beside: a best over much shorter windows is
// above anything a longer test can average (read_bandwidth's reads_per_pass).
#pragma once

#include <cstddef>
#include <memory>

#include "util/thread_pool.h"

namespace cortex::bench {

class MachineLimits {
 public:
  // `bytes`: the size of the working set being compared (a model's weights). On machines whose last-level
  // cache holds a large share of that set, a buffer far beyond it would understate what streaming it
  // reaches. Allocates and touches the buffer once.
  MachineLimits(int threads, size_t bytes);
  ~MachineLimits();

  // Bytes per second read by the threads streaming the buffer: the best of `passes` passes, each
  // `reads_per_pass` reads of the whole buffer back to back, timed as one. A pass as long as the test it
  // is set beside gives that test's limit: on a shared machine the best of many short passes (one read,
  // a few milliseconds) catches moments of more bandwidth than any test of hundreds of milliseconds can
  // average.
  double read_bandwidth(int passes, int reads_per_pass = 1);
  // FLOP/s of an sgemm on the batched MLP shape (OpenBLAS, one slice of columns per thread, as the model
  // calls it): the best of `passes` products.
  double sgemm_flops(int passes);

 private:
  ThreadPool pool_;
  size_t floats_;
  struct Buffers;
  std::unique_ptr<Buffers> buffers_;
};

}  // namespace cortex::bench
