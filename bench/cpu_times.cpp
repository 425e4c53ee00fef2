#include "bench/cpu_times.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace cortex::bench {

std::optional<CpuTimes> parse_cpu_times(std::string_view line, double ticks_per_second) {
  if (ticks_per_second <= 0) return std::nullopt;
  std::istringstream fields{std::string(line)};
  std::string name;
  fields >> name;
  if (name != "cpu") return std::nullopt;
  // user nice system idle iowait irq softirq steal; guest and guest_nice, after them, are also counted
  // in user and nice.
  double ticks[8];
  for (double& t : ticks)
    if (!(fields >> t) || t < 0) return std::nullopt;
  double total = 0;
  for (double t : ticks) total += t;
  return CpuTimes{ticks[7] / ticks_per_second, total / ticks_per_second};
}

std::optional<CpuTimes> read_cpu_times() {
  std::ifstream in("/proc/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return parse_cpu_times(line, static_cast<double>(sysconf(_SC_CLK_TCK)));
}

}  // namespace cortex::bench
