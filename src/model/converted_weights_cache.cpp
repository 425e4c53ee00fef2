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
#include <map>

#include "util/cache_files.h"
#include "util/error.h"
#include "util/file_util.h"

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
    if (::stat(s.c_str(), &st) != 0) {
      const int err = errno;
      if (err == ENOENT || err == ENOTDIR) throw not_found(s + ": " + std::strerror(err));
      throw Error(ErrorCode::kInternal, s + ": " + std::strerror(err));
    }
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

// A converted-weights file's header, read from its mapping: the identity text and the pieces, or why
// the file cannot be used.
struct Header {
  enum class Problem { kNone, kOtherFormat, kDamaged } problem = Problem::kNone;
  std::string damage;  // kDamaged: what is wrong
  std::string identity;
  std::vector<std::pair<size_t, size_t>> pieces;
};

Header read_header(const uint8_t* d, size_t size) {
  Header h;
  auto damaged = [&](const std::string& why) {
    h.problem = Header::Problem::kDamaged;
    h.damage = why;
    return h;
  };
  if (size < kFixedHeader || std::memcmp(d, kMagic, sizeof kMagic) != 0)
    return damaged("not a converted-weights file");
  if (read_le<uint32_t>(d + 8) != kFormatVersion) {
    h.problem = Header::Problem::kOtherFormat;
    return h;
  }
  const auto id_bytes = read_le<uint64_t>(d + 16);
  const auto count = read_le<uint64_t>(d + 24);
  const auto file_bytes = read_le<uint64_t>(d + 32);
  if (file_bytes != size)
    return damaged("its header says " + std::to_string(file_bytes) + " bytes, it has " +
                   std::to_string(size));
  if (id_bytes > size - kFixedHeader || count > (size - kFixedHeader - id_bytes) / 16)
    return damaged("its header runs past the end");
  h.identity.assign(reinterpret_cast<const char*>(d + kFixedHeader), id_bytes);
  const uint8_t* table = d + kFixedHeader + id_bytes;
  const size_t data_start = round_up(kFixedHeader + id_bytes + 16 * count, kDataAlign);
  for (uint64_t i = 0; i < count; ++i) {
    const auto offset = read_le<uint64_t>(table + 16 * i);
    const auto bytes = read_le<uint64_t>(table + 16 * i + 8);
    if (offset % kPieceAlign != 0 || offset < data_start || offset > size || bytes > size - offset)
      return damaged("piece " + std::to_string(i) + " lies outside the file");
    h.pieces.emplace_back(offset, bytes);
  }
  return h;
}

// The kind and the sources' paths that an identity text (identity_of) names.
void parse_identity(const std::string& identity, std::string& kind, std::vector<std::string>& sources) {
  size_t at = 0;
  while (at < identity.size()) {
    size_t end = identity.find('\n', at);
    if (end == std::string::npos) end = identity.size();
    const std::string line = identity.substr(at, end - at);
    at = end + 1;
    if (line.starts_with("kind ")) {
      kind = line.substr(5);
    } else if (line.starts_with("source ")) {
      const size_t size_at = line.rfind(" size ");
      if (size_at != std::string::npos && size_at > 7) sources.push_back(line.substr(7, size_at - 7));
    }
  }
}

// Whether the model that `info`'s sources name is still the one converted (`identity`).
ConvertedWeightsInfo::State state_of_sources(const ConvertedWeightsInfo& info, const std::string& identity) {
  using State = ConvertedWeightsInfo::State;
  try {
    return identity_of(info.sources, info.kind) == identity ? State::kCurrent : State::kModelChanged;
  } catch (const Error& e) {
    return e.code() == ErrorCode::kNotFound ? State::kModelGone : State::kModelUnreadable;
  }
}

std::string lock_path_of(const std::string& weights_path) {
  return weights_path.substr(0, weights_path.size() - std::strlen(".weights")) + ".lock";
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
  lock_ = std::make_unique<FileLock>(lock_path_of(path_), [&] {
    spdlog::info("{}: waiting for another process converting the same weights", path_);
  });
}

