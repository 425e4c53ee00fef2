#include "util/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

namespace cortex {

void advise_huge_pages(const void* data, size_t bytes) {
  const auto first = reinterpret_cast<uintptr_t>(data);
  const auto [begin, end] = whole_huge_pages(first, first + bytes);
  // EINVAL where the kernel has no transparent huge pages: the pages stay as they are.
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

bool system_has_huge_pages() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes;
  if (!std::getline(f, modes)) return false;
  return modes.find("[always]") != std::string::npos || modes.find("[madvise]") != std::string::npos;
}

void for_each_smaps_field(const std::function<void(uintptr_t, uintptr_t, const std::string&)>& fn) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  uintptr_t from = 0, to = 0;
  while (std::getline(smaps, line)) {
    // A mapping's first line: "start-end perms offset dev inode path" (its first word has no colon);
    // then "Field:   value kB" lines.
    if (line.find(':') > line.find(' ')) {
      char dash = 0;
      std::istringstream range(line);
      if (!(range >> std::hex >> from >> dash >> to) || dash != '-') from = to = 0;
      continue;
    }
    if (to > from) fn(from, to, line);
  }
}

size_t huge_page_bytes_mapped(const void* data, size_t bytes) {
  const auto begin = reinterpret_cast<uintptr_t>(data), end = begin + bytes;
  size_t total = 0;
  for_each_smaps_field([&](uintptr_t from, uintptr_t to, const std::string& line) {
    if (from >= end || begin >= to) return;
    const size_t colon = line.find(':');
    const std::string field = line.substr(0, colon);
    if (field == "AnonHugePages" || field == "FilePmdMapped" || field == "ShmemPmdMapped")
      total += std::stoull(line.substr(colon + 1)) * 1024;  // "   2048 kB"
  });
  return total;
}

}  // namespace cortex
