#include "model/gguf.h"

#include <cstring>

#include "model/weight_types.h"
#include "util/aligned_vector.h"
#include "util/error.h"

namespace cortex::model {

namespace {

enum GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
enum GgmlType : uint32_t { kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ8_0 = 8 };

constexpr uint32_t kMagic = 0x46554747;     // "GGUF" little-endian
constexpr uint64_t kDefaultAlignment = 32;  // when a file does not give general.alignment
// Where the tensor data of the files we write starts (general.alignment, written with the metadata).
constexpr uint64_t kWriteAlignment = kCacheLineBytes;

// Bounds-checked little-endian reader over the mapped file.
class Reader {
 public:
  Reader(const MappedFile& f) : f_(f) {}
  size_t pos() const { return pos_; }

  template <class T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, f_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string() {
    uint64_t len = read<uint64_t>();
    need(len);
    std::string s(reinterpret_cast<const char*>(f_.data() + pos_), len);
    pos_ += len;
    return s;
  }
  void need(uint64_t n) const {
    if (n > f_.size() - pos_)
      throw corrupt_data(f_.path() + ": truncated: needs " + std::to_string(n) + " bytes at offset " +
                         std::to_string(pos_) + " but the file has " + std::to_string(f_.size()));
  }

 private:
  const MappedFile& f_;
  size_t pos_ = 0;
};

int64_t read_integer(Reader& r, uint32_t type, bool* ok) {
  *ok = true;
  switch (type) {
    case kU8:
      return r.read<uint8_t>();
    case kI8:
      return r.read<int8_t>();
    case kU16:
      return r.read<uint16_t>();
    case kI16:
      return r.read<int16_t>();
    case kU32:
      return r.read<uint32_t>();
    case kI32:
      return r.read<int32_t>();
    case kI64:
      return r.read<int64_t>();
    case kBool:
      return r.read<uint8_t>();
    default:
      *ok = false;
      return 0;
  }
}

GgufValue read_value(Reader& r, uint32_t type, const std::string& path, const std::string& key) {
  bool ok = false;
  switch (type) {
    case kF32:
      return static_cast<double>(r.read<float>());
    case kF64:
      return r.read<double>();
    case kU64:
      return r.read<uint64_t>();
    case kBool:
      return r.read<uint8_t>() != 0;
    case kString:
      return r.read_string();
    case kArray: {
      uint32_t elem = r.read<uint32_t>();
      uint64_t count = r.read<uint64_t>();
      r.need(count);  // every element takes at least one byte: rejects absurd counts early
      if (elem == kString) {
        std::vector<std::string> v;
        v.reserve(count);
        for (uint64_t i = 0; i < count; ++i) v.push_back(r.read_string());
        return v;
      }
      if (elem == kF32 || elem == kF64) {
        std::vector<double> v;
        v.reserve(count);
        for (uint64_t i = 0; i < count; ++i) v.push_back(elem == kF32 ? r.read<float>() : r.read<double>());
        return v;
      }
      std::vector<int64_t> v;
      v.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        int64_t x = elem == kU64 ? static_cast<int64_t>(r.read<uint64_t>()) : read_integer(r, elem, &ok);
        if (elem != kU64 && !ok)
          throw corrupt_data(path + ": metadata " + key + ": unknown array element type " +
                             std::to_string(elem));
        v.push_back(x);
      }
      return v;
    }
    default: {
      int64_t x = read_integer(r, type, &ok);
      if (!ok)
        throw corrupt_data(path + ": metadata " + key + ": unknown value type " + std::to_string(type));
      return x;
    }
  }
}

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  auto result = std::unique_ptr<GgufFile>(new GgufFile());
  result->file_ = MappedFile::open(path);
  const MappedFile& f = *result->file_;
  Reader r(f);
  if (f.size() < 4 || r.read<uint32_t>() != kMagic)
    throw corrupt_data(path + ": not a GGUF file (bad magic)");
  uint32_t version = r.read<uint32_t>();
  if (version != 2 && version != 3)
    throw unsupported(path + ": GGUF version " + std::to_string(version) + " (supported: 2, 3)");
  uint64_t tensor_count = r.read<uint64_t>();
  uint64_t kv_count = r.read<uint64_t>();
  r.need(kv_count);
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key = r.read_string();
    uint32_t type = r.read<uint32_t>();
    result->metadata_[key] = read_value(r, type, path, key);
  }
  uint64_t alignment = kDefaultAlignment;
  if (auto a = result->get_int("general.alignment")) {
    if (*a <= 0 || (*a & (*a - 1)) != 0)
      throw corrupt_data(path + ": general.alignment must be a power of two");
    alignment = static_cast<uint64_t>(*a);
  }
  struct Pending {
    TensorView view;
    uint64_t offset;
  };
  std::vector<Pending> pending;
  r.need(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) {
    Pending p;
    p.view.name = r.read_string();
    uint32_t n_dims = r.read<uint32_t>();
    if (n_dims == 0 || n_dims > 4)
      throw corrupt_data(path + ": tensor " + p.view.name + ": bad dimension count");
    std::vector<int64_t> dims(n_dims);
    for (auto& d : dims) {
      uint64_t v = r.read<uint64_t>();
      if (v > (uint64_t{1} << 40)) throw corrupt_data(path + ": tensor " + p.view.name + ": bad dimension");
      d = static_cast<int64_t>(v);
    }
    p.view.shape.assign(dims.rbegin(), dims.rend());  // GGUF lists the innermost dimension first
    uint32_t type = r.read<uint32_t>();
    switch (type) {
      case kGgmlF32:
        p.view.dtype = DType::kF32;
        break;
      case kGgmlF16:
        p.view.dtype = DType::kF16;
        break;
      case kGgmlQ8_0:
        p.view.dtype = DType::kQ8_0;
        break;
      default:
        throw unsupported(path + ": tensor " + p.view.name + ": ggml type " + std::to_string(type) +
                          " is not supported (F32, F16, Q8_0)");
    }
    if (p.view.dtype == DType::kQ8_0 && p.view.shape.back() % 32 != 0)
      throw corrupt_data(path + ": tensor " + p.view.name + ": Q8_0 rows of " +
                         std::to_string(p.view.shape.back()) + " values are not whole blocks of 32");
    p.view.bytes = dtype_bytes(p.view.dtype, p.view.elements());
    p.offset = r.read<uint64_t>();
    pending.push_back(std::move(p));
  }
  uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  for (auto& p : pending) {
    if (data_start > f.size() || p.offset > f.size() - data_start ||
        p.view.bytes > f.size() - data_start - p.offset)
      throw corrupt_data(path + ": truncated: tensor " + p.view.name + " ends past the end of the file (" +
                         std::to_string(f.size()) + " bytes)");
    p.view.data = f.data() + data_start + p.offset;
    const uintptr_t need = p.view.dtype == DType::kF32 ? 4 : 2;  // F16 values, Q8_0 scales: 2 bytes
    if (reinterpret_cast<uintptr_t>(p.view.data) % need != 0)
      throw corrupt_data(path + ": tensor " + p.view.name + ": data is not " + std::to_string(need) +
                         "-byte aligned");
    result->tensors_.emplace(p.view.name, std::move(p.view));
  }
  return result;
}

