#include "util/mapped_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "util/error.h"
#include "util/huge_pages.h"

namespace cortex {

namespace {

// Takes the in-use mark on `fd`: a shared flock. A probe (file_in_use) holds an exclusive one for an
// instant, so this tries for up to ~50 ms; without the mark the file is still mapped and used, only not
// seen as in use by other processes.
bool mark_in_use(int fd) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (::flock(fd, LOCK_SH | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK && errno != EINTR) return false;  // a file system without flock, say
    ::usleep(1000);
  }
  return false;
}

}  // namespace

std::unique_ptr<MappedFile> MappedFile::open(const std::string& path, bool mark) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw not_found(path + ": no such file");
    throw Error(ErrorCode::kInvalidArgument, path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw invalid_argument(path + ": not a regular file");
  }
  size_t size = static_cast<size_t>(st.st_size);
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw Error(ErrorCode::kResourceExhausted, path + ": mmap failed: " + std::strerror(err));
    }
    data = static_cast<const uint8_t*>(p);
    // Weights are streamed whole at every step: on 2 MiB pages where the page cache reads them in
    // such pieces (pages already cached stay as they were read).
    advise_huge_pages(data, size);
  }
  if (!mark || !mark_in_use(fd)) {
    ::close(fd);
    fd = -1;
  }
  return std::unique_ptr<MappedFile>(new MappedFile(path, data, size, fd));
}

namespace {

// Faults [p, p + bytes) in: MADV_POPULATE_READ (Linux 5.14), else a read of each page.
void populate(const uint8_t* p, size_t bytes) {
  if (bytes == 0) return;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(p) / page * page;
  const auto end = reinterpret_cast<uintptr_t>(p) + bytes;
  if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ) == 0) return;
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < bytes; i += page) sink = sink + p[i];
}

// Parts this close count as one run (tensors padded to their file format's alignment).
constexpr size_t kRunGapBytes = 4096;

}  // namespace

MappedFile::HugePageRead MappedFile::read_on_huge_pages(
    const std::vector<std::pair<size_t, size_t>>& parts) const {
  HugePageRead r;
  for (const auto& [offset, bytes] : parts) {
    if (offset > size_ || bytes > size_ - offset)
      throw invalid_argument(path_ + ": " + std::to_string(bytes) + " bytes at offset " +
                             std::to_string(offset) + " lie beyond the file (" + std::to_string(size_) +
                             " bytes)");
    populate(data_ + offset, bytes);
  }
  // Parts one after the other (tensors, with at most an alignment's padding between them) make one run;
  // the 2 MiB pages wanted are the whole ones inside each run.
  std::vector<std::pair<size_t, size_t>> runs(parts);  // (begin, end)
  for (auto& [offset, bytes] : runs) bytes += offset;
  std::sort(runs.begin(), runs.end());
  std::vector<std::pair<size_t, size_t>> huge;  // (offset, bytes)
  const auto base = reinterpret_cast<uintptr_t>(data_);
  for (size_t i = 0; i < runs.size();) {
    const size_t first = runs[i].first;
    size_t last = runs[i].second;
    for (++i; i < runs.size() && runs[i].first <= last + kRunGapBytes; ++i)
      last = std::max(last, runs[i].second);
    const auto [begin, end] = whole_huge_pages(base + first, base + last);
    if (end > begin) {
      huge.emplace_back(begin - base, end - begin);
      r.wanted += end - begin;
    }
  }
  // A file's 2 MiB pages map only where the mapping lies at the same offset within a 2 MiB page as the
  // file (the kernel places large file mappings so).
  if (r.wanted == 0 || base % kHugePageBytes != 0 || !system_has_huge_pages()) return r;
  r.before = r.after = huge_page_bytes_mapped(data_, size_);
  if (r.before >= r.wanted) return r;
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return r;
  fdatasync(fd);  // pages still to be written back are not dropped
  for (const auto& [offset, bytes] : huge) {
    madvise(const_cast<uint8_t*>(data_) + offset, bytes, MADV_DONTNEED);  // unmapped here: droppable
    posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(bytes), POSIX_FADV_DONTNEED);
  }
  ::close(fd);
  for (const auto& [offset, bytes] : parts) populate(data_ + offset, bytes);
  r.read_again = true;
  r.after = huge_page_bytes_mapped(data_, size_);
  return r;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), size_);
  if (use_fd_ >= 0) ::close(use_fd_);  // releases the mark
}

}  // namespace cortex
