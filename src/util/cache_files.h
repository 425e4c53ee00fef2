// What the cache commands need to know of files on disk: the space they take, when a loader last used
// them, whether they changed, and which running processes map them (a replica maps its model's files
// while it runs).
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
// The file's inode and modification time as text ("" when it does not exist): when it differs from an
// earlier one, the file was replaced, written or used in between.
std::string file_stamp(const std::string& path);

// Whether a process holds `path` in use: maps it through MappedFile (which marks it with a shared flock),
// in any PID namespace and as any user, this process included. For a folder: any file under it. False
// for what does not exist or cannot be opened. Probing takes an exclusive flock for an instant.
bool file_in_use(const std::string& path);

// What removing a cache entry under its lock did: removed it; left it, because a process holds the lock
// (downloading or converting it); or left it, because it changed since it was chosen.
enum class CacheRemoval { kRemoved, kBusy, kChanged };

// Bytes for people: "812 bytes", "12 KB", "3.6 MB", "1.24 GB" (powers of 1000).
std::string format_bytes(uint64_t bytes);

// The files that running processes map (from /proc/PID/maps of the processes this user may read: not
// those of other users, nor those in other PID namespaces), each with those processes' ids. Files
// removed since they were mapped are left out.
using MappedFiles = std::map<std::string, std::set<int>>;
MappedFiles files_mapped_by_processes();
// The processes that map `path`, or any file under it when it is a folder.
std::set<int> processes_mapping(const MappedFiles& mapped, const std::string& path);

}  // namespace cortex
