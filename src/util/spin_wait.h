// Waiting for another thread by spinning on a value it will change: a pause between looks, and after
// many looks a yield between them, so that a thread that outnumbers the CPUs lets the one it waits for run.
#pragma once

#include <thread>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace cortex {

// Pause instructions before yielding (or sleeping, for the pool's idle workers): ~250 us on Ice Lake (a
// pause is ~40 cycles there, ~10 on older cores). Shorter (~30 us) was slower for decode, 8× longer for the
// server (docs/performance.md).
inline constexpr int kSpinIterations = 1 << 14;

// One look's wait: a pause instruction (a yield where there is none).
inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// The wait after the look numbered `spins` (from 0) found nothing changed.
inline void spin_pause(int spins) {
  if (spins < kSpinIterations) {
    cpu_relax();
  } else {
    std::this_thread::yield();
  }
}

}  // namespace cortex
