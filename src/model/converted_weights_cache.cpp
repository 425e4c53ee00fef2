#include "model/converted_weights_cache.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "util/error.h"

namespace cortex::model {

namespace fs = std::filesystem;

namespace {

// The file: kMagic, then little-endian u32 format version, u32 zero, u64 identity bytes, u64 piece count,
// u64 file bytes; the identity text; (u64 offset, u64 bytes) per piece; the pieces, the first at a 4 KiB
// boundary, each 64-byte aligned.
constexpr char kMagic[8] = {'C', 'X', 'W', 'E', 'I', 'G', 'H', 'T'};
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kFixedHeader = 8 + 4 + 4 + 8 + 8 + 8;
constexpr size_t kPieceAlign = 64;
constexpr size_t kDataAlign = 4096;

size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// `s` with every character but letters, digits, '-' and '.' replaced by '_': a piece of a file name.
std::string file_name_piece(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ? c : '_';
  return out;
}

// The entry's readable name: the model's folder or file name (its parent's too when that is "model", as
// in the model cache's layout), as letters, digits, '-', '.' and '_', at most 48 characters.
std::string readable_name(const std::string& model_path) {
  fs::path p = fs::path(model_path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  std::string name = p.filename().string();
  if (name == "model" && p.has_parent_path()) name = p.parent_path().filename().string() + "_" + name;
  const std::string out = file_name_piece(name);
  return out.size() > 48 ? out.substr(out.size() - 48) : out;
}

// What the pieces are converted from: the kind, then each source's path, size, modification time and
// inode. Throws Error naming a source that cannot be read.
std::string identity_of(const std::vector<std::string>& sources, const std::string& kind) {
  std::string id = "kind " + kind + "\n";
  for (const std::string& s : sources) {
    struct stat st {};
    if (::stat(s.c_str(), &st) != 0) throw not_found(s + ": " + std::strerror(errno));
    id += "source " + fs::absolute(s).lexically_normal().string() + " size " + std::to_string(st.st_size) +
          " mtime " + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) +
          " inode " + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + "\n";
  }
  return id;
}

template <class T>
T read_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // x86 and arm64 are little-endian, as is the file
  return v;
}

template <class T>
void append_le(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

}  // namespace

ConvertedWeightsCache::ConvertedWeightsCache(const std::string& dir, const std::string& model_path,
                                             const std::vector<std::string>& sources, const std::string& kind)
    : identity_(identity_of(sources, kind)) {
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx",
                static_cast<unsigned long long>(
                    fnv1a(fs::absolute(model_path).lexically_normal().string() + "\n" + kind)));
  path_ =
      (fs::path(dir) / (readable_name(model_path) + "-" + file_name_piece(kind) + "-" + hash + ".weights"))
          .string();
}

void ConvertedWeightsCache::lock() {
  const fs::path dir = fs::path(path_).parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(ErrorCode::kInternal, "cannot create the folder " + dir.string() + ": " + ec.message());
  const std::string lock_path = path_.substr(0, path_.size() - std::strlen(".weights")) + ".lock";
  lock_ = std::make_unique<FileLock>(
      lock_path, [&] { spdlog::info("{}: waiting for another process converting the same weights", path_); });
}

std::optional<ConvertedWeightsCache::Contents> ConvertedWeightsCache::open() const {
  std::error_code ec;
  if (!fs::exists(path_, ec)) return std::nullopt;
  Contents c;
  try {
    c.file = MappedFile::open(path_);
  } catch (const Error& e) {
    spdlog::warn("{}: cannot be read ({}); converting again", path_, e.what());
    return std::nullopt;
  }
  const uint8_t* d = c.file->data();
  const size_t size = c.file->size();
  auto damaged = [&](const std::string& why) -> std::optional<Contents> {
    spdlog::warn("{}: damaged ({}); converting again", path_, why);
    return std::nullopt;
  };
  if (size < kFixedHeader || std::memcmp(d, kMagic, sizeof kMagic) != 0)
    return damaged("not a converted-weights file");
  if (read_le<uint32_t>(d + 8) != kFormatVersion) {
    spdlog::info("{}: written in another format version; converting again", path_);
    return std::nullopt;
  }
  const auto id_bytes = read_le<uint64_t>(d + 16);
  const auto count = read_le<uint64_t>(d + 24);
  const auto file_bytes = read_le<uint64_t>(d + 32);
  if (file_bytes != size)
    return damaged("its header says " + std::to_string(file_bytes) + " bytes, it has " +
                   std::to_string(size));
  if (id_bytes > size - kFixedHeader || count > (size - kFixedHeader - id_bytes) / 16)
    return damaged("its header runs past the end");
  const std::string identity(reinterpret_cast<const char*>(d + kFixedHeader), id_bytes);
  if (identity != identity_) {
    spdlog::info("{}: converted from another version of the model; converting again", path_);
    return std::nullopt;
  }
  const uint8_t* table = d + kFixedHeader + id_bytes;
  const size_t data_start = round_up(kFixedHeader + id_bytes + 16 * count, kDataAlign);
  for (uint64_t i = 0; i < count; ++i) {
    const auto offset = read_le<uint64_t>(table + 16 * i);
    const auto bytes = read_le<uint64_t>(table + 16 * i + 8);
    if (offset % kPieceAlign != 0 || offset < data_start || offset > size || bytes > size - offset)
      return damaged("piece " + std::to_string(i) + " lies outside the file");
    c.pieces.emplace_back(offset, bytes);
  }
  return c;
}

void ConvertedWeightsCache::write(const std::vector<std::pair<const void*, size_t>>& pieces) const {
  std::string header(kMagic, sizeof kMagic);
  append_le<uint32_t>(header, kFormatVersion);
  append_le<uint32_t>(header, 0);
  append_le<uint64_t>(header, identity_.size());
  append_le<uint64_t>(header, pieces.size());
  const size_t file_bytes_at = header.size();
  append_le<uint64_t>(header, 0);  // the file's size, filled in below
  header += identity_;
  size_t offset = round_up(header.size() + 16 * pieces.size(), kDataAlign);
  std::vector<size_t> offsets;
  for (const auto& [data, bytes] : pieces) {
    offsets.push_back(offset);
    append_le<uint64_t>(header, offset);
    append_le<uint64_t>(header, bytes);
    offset = round_up(offset + bytes, kPieceAlign);
  }
  const uint64_t file_bytes = pieces.empty() ? header.size() : offsets.back() + pieces.back().second;
  std::memcpy(header.data() + file_bytes_at, &file_bytes, sizeof file_bytes);

  const std::string tmp = path_ + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (out == nullptr) throw Error(ErrorCode::kInternal, "cannot write " + tmp + ": " + std::strerror(errno));
  static const char zeros[kDataAlign] = {};
  bool ok = std::fwrite(header.data(), 1, header.size(), out) == header.size();
  size_t at = header.size();
  for (size_t i = 0; ok && i < pieces.size(); ++i) {
    ok = std::fwrite(zeros, 1, offsets[i] - at, out) == offsets[i] - at &&
         std::fwrite(pieces[i].first, 1, pieces[i].second, out) == pieces[i].second;
    at = offsets[i] + pieces[i].second;
  }
  ok = ok && std::fflush(out) == 0 && ::fsync(::fileno(out)) == 0;
  const int err = errno;
  ok = std::fclose(out) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path_.c_str()) != 0) {
    const int e = ok ? errno : err;
    std::remove(tmp.c_str());
    throw Error(ErrorCode::kInternal, "cannot write " + path_ + ": " + std::strerror(e));
  }
}

}  // namespace cortex::model
