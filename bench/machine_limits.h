// Measures this machine's limits in the same run as a benchmark, so that figures can be reported as a
// fraction of what the hardware allows: memory read bandwidth and single-precision matrix-multiply rate.
#pragma once

#include <cstddef>

namespace cortex::bench {

// Bytes per second read by `threads` threads streaming repeatedly through a buffer of `bytes` bytes. Give
// it the size of the working set being compared (a model's weights): on machines whose last-level cache
// holds a large share of that set, a buffer far beyond it would understate what streaming it can reach.
double measure_read_bandwidth(int threads, size_t bytes);
// FLOP/s of large sgemm products (OpenBLAS, one slice of columns per thread, as the model calls it).
double measure_sgemm_flops(int threads);

}  // namespace cortex::bench
