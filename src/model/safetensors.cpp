#include "model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "util/aligned_vector.h"
#include "util/error.h"

namespace cortex::model {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;

bool parse_dtype(const std::string& s, DType* out) {
  if (s == "F32")
    *out = DType::kF32;
  else if (s == "F16")
    *out = DType::kF16;
  else if (s == "BF16")
    *out = DType::kBF16;
  else
    return false;
  return true;
}

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto result = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  result->file_ = MappedFile::open(path);
  const MappedFile& f = *result->file_;
  auto bad = [&](const std::string& what) { return corrupt_data(path + ": " + what); };
  if (f.size() < 8)
    throw bad("truncated: " + std::to_string(f.size()) + " bytes, too short for a safetensors header");
  uint64_t header_len = 0;
  std::memcpy(&header_len, f.data(), 8);
  if (header_len > kMaxHeaderBytes || header_len > f.size() - 8)
    throw bad("header length " + std::to_string(header_len) + " does not fit in a file of " +
              std::to_string(f.size()) + " bytes (not a safetensors file, or truncated)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(f.data() + 8, f.data() + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("invalid JSON header: ") + e.what());
  }
  if (!header.is_object()) throw bad("header is not a JSON object");
  const uint8_t* data_start = f.data() + 8 + header_len;
  const uint64_t data_size = f.size() - 8 - header_len;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    auto tensor_bad = [&](const std::string& what) { return bad("tensor " + name + ": " + what); };
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      throw tensor_bad("entry needs dtype, shape and data_offsets");
    TensorView t;
    t.name = name;
    if (!entry["dtype"].is_string() || !parse_dtype(entry["dtype"].get<std::string>(), &t.dtype))
      throw tensor_bad("unsupported dtype " + entry["dtype"].dump() + " (allowed: F32, F16, BF16)");
    const auto& shape = entry["shape"];
    if (!shape.is_array()) throw tensor_bad("shape must be an array");
    for (const auto& d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t{1} << 40))
        throw tensor_bad("invalid dimension " + d.dump());
      t.shape.push_back(d.get<int64_t>());
    }
    const auto& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw tensor_bad("data_offsets must be two non-negative integers");
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end) throw tensor_bad("data_offsets are reversed");
    if (end > data_size)
      throw bad("truncated: tensor " + name + " ends at byte " + std::to_string(8 + header_len + end) +
                " but the file has " + std::to_string(f.size()) + " bytes");
    t.bytes = end - begin;
    if (t.bytes != dtype_bytes(t.dtype, t.elements()))
      throw tensor_bad("shape " + t.shape_string() + " of " + dtype_name(t.dtype) + " needs " +
                       std::to_string(dtype_bytes(t.dtype, t.elements())) + " bytes but data_offsets give " +
                       std::to_string(t.bytes));
    t.data = data_start + begin;
    const uintptr_t need = t.dtype == DType::kF32 ? alignof(float) : alignof(uint16_t);
    if (reinterpret_cast<uintptr_t>(t.data) % need != 0)
      throw tensor_bad("data is not " + std::to_string(need) + "-byte aligned");
    ranges.emplace_back(begin, end);
    result->tensors_.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) throw bad("tensors overlap in the data region");
  return result;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, const std::vector<Entry>& entries)
    : path_(path), entries_(entries) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const auto& e : entries_) {
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    uint64_t bytes = static_cast<uint64_t>(n) * 4;
    header[e.name] = {{"dtype", "F32"}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Tensor data starts on a cache line: F32 weights are read in place, and vector loads straddling two
  // lines cost F32 batches ~15 % (docs/performance.md). The format allows trailing spaces in the header.
  while ((8 + text.size()) % kCacheLineBytes != 0) text.push_back(' ');
  out_ = std::fopen(path.c_str(), "wb");
  if (out_ == nullptr) throw invalid_argument(path + ": cannot create file");
  uint64_t len = text.size();
  if (std::fwrite(&len, 8, 1, out_) != 1 || std::fwrite(text.data(), 1, text.size(), out_) != text.size())
    throw Error(ErrorCode::kResourceExhausted, path + ": write failed");
}

SafetensorsWriter::~SafetensorsWriter() {
  if (out_ != nullptr) std::fclose(out_);
}

void SafetensorsWriter::write_next(const float* values, size_t count) {
  if (next_ >= entries_.size()) throw Error(ErrorCode::kInternal, path_ + ": more tensors than declared");
  int64_t n = 1;
  for (int64_t d : entries_[next_].shape) n *= d;
  if (static_cast<size_t>(n) != count)
    throw Error(ErrorCode::kInternal, path_ + ": tensor " + entries_[next_].name + " size mismatch");
  if (std::fwrite(values, sizeof(float), count, out_) != count)
    throw Error(ErrorCode::kResourceExhausted, path_ + ": write failed (disk full?)");
  ++next_;
}

void SafetensorsWriter::finish() {
  if (next_ != entries_.size()) throw Error(ErrorCode::kInternal, path_ + ": not every tensor was written");
  if (std::fclose(out_) != 0) {
    out_ = nullptr;
    throw Error(ErrorCode::kResourceExhausted, path_ + ": write failed");
  }
  out_ = nullptr;
}

}  // namespace cortex::model
