// What the cache commands need to know of files on disk: the space they take, when a loader last used
// them, and which running processes map them (a replica maps its model's files while it runs).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

namespace cortex {

// Bytes on disk of a file, or of every file under a folder (allocated blocks, as `du` counts them: a
// download's partial file with holes counts what it holds). 0 for what does not exist.
uint64_t disk_usage(const std::string& path);

// A cache entry's "last used" stamp is its file's modification time, set to now each time a loader uses
// it (mark_used) and whenever it is written. Reading it does not change it.
void mark_used(const std::string& path);  // best effort: a file that cannot be touched is left as it is
std::optional<std::chrono::system_clock::time_point> last_used(const std::string& path);

// The files that running processes map (from /proc/PID/maps of the processes this user may read), each
// with those processes' ids. Files removed since they were mapped are left out.
using MappedFiles = std::map<std::string, std::set<int>>;
MappedFiles files_mapped_by_processes();
// The processes that map `path`, or any file under it when it is a folder.
std::set<int> processes_mapping(const MappedFiles& mapped, const std::string& path);

}  // namespace cortex
