// Measures this machine's limits in the same run as a benchmark, so that figures can be reported as a
// fraction of what the hardware allows: memory read bandwidth and single-precision matrix-multiply rate.
#pragma once

namespace cortex::bench {

// Bytes per second read by `threads` threads streaming through a buffer much larger than the caches.
double measure_read_bandwidth(int threads);
// FLOP/s of large sgemm products (OpenBLAS, one slice of columns per thread, as the model calls it).
double measure_sgemm_flops(int threads);

}  // namespace cortex::bench
