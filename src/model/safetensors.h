// The safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the tensor bytes.
// Reading maps the file and validates every entry against the file size before any tensor is used.
#pragma once

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/tensor.h"
#include "util/mapped_file.h"

namespace cortex::model {

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws Error(kNotFound / kCorruptData) with one line naming the file.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const MappedFile& mapping() const { return *file_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  // The tensor `name`, or nullptr.
  const TensorView* find(const std::string& name) const;

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, TensorView> tensors_;
};

// Streams a safetensors file tensor by tensor, so multi-gigabyte models never sit in memory whole.
// All tensors are declared up front (the header comes first); then their data is written in that order.
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
  };
  // Writes the header for F32 tensors `entries`; throws Error naming `path` on I/O failure.
  SafetensorsWriter(const std::string& path, const std::vector<Entry>& entries);
  ~SafetensorsWriter();
  // Appends the next tensor's values (must match the declared order and element count).
  void write_next(const float* values, size_t count);
  // Checks that every tensor was written and closes the file.
  void finish();

 private:
  std::string path_;
  std::vector<Entry> entries_;
  size_t next_ = 0;
  std::FILE* out_ = nullptr;
};

}  // namespace cortex::model