const TensorView* GgufFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return std::nullopt;
  if (auto* s = std::get_if<std::string>(&it->second)) return *s;
  throw corrupt_data(path() + ": metadata " + key + " must be a string");
}

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return std::nullopt;
  if (auto* i = std::get_if<int64_t>(&it->second)) return *i;
  if (auto* u = std::get_if<uint64_t>(&it->second)) return static_cast<int64_t>(*u);
  throw corrupt_data(path() + ": metadata " + key + " must be an integer");
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return std::nullopt;
  if (auto* d = std::get_if<double>(&it->second)) return *d;
  if (auto* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  throw corrupt_data(path() + ": metadata " + key + " must be a number");
}

const std::vector<std::string>* GgufFile::get_string_array(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return nullptr;
  if (auto* v = std::get_if<std::vector<std::string>>(&it->second)) return v;
  throw corrupt_data(path() + ": metadata " + key + " must be an array of strings");
}

// ---- writer ----

namespace {
void put(std::FILE* f, const void* p, size_t n, const std::string& path) {
  if (n != 0 && std::fwrite(p, 1, n, f) != n)
    throw Error(ErrorCode::kResourceExhausted, path + ": write failed");
}
template <class T>
void put_pod(std::FILE* f, T v, const std::string& path) {
  put(f, &v, sizeof v, path);
}
void put_string(std::FILE* f, const std::string& s, const std::string& path) {
  put_pod<uint64_t>(f, s.size(), path);
  put(f, s.data(), s.size(), path);
}
// Zeros up to the next multiple of kWriteAlignment after `written` bytes.
void put_padding(std::FILE* f, uint64_t written, const std::string& path) {
  static const char zeros[kWriteAlignment] = {};
  put(f, zeros, (kWriteAlignment - written % kWriteAlignment) % kWriteAlignment, path);
}

void put_value(std::FILE* f, const GgufValue& v, const std::string& path) {
  if (auto* i = std::get_if<int64_t>(&v)) {
    // GGUF readers expect u32 for most counts; small non-negative integers are written that way.
    if (*i >= 0 && *i <= UINT32_MAX) {
      put_pod<uint32_t>(f, kU32, path), put_pod<uint32_t>(f, static_cast<uint32_t>(*i), path);
    } else {
      put_pod<uint32_t>(f, kI64, path), put_pod<int64_t>(f, *i, path);
    }
  } else if (auto* u = std::get_if<uint64_t>(&v)) {
    put_pod<uint32_t>(f, kU64, path), put_pod<uint64_t>(f, *u, path);
  } else if (auto* d = std::get_if<double>(&v)) {
    put_pod<uint32_t>(f, kF32, path), put_pod<float>(f, static_cast<float>(*d), path);
  } else if (auto* b = std::get_if<bool>(&v)) {
    put_pod<uint32_t>(f, kBool, path), put_pod<uint8_t>(f, *b ? 1 : 0, path);
  } else if (auto* s = std::get_if<std::string>(&v)) {
    put_pod<uint32_t>(f, kString, path), put_string(f, *s, path);
  } else if (auto* sa = std::get_if<std::vector<std::string>>(&v)) {
    put_pod<uint32_t>(f, kArray, path), put_pod<uint32_t>(f, kString, path);
    put_pod<uint64_t>(f, sa->size(), path);
    for (auto& s : *sa) put_string(f, s, path);
  } else if (auto* ia = std::get_if<std::vector<int64_t>>(&v)) {
    put_pod<uint32_t>(f, kArray, path), put_pod<uint32_t>(f, kI32, path);
    put_pod<uint64_t>(f, ia->size(), path);
    for (int64_t x : *ia) put_pod<int32_t>(f, static_cast<int32_t>(x), path);
  } else if (auto* da = std::get_if<std::vector<double>>(&v)) {
    put_pod<uint32_t>(f, kArray, path), put_pod<uint32_t>(f, kF32, path);
    put_pod<uint64_t>(f, da->size(), path);
    for (double x : *da) put_pod<float>(f, static_cast<float>(x), path);
  }
}
}  // namespace

