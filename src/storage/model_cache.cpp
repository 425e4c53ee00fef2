#include "storage/model_cache.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "storage/sigv4.h"
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

CacheEntry::CacheEntry(const std::string& cache_dir, const std::string& key)
    : dir_(cache_dir + "/" + cache_entry_name(key)) {
  std::error_code ec;
  fs::create_directories(model_dir(), ec);
  if (ec)
    throw Error(ErrorCode::kInternal,
                "cannot create the model cache folder " + model_dir() + ": " + ec.message());
}

void CacheEntry::lock(const std::function<void()>& waiting, const std::atomic<bool>* cancel) {
  lock_ = std::make_unique<FileLock>(dir_ + "/.lock", waiting, cancel);
}

std::optional<CacheManifest> CacheEntry::read_manifest() const {
  const std::string path = dir_ + "/manifest.json";
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
    return std::nullopt;  // unreadable: treated as empty, the files are checked again
  }
}

void CacheEntry::write_manifest(const CacheManifest& m) const {
  json files = json::array();
  for (const auto& f : m.files) files.push_back({{"name", f.name}, {"size", f.size}, {"etag", f.etag}});
  write_file_atomic(dir_ + "/manifest.json",
                    json{{"uri", m.uri}, {"complete", m.complete}, {"files", files}}.dump(2));
}

}  // namespace cortex::storage
