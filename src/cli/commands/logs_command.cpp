// cortex logs API [-f]: the output of an API's replicas, each line prefixed with its replica.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "cli/commands/commands.h"
#include "cli/commands/operator_access.h"
#include "util/error.h"

namespace cortex::cli {

namespace fs = std::filesystem;

namespace {

// Prints what was appended to `path` since `offset` (whole lines only), and advances offset.
void print_new_lines(const std::string& path, std::streamoff& offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size < offset) offset = 0;  // truncated
  if (size == offset) return;
  in.seekg(offset);
  std::string text(static_cast<size_t>(size - offset), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  size_t last = text.rfind('\n');
  if (last == std::string::npos) return;
  std::string replica = fs::path(path).stem().string();
  size_t start = 0;
  while (start <= last) {
    size_t end = text.find('\n', start);
    std::cout << "[" << replica << "] " << text.substr(start, end - start) << "\n";
    start = end + 1;
  }
  offset += static_cast<std::streamoff>(last + 1);
  std::cout.flush();
}

}  // namespace

void add_logs_command(CLI::App& app) {
  struct Options {
    std::string api;
    bool follow = false;
  };
  auto o = std::make_shared<Options>();
  auto* logs = app.add_subcommand("logs", "Print the logs of an API's replicas");
  logs->add_option("api", o->api, "API name")->required();
  logs->add_flag("-f,--follow", o->follow, "Keep printing new lines (and new replicas) until interrupted");
  logs->callback([o] {
    auto client = operator_client(false);
    std::map<std::string, std::streamoff> offsets;  // by log file
    auto refresh_files = [&] {
      auto api = client.get("/v1/apis/" + o->api);
      for (const auto& path : api["logs"]) offsets.emplace(path.get<std::string>(), 0);
    };
    refresh_files();
    // Replicas that failed or were replaced leave their logs beside the current ones: without -f, show
    // those too (the reason a replica died is often there).
    if (!o->follow) {
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(fs::path(client.home()) / "logs" / o->api, ec))
        if (e.path().extension() == ".log") offsets.emplace(e.path().string(), 0);
    }
    for (auto& [path, offset] : offsets) print_new_lines(path, offset);
    if (!o->follow) return;
    auto last_refresh = std::chrono::steady_clock::now();
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (std::chrono::steady_clock::now() - last_refresh > std::chrono::seconds(2)) {
        refresh_files();  // throws (and ends) once the API is deleted
        last_refresh = std::chrono::steady_clock::now();
      }
      for (auto& [path, offset] : offsets) print_new_lines(path, offset);
    }
  });
}

}  // namespace cortex::cli