GgufWriter::~GgufWriter() {
  if (out_ != nullptr) std::fclose(out_);
}

void GgufWriter::add_metadata(const std::string& key, GgufValue value) {
  if (key == "general.alignment")
    throw invalid_argument(path_ + ": general.alignment is the writer's to set");
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::begin(const std::vector<Entry>& entries) {
  entries_ = entries;
  // Tensor data on cache lines: F32 weights are read in place by 64-byte loads, which straddle two lines
  // half the time at GGUF's default alignment of 32. The file says so in general.alignment, which readers
  // honour.
  metadata_.emplace_back("general.alignment", static_cast<int64_t>(kWriteAlignment));
  out_ = std::fopen(path_.c_str(), "wb");
  if (out_ == nullptr) throw invalid_argument(path_ + ": cannot create file");
  put_pod<uint32_t>(out_, kMagic, path_);
  put_pod<uint32_t>(out_, 3, path_);
  put_pod<uint64_t>(out_, entries_.size(), path_);
  put_pod<uint64_t>(out_, metadata_.size(), path_);
  for (auto& [key, value] : metadata_) {
    put_string(out_, key, path_);
    put_value(out_, value, path_);
  }
  uint64_t offset = 0;
  for (auto& e : entries_) {
    put_string(out_, e.name, path_);
    put_pod<uint32_t>(out_, static_cast<uint32_t>(e.shape.size()), path_);
    int64_t n = 1;
    for (auto it = e.shape.rbegin(); it != e.shape.rend(); ++it) {
      put_pod<uint64_t>(out_, static_cast<uint64_t>(*it), path_);
      n *= *it;
    }
    uint32_t type = kGgmlF32;
    if (e.dtype == DType::kF16) type = kGgmlF16;
    if (e.dtype == DType::kQ8_0) {
      if (e.shape.empty() || e.shape.back() % kQ8Block != 0)
        throw invalid_argument(path_ + ": tensor " + e.name + ": Q8_0 rows must be a multiple of 32 values");
      type = kGgmlQ8_0;
    }
    if (e.dtype == DType::kBF16) throw invalid_argument(path_ + ": BF16 tensors cannot be written");
    put_pod<uint32_t>(out_, type, path_);
    put_pod<uint64_t>(out_, offset, path_);
    offset += (dtype_bytes(e.dtype, n) + kWriteAlignment - 1) / kWriteAlignment * kWriteAlignment;
  }
  put_padding(out_, static_cast<uint64_t>(std::ftell(out_)), path_);
}

void GgufWriter::write_next(const float* values, size_t count) {
  if (next_ >= entries_.size()) throw Error(ErrorCode::kInternal, path_ + ": more tensors than declared");
  const DType t = entries_[next_].dtype;
  const size_t bytes = dtype_bytes(t, static_cast<int64_t>(count));
  if (t == DType::kF32) {
    put(out_, values, bytes, path_);
  } else {
    std::vector<std::byte> converted(bytes);
    convert_from_f32(converted.data(), t, values, static_cast<int64_t>(count));
    put(out_, converted.data(), bytes, path_);
  }
  put_padding(out_, bytes, path_);
  ++next_;
}

void GgufWriter::finish() {
  if (next_ != entries_.size()) throw Error(ErrorCode::kInternal, path_ + ": not every tensor was written");
  int rc = std::fclose(out_);
  out_ = nullptr;
  if (rc != 0) throw Error(ErrorCode::kResourceExhausted, path_ + ": write failed");
}

}  // namespace cortex::model
