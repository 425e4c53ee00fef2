#include "cli/commands/operator_access.h"

#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>

namespace cortex::cli {

std::string self_executable() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "cortex" : p.string();
}

control::OperatorLaunch default_operator_launch() {
  control::OperatorLaunch launch;
  launch.cortex_binary = self_executable();
  if (const char* h = std::getenv("CORTEX_GATEWAY_HOST"); h && *h) launch.gateway_host = h;
  if (const char* p = std::getenv("CORTEX_GATEWAY_PORT"); p && *p) launch.gateway_port = std::atoi(p);
  return launch;
}

control::OperatorClient operator_client(bool start) {
  control::OperatorClient client(control::cortex_home());
  if (start) client.ensure_running(default_operator_launch());
  return client;
}

void add_output_option(CLI::App* command, std::string& output) {
  command->add_option("-o,--output", output, "Output format: table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
}

std::string age_since(int64_t unix_seconds) {
  int64_t s = static_cast<int64_t>(std::time(nullptr)) - unix_seconds;
  if (s < 0) s = 0;
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  if (s < 172800) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

}  // namespace cortex::cli
