#include "util/file_util.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace cortex {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw not_found(path + ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw invalid_argument(tmp + ": cannot create file");
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    if (!out) throw Error(ErrorCode::kResourceExhausted, tmp + ": write failed");
  }
  std::filesystem::rename(tmp, path);
}

bool file_exists(const std::string& path) {
  return std::filesystem::exists(path);
}

std::string read_file_tail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(in.tellg());
  const size_t from = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(from));
  std::string text(size - from, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

std::string cortex_home() {
  namespace fs = std::filesystem;
  if (const char* h = std::getenv("CORTEX_HOME"); h && *h) {
    std::string home = fs::absolute(h).lexically_normal().string();
    while (home.size() > 1 && home.back() == '/') home.pop_back();  // "/x/" names the folder "/x"
    return home;
  }
  const char* home = std::getenv("HOME");
  return (fs::path(home && *home ? home : "/tmp") / ".cortex").string();
}

}  // namespace cortex
