// The local model cache, $CORTEX_HOME/cache: one folder per model URI (and S3 endpoint) holding
//   model/           the model's files under their own names (what the loader reads)
//   manifest.json    {uri, complete, files: [{name, size, etag}]}: what model/ holds
//   .lock            flock'd while a process checks or fills the entry, so two replicas starting at once
//                    download once (and so that `cortex cache rm` never removes an entry being filled)
// manifest.json's modification time is the entry's "last used": each fetch that serves the entry sets it.
// A file is downloaded to model/.NAME.part and renamed into place only after its size (and checksum, when
// the ETag carries one) matched, so model/ never holds a file that merely looks complete.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "util/cache_files.h"
#include "util/file_lock.h"

namespace cortex::storage {

struct CachedFile {
  std::string name;
  uint64_t size = 0;
  std::string etag;
  bool operator==(const CachedFile&) const = default;
};

struct CacheManifest {
  std::string uri;
  bool complete = false;
  std::vector<CachedFile> files;
};

class CacheEntry {
 public:
  CacheEntry(const std::string& cache_dir, const std::string& key);
  CacheEntry(const CacheEntry&) = delete;
  CacheEntry& operator=(const CacheEntry&) = delete;

  const std::string& dir() const { return dir_; }
  std::string model_dir() const { return dir_ + "/model"; }

  // Takes the entry's lock, calling `waiting()` once if another process holds it; throws
  // Error "cancelled" when *cancel turns true while waiting.
  void lock(const std::function<void()>& waiting, const std::atomic<bool>* cancel);
  std::optional<CacheManifest> read_manifest() const;
  void write_manifest(const CacheManifest& m) const;
  // Stamps the entry as used now (see above).
  void mark_used() const;

 private:
  std::string dir_;
  std::unique_ptr<FileLock> lock_;  // while lock()ed
};

// What `cortex cache ls` shows of an entry.
struct CacheEntryInfo {
  std::string name;  // the folder's name
  std::string dir;
  std::string uri;        // the manifest's; "" when the entry has no readable manifest
  bool complete = false;  // every file of the model is in place
  bool busy = false;      // a process holds the entry's lock: it is checking or downloading it
  bool in_use = false;    // a process maps a file of the model (file_in_use): any user's, in any container
  uint64_t bytes = 0;     // on disk, partial downloads included
  std::optional<std::chrono::system_clock::time_point> last_used;
  std::string stamp;  // manifest.json's file_stamp: changes when the entry is written or used
};
// The entries under `cache_dir` (folders named by cache_entry_name), by name; none when it does not exist.
std::vector<CacheEntryInfo> list_cache_entries(const std::string& cache_dir);

// Removes the entry folder `dir` under its lock, so that no process is filling it meanwhile. Processes
// that map its files keep their pages; a process waiting for the lock starts the entry again.
// `unchanged`, when given, is asked once the lock is held (whether the entry is still as it was when it
// was chosen); false keeps it. Throws Error naming what cannot be removed.
CacheRemoval remove_cache_entry(const std::string& dir, const std::function<bool()>& unchanged = {});

// The folder name for a URI: its readable part, shortened, and a hash of the whole key.
std::string cache_entry_name(const std::string& key);

}  // namespace cortex::storage
