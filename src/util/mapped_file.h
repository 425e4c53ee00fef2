// A read-only memory mapping of a whole file. Weights are used in place from the mapping, so several
// processes that map one file share its pages in the page cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace cortex {

class MappedFile {
 public:
  // Maps `path` read-only. Throws Error (kNotFound, kCorruptData) naming the file.
  static std::unique_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace cortex
