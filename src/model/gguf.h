// The GGUF format (version 2 and 3): "GGUF", version, tensor and metadata counts, typed key/value
// metadata, tensor descriptors (name, dims innermost first, ggml type, offset), then aligned tensor data.
// Reading maps the file and checks every count, string and offset against the file size.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "model/tensor.h"
#include "util/mapped_file.h"

namespace cortex::model {

// A metadata value: integers widen to int64 / uint64, floats to double; arrays of strings and numbers.
using GgufValue = std::variant<int64_t, uint64_t, double, bool, std::string, std::vector<std::string>,
                               std::vector<int64_t>, std::vector<double>>;

class GgufFile {
 public:
  // Maps and validates `path`; throws Error(kNotFound / kCorruptData / kUnsupported) naming the file.
  static std::unique_ptr<GgufFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const MappedFile& mapping() const { return *file_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;

  // Typed metadata accessors: nullopt when absent; throw corrupt_data naming the key on a wrong type.
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  const std::vector<std::string>* get_string_array(const std::string& key) const;

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, GgufValue> metadata_;
  std::map<std::string, TensorView> tensors_;
};

// Writes a GGUF v3 file with F32, F16 or Q8_0 tensors. Metadata and tensor descriptors are declared first;
// tensor data is then streamed in declaration order (as F32 values, converted to each tensor's type).
class GgufWriter {
 public:
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;  // row-major, outermost first (written to the file innermost first)
    DType dtype = DType::kF32;   // F32, F16 or Q8_0 (innermost dimension a multiple of 32)
  };
  explicit GgufWriter(std::string path) : path_(std::move(path)) {}
  ~GgufWriter();
  void add_metadata(const std::string& key, GgufValue value);
  // Writes the header, metadata and tensor descriptors.
  void begin(const std::vector<Entry>& entries);
  void write_next(const float* values, size_t count);
  void finish();

 private:
  std::string path_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Entry> entries_;
  size_t next_ = 0;
  std::FILE* out_ = nullptr;
};

}  // namespace cortex::model
