// An exclusive advisory lock on a file (flock), held until the object is destroyed or the process ends:
// how processes that share a cache (downloads, converted weights) take turns filling one entry.
#pragma once

#include <atomic>
#include <functional>
#include <string>

namespace cortex {

class FileLock {
 public:
  // Opens (creating) `path` and takes its lock, calling `waiting()` once if another process holds it,
  // and polling every 100 ms until it is free. Throws Error (kInternal) naming the file when it cannot be
  // opened or locked, or "cancelled" when *cancel turns true while waiting.
  FileLock(const std::string& path, const std::function<void()>& waiting = {},
           const std::atomic<bool>* cancel = nullptr);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace cortex
