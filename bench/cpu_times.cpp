#include "bench/cpu_times.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace cortex::bench {

std::optional<CpuTimes> read_cpu_times() {
  std::ifstream in("/proc/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  // "cpu  user nice system idle iowait irq softirq steal guest guest_nice", in clock ticks; guest time is
  // also counted in user and nice.
  std::istringstream fields(line);
  std::string name;
  fields >> name;
  if (name != "cpu") return std::nullopt;
  double ticks[8];
  for (double& t : ticks)
    if (!(fields >> t)) return std::nullopt;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  if (hz <= 0) return std::nullopt;
  double total = 0;
  for (double t : ticks) total += t;
  return CpuTimes{ticks[7] / hz, total / hz};
}

}  // namespace cortex::bench
