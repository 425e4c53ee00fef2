// An exclusive advisory lock on a file (flock), held until the object is destroyed or the process ends:
// how processes that share a cache (downloads, converted weights) take turns filling one entry, and how
// `cortex cache rm` makes sure that no process is filling an entry it removes.
//
// A holder may remove the lock file itself (with what it guards) before letting go. A process that was
// waiting on the removed file then finds that the lock it got is no longer the file at the path, and
// starts again on the file now there.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

namespace cortex {

class FileLock {
 public:
  // Opens (creating) `path` and takes its lock, calling `waiting()` once if another process holds it,
  // and polling every 100 ms until it is free. Throws Error (kInternal) naming the file when it cannot be
  // opened or locked (its folder is gone, say), or "cancelled" when *cancel turns true while waiting.
  FileLock(const std::string& path, const std::function<void()>& waiting = {},
           const std::atomic<bool>* cancel = nullptr);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  // The lock when no other process holds it; nullptr when one does. Throws as the constructor does.
  static std::unique_ptr<FileLock> try_lock(const std::string& path);

  // Whether another process holds the lock on `path`: false when the file does not exist or cannot be
  // read. Creates nothing; takes a shared lock for an instant to find out.
  static bool held_by_another(const std::string& path);

 private:
  struct NoWait {};
  FileLock(const std::string& path, NoWait);
  // Opens `path` and takes its lock; false when `wait` is false and another process holds it.
  bool acquire(const std::string& path, bool wait, const std::function<void()>& waiting,
               const std::atomic<bool>* cancel);

  int fd_ = -1;
};

}  // namespace cortex
