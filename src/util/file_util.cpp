#include "util/file_util.h"

#include <cstdio>
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

}  // namespace cortex
