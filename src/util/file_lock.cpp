#include "util/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "util/error.h"

namespace cortex {

namespace {

// Whether the file open as `fd` is still the one at `path` (a holder may have removed it).
bool still_at_path(int fd, const std::string& path) {
  struct stat open_file {
  }, at_path{};
  return ::fstat(fd, &open_file) == 0 && ::stat(path.c_str(), &at_path) == 0 &&
         open_file.st_dev == at_path.st_dev && open_file.st_ino == at_path.st_ino;
}

}  // namespace

FileLock::FileLock(const std::string& path, const std::function<void()>& waiting,
                   const std::atomic<bool>* cancel) {
  acquire(path, true, waiting, cancel);
}

FileLock::FileLock(const std::string& path, NoWait) {
  acquire(path, false, {}, nullptr);
}

std::unique_ptr<FileLock> FileLock::try_lock(const std::string& path) {
  std::unique_ptr<FileLock> lock(new FileLock(path, NoWait{}));
  return lock->fd_ >= 0 ? std::move(lock) : nullptr;
}

bool FileLock::held_by_another(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

bool FileLock::acquire(const std::string& path, bool wait, const std::function<void()>& waiting,
                       const std::atomic<bool>* cancel) {
  bool told = false;
  for (;;) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(ErrorCode::kInternal, "cannot open " + path + ": " + std::strerror(errno));
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err != EWOULDBLOCK && err != EINTR) {
        ::close(fd_);
        fd_ = -1;
        throw Error(ErrorCode::kInternal, "cannot lock " + path + ": " + std::strerror(err));
      }
      if (!wait) {
        ::close(fd_);
        fd_ = -1;
        return false;
      }
      if (!told && waiting) waiting();
      told = true;
      if (cancel && cancel->load()) {
        ::close(fd_);
        fd_ = -1;
        throw Error(ErrorCode::kInternal, "cancelled while waiting for " + path);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (still_at_path(fd_, path)) return true;
    ::close(fd_);  // the holder before us removed the file: lock the one there now
    fd_ = -1;
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace cortex
