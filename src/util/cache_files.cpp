#include "util/cache_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace cortex {

namespace fs = std::filesystem;

namespace {

// Calls visit(path, st) for each entry under the folder `dir` (lstat'ed: links are not followed; what
// cannot be read is skipped) until one call returns true; returns whether one did.
template <class Visit>
bool any_under(const std::string& dir, Visit visit) {
  std::error_code ec;
  struct stat st {};
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0 && visit(it->path().string(), st)) return true;
  }
  return false;
}

}  // namespace

uint64_t disk_usage(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  uint64_t bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return bytes;
  any_under(path, [&](const std::string&, const struct stat& entry) {
    bytes += static_cast<uint64_t>(entry.st_blocks) * 512;
    return false;
  });
  return bytes;
}

namespace {

bool regular_file_in_use(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // releases the probe's lock
  return held;
}

}  // namespace

bool file_in_use(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return false;
  if (S_ISREG(st.st_mode)) return regular_file_in_use(path);
  if (!S_ISDIR(st.st_mode)) return false;
  return any_under(path, [](const std::string& file, const struct stat& entry) {
    return S_ISREG(entry.st_mode) && regular_file_in_use(file);
  });
}

void mark_used(const std::string& path) {
  const struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  ::utimensat(AT_FDCWD, path.c_str(), times, 0);
}

std::optional<std::chrono::system_clock::time_point> last_used(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
}

std::string file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

std::string format_bytes(uint64_t bytes) {
  char text[32];
  if (bytes < 1000)
    std::snprintf(text, sizeof text, "%llu bytes", static_cast<unsigned long long>(bytes));
  else if (bytes < 1000 * 1000)
    std::snprintf(text, sizeof text, "%.0f KB", bytes / 1e3);
  else if (bytes < 1000ull * 1000 * 1000)
    std::snprintf(text, sizeof text, "%.1f MB", bytes / 1e6);
  else
    std::snprintf(text, sizeof text, "%.2f GB", bytes / 1e9);
  return text;
}

MappedFiles files_mapped_by_processes() {
  MappedFiles mapped;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string pid_text = e.path().filename().string();
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream maps(e.path() / "maps");
    std::string line;
    while (std::getline(maps, line)) {
      // address perms offset dev inode [path]; the path starts at the first '/' after the inode.
      const size_t slash = line.find('/');
      if (slash == std::string::npos) continue;
      std::string file = line.substr(slash);
      if (file.size() > 10 && file.compare(file.size() - 10, 10, " (deleted)") == 0) continue;
      mapped[file].insert(std::stoi(pid_text));
    }
  }
  return mapped;
}

std::set<int> processes_mapping(const MappedFiles& mapped, const std::string& given) {
  std::error_code ec;
  std::string path = fs::weakly_canonical(given, ec).string();  // maps name files by their real paths
  if (ec) path = given;
  std::set<int> pids;
  if (auto it = mapped.find(path); it != mapped.end()) pids = it->second;
  const std::string folder = !path.empty() && path.back() == '/' ? path : path + "/";
  for (auto it = mapped.lower_bound(folder); it != mapped.end() && it->first.starts_with(folder); ++it)
    pids.insert(it->second.begin(), it->second.end());
  return pids;
}

}  // namespace cortex
