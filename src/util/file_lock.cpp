#include "util/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "util/error.h"

namespace cortex {

FileLock::FileLock(const std::string& path, const std::function<void()>& waiting,
                   const std::atomic<bool>* cancel) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(ErrorCode::kInternal, "cannot open " + path + ": " + std::strerror(errno));
  bool told = false;
  while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK && err != EINTR) {
      ::close(fd_);
      throw Error(ErrorCode::kInternal, "cannot lock " + path + ": " + std::strerror(err));
    }
    if (!told && waiting) waiting();
    told = true;
    if (cancel && cancel->load()) {
      ::close(fd_);
      throw Error(ErrorCode::kInternal, "cancelled while waiting for " + path);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace cortex
