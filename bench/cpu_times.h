// The machine's CPU time from /proc/stat, for telling what a benchmark measured from what the hypervisor
// took: on a virtual machine, "steal" is the time its virtual CPUs were ready to run but the host ran
// something else, which slows whatever the benchmark was timing then.
#pragma once

#include <optional>

namespace cortex::bench {

struct CpuTimes {
  double steal_seconds = 0;  // all CPUs together
  double total_seconds = 0;  // all CPUs' time in every state (busy, idle, stolen, ...)
  CpuTimes& operator+=(const CpuTimes& t) {
    steal_seconds += t.steal_seconds, total_seconds += t.total_seconds;
    return *this;
  }
  CpuTimes operator-(const CpuTimes& t) const {
    return {steal_seconds - t.steal_seconds, total_seconds - t.total_seconds};
  }
  // The share of the time that was stolen (0 to 1); nullopt when no time passed.
  std::optional<double> steal_share() const {
    if (total_seconds <= 0) return std::nullopt;
    return steal_seconds / total_seconds;
  }
};

// The times since boot; nullopt where /proc/stat is not there or not as Linux writes it.
std::optional<CpuTimes> read_cpu_times();

}  // namespace cortex::bench
