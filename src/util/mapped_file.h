// A read-only memory mapping of a whole file. Weights are used in place from the mapping, so several
// processes that map one file share its pages in the page cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cortex {

class MappedFile {
 public:
  // Maps `path` read-only. Throws Error (kNotFound, kCorruptData) naming the file. Unless `mark_in_use`
  // is false (a look at a file rather than a use of it), the file counts as in use while it stays mapped
  // (file_in_use in util/cache_files.h), for every process on the machine, of any user: the mapping holds
  // a shared flock on it.
  static std::unique_ptr<MappedFile> open(const std::string& path, bool mark_in_use = true);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // What read_on_huge_pages found and did.
  struct HugePageRead {
    size_t wanted = 0;  // bytes of the whole 2 MiB pages inside the parts
    size_t before = 0;  // bytes of this mapping on 2 MiB pages once the parts were read in
    size_t after = 0;   // the same after reading them again (before, when they were not)
    bool read_again = false;
  };
  // Reads `parts` of the file ((offset, bytes) pairs) into memory now, on 2 MiB pages where the system
  // allows: for data used in place and streamed whole over and over (weights). The page cache keeps a
  // file in the pieces it was read or written in, whatever a mapping asks for: a file written in small
  // pieces (a copy, a download) may sit in 4 KiB pages, and a file read back on 2 MiB pages may lose
  // some of them later. When any of the parts' whole 2 MiB pages come out on 4 KiB pages, all of them are
  // dropped from the page cache and read again, once, through this mapping (advised for 2 MiB pages
  // when opened); pages another process maps stay as they are (and cost no read). Throws Error
  // (kInvalidArgument) for a part beyond the file.
  HugePageRead read_on_huge_pages(const std::vector<std::pair<size_t, size_t>>& parts) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size, int use_fd)
      : path_(std::move(path)), data_(data), size_(size), use_fd_(use_fd) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
  int use_fd_;  // holds the in-use mark (a shared flock); -1 without one
};

}  // namespace cortex
