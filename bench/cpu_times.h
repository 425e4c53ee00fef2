// The machine's CPU time from /proc/stat, for telling what a benchmark measured from what the hypervisor
// took: on a virtual machine, "steal" is the time its virtual CPUs were ready to run but the host ran
// something else, which slows whatever the benchmark was timing then. (In a container /proc/stat is the
// host's or the VM's, all CPUs together: a share read there is diluted by CPUs the benchmark does not use.)
#pragma once

#include <optional>
#include <string_view>

namespace cortex::bench {

struct CpuTimes {
  // The counters tick 100 times a second (USER_HZ) per CPU: a share taken over less than this much CPU
  // time (50 ticks: 0.25 s on two CPUs) would move by 2 % or more with a single tick.
  static constexpr double kMinSecondsForShare = 0.5;

  double steal_seconds = 0;  // all CPUs together
  double total_seconds = 0;  // all CPUs' time in every state (busy, idle, stolen, ...)
  CpuTimes& operator+=(const CpuTimes& t) {
    steal_seconds += t.steal_seconds, total_seconds += t.total_seconds;
    return *this;
  }
  CpuTimes operator-(const CpuTimes& t) const {
    return {steal_seconds - t.steal_seconds, total_seconds - t.total_seconds};
  }
  // The share of the time that was stolen (0 to 1); nullopt over less than kMinSecondsForShare.
  std::optional<double> steal_share() const {
    if (total_seconds < kMinSecondsForShare) return std::nullopt;
    return steal_seconds / total_seconds;
  }
};

// /proc/stat's first line ("cpu  user nice system idle iowait irq softirq steal guest guest_nice", in
// ticks_per_second units) as times; nullopt for anything else (fewer than eight counters, another name).
std::optional<CpuTimes> parse_cpu_times(std::string_view line, double ticks_per_second);

// The times since boot from /proc/stat; nullopt where it is not there or not as Linux writes it.
std::optional<CpuTimes> read_cpu_times();

}  // namespace cortex::bench