std::optional<ConvertedWeightsCache::Contents> ConvertedWeightsCache::open() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return std::nullopt;
  // A load looks twice (without the lock, then with it): what is wrong with one state of the file is
  // logged once.
  const std::string state = std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
                            std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
  auto unusable = [&](spdlog::level::level_enum level, const std::string& why) -> std::optional<Contents> {
    if (state != reported_state_) spdlog::log(level, "{}: {}; converting again", path_, why);
    reported_state_ = state;
    return std::nullopt;
  };
  Contents c;
  try {
    c.file = MappedFile::open(path_);
  } catch (const Error& e) {
    return unusable(spdlog::level::warn, std::string("cannot be read (") + e.what() + ")");
  }
  Header h = read_header(c.file->data(), c.file->size());
  if (h.problem == Header::Problem::kDamaged)
    return unusable(spdlog::level::warn, "damaged (" + h.damage + ")");
  if (h.problem == Header::Problem::kOtherFormat)
    return unusable(spdlog::level::info, "written in another format version");
  if (h.identity != identity_)
    return unusable(spdlog::level::info, "converted from another version of the model");
  c.pieces = std::move(h.pieces);
  mark_used(path_);
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

const char* converted_weights_state_name(ConvertedWeightsInfo::State state) {
  switch (state) {
    case ConvertedWeightsInfo::State::kCurrent:
      return "current";
    case ConvertedWeightsInfo::State::kModelChanged:
      return "model changed since";
    case ConvertedWeightsInfo::State::kModelGone:
      return "model gone";
    case ConvertedWeightsInfo::State::kModelUnreadable:
      return "model unreadable";
    case ConvertedWeightsInfo::State::kOtherFormat:
      return "another format version";
    case ConvertedWeightsInfo::State::kDamaged:
      return "damaged";
    case ConvertedWeightsInfo::State::kNoFile:
      return "no file";
  }
  return "?";
}

std::vector<ConvertedWeightsInfo> list_converted_weights(
    const std::string& dir, const std::function<bool(const std::string& kind)>& current_kind) {
  // An entry is any of NAME.weights, NAME.weights.tmp and NAME.lock.
  std::map<std::string, ConvertedWeightsInfo> entries;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string file = e.path().string();
    for (const char* suffix : {".weights", ".weights.tmp", ".lock"}) {
      if (!file.ends_with(suffix)) continue;
      const std::string stem = file.substr(0, file.size() - std::strlen(suffix));
      entries[stem].path = stem + ".weights";
      break;
    }
  }
  std::vector<ConvertedWeightsInfo> out;
  for (auto& [stem, info] : entries) {
    using State = ConvertedWeightsInfo::State;
    const std::string lock_path = stem + ".lock";
    info.busy = FileLock::held_by_another(lock_path);
    info.in_use = file_in_use(info.path);
    info.bytes = disk_usage(info.path) + disk_usage(info.path + ".tmp") + disk_usage(lock_path);
    info.last_used = last_used(info.path);
    info.stamp = file_stamp(info.path);
    std::unique_ptr<MappedFile> file;
    if (!file_exists(info.path)) {
      info.state = State::kNoFile;
    } else {
      try {
        file = MappedFile::open(info.path, /*mark_in_use=*/false);  // a look, not a use
      } catch (const Error& e) {
        info.state = State::kDamaged;
        info.detail = e.what();
      }
    }
    if (file) {
      const Header h = read_header(file->data(), file->size());
      info.detail = h.damage;
      if (h.problem == Header::Problem::kDamaged) {
        info.state = State::kDamaged;
      } else if (h.problem == Header::Problem::kOtherFormat) {
        info.state = State::kOtherFormat;
      } else {
        parse_identity(h.identity, info.kind, info.sources);
        info.state = current_kind(info.kind) ? state_of_sources(info, h.identity) : State::kOtherFormat;
      }
    }
    out.push_back(std::move(info));
  }
  return out;
}

CacheRemoval remove_converted_weights(const std::string& weights_path,
                                      const std::function<bool()>& unchanged) {
  const std::string lock_path = lock_path_of(weights_path);
  auto lock = FileLock::try_lock(lock_path);
  if (!lock) return CacheRemoval::kBusy;
  if (unchanged && !unchanged()) return CacheRemoval::kChanged;
  for (const std::string& file : {weights_path, weights_path + ".tmp"}) {
    std::error_code ec;
    fs::remove(file, ec);
    if (ec) throw Error(ErrorCode::kInternal, "cannot remove " + file + ": " + ec.message());
  }
  // The lock file goes last, while still held: a process waiting on it finds it gone and starts over.
  std::error_code ec;
  fs::remove(lock_path, ec);
  return CacheRemoval::kRemoved;
}

}  // namespace cortex::model
