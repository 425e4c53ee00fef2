#include "storage/model_cache.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "storage/sigv4.h"
#include "util/cache_files.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::storage {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string cache_entry_name(const std::string& key) {
  std::string readable;
  const std::string uri = key.substr(0, key.find(' '));  // the key is "URI[ ENDPOINT]"
  const size_t sep = uri.find("://");
  for (char c : sep == std::string::npos ? uri : uri.substr(0, sep) + "-" + uri.substr(sep + 3)) {
    if (readable.size() >= 48) break;
    readable += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ? c : '_';
  }
  return readable + "-" + sha256_hex(key).substr(0, 12);
}

namespace {

void create_folder(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw Error(ErrorCode::kInternal, "cannot create the model cache folder " + dir + ": " + ec.message());
}

// Whether `name` is an entry's folder name: a readable part, '-', and 12 hex digits of a hash.
bool is_entry_name(const std::string& name) {
  if (name.size() < 14 || name[name.size() - 13] != '-') return false;
  return name.find_first_not_of("0123456789abcdef", name.size() - 12) == std::string::npos;
}

}  // namespace

CacheEntry::CacheEntry(const std::string& cache_dir, const std::string& key)
    : dir_(cache_dir + "/" + cache_entry_name(key)) {
  create_folder(model_dir());
}

void CacheEntry::lock(const std::function<void()>& waiting, const std::atomic<bool>* cancel) {
  // `cortex cache rm` may remove the entry's folder while this process waits for its lock: then the
  // folder is made again and the wait starts over.
  for (int attempt = 0;; ++attempt) {
    try {
      lock_ = std::make_unique<FileLock>(dir_ + "/.lock", waiting, cancel);
      break;
    } catch (const Error&) {
      if (attempt == 2 || file_exists(dir_) || (cancel && cancel->load())) throw;
      create_folder(model_dir());
    }
  }
  create_folder(model_dir());
}

void CacheEntry::mark_used() const {
  cortex::mark_used(dir_ + "/manifest.json");
}

namespace {

// The manifest at `path`; nullopt when there is none or it cannot be read.
std::optional<CacheManifest> read_manifest_file(const std::string& path) {
  if (!file_exists(path)) return std::nullopt;
  try {
    json j = json::parse(read_file(path));
    CacheManifest m;
    m.uri = j.at("uri").get<std::string>();
    m.complete = j.at("complete").get<bool>();
    for (const auto& f : j.at("files"))
      m.files.push_back(
          {f.at("name").get<std::string>(), f.at("size").get<uint64_t>(), f.at("etag").get<std::string>()});
    return m;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::optional<CacheManifest> CacheEntry::read_manifest() const {
  return read_manifest_file(dir_ + "/manifest.json");  // unreadable: treated as empty, files checked again
}

void CacheEntry::write_manifest(const CacheManifest& m) const {
  json files = json::array();
  for (const auto& f : m.files) files.push_back({{"name", f.name}, {"size", f.size}, {"etag", f.etag}});
  write_file_atomic(dir_ + "/manifest.json",
                    json{{"uri", m.uri}, {"complete", m.complete}, {"files", files}}.dump(2));
}

std::vector<CacheEntryInfo> list_cache_entries(const std::string& cache_dir) {
  std::vector<CacheEntryInfo> entries;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cache_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory(ec) || !is_entry_name(name)) continue;
    CacheEntryInfo info;
    info.name = name;
    info.dir = e.path().string();
    const std::string manifest_path = info.dir + "/manifest.json";
    if (auto m = read_manifest_file(manifest_path)) {  // none yet, or unreadable: shown without its URI
      info.uri = m->uri;
      info.complete = m->complete;
    }
    info.busy = FileLock::held_by_another(info.dir + "/.lock");
    info.in_use = file_in_use(info.dir + "/model");
    info.bytes = disk_usage(info.dir);
    info.last_used = last_used(manifest_path);
    info.stamp = file_stamp(manifest_path);
    entries.push_back(std::move(info));
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return entries;
}

CacheRemoval remove_cache_entry(const std::string& dir, const std::function<bool()>& unchanged) {
  const std::string lock_path = dir + "/.lock";
  std::unique_ptr<FileLock> lock;
  try {
    lock = FileLock::try_lock(lock_path);
  } catch (const Error&) {
    if (!file_exists(dir)) return CacheRemoval::kRemoved;  // already gone
    throw;
  }
  if (!lock) return CacheRemoval::kBusy;
  if (unchanged && !unchanged()) return CacheRemoval::kChanged;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().filename() == ".lock") continue;
    fs::remove_all(e.path(), ec);
    if (ec) throw Error(ErrorCode::kInternal, "cannot remove " + e.path().string() + ": " + ec.message());
  }
  // The lock file goes last, while still held: a process waiting on it finds it gone and starts over.
  fs::remove(lock_path, ec);
  fs::remove(dir, ec);  // fails only if a process made the entry again meanwhile: then it is that one's
  return CacheRemoval::kRemoved;
}

}  // namespace cortex::storage
