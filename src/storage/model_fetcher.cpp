#include "storage/model_fetcher.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "storage/http_transfer.h"
#include "storage/model_cache.h"
#include "storage/model_uri.h"
#include "storage/s3_client.h"
#include "util/cache_files.h"
#include "util/error.h"
#include "util/file_util.h"

namespace cortex::storage {

namespace fs = std::filesystem;

namespace {

// One file of a remote model and how to ask for its bytes [begin, end) (end 0: to the end).
struct RemoteFile {
  std::string name;
  uint64_t size = 0;
  std::string etag;
  bool ranges = false;  // the server answers ranged requests (S3 does; HTTP servers say Accept-Ranges)
  std::function<HttpRequest(uint64_t begin, uint64_t end)> request;
};

struct RemoteModel {
  std::vector<RemoteFile> files;
  bool single_file = false;  // a .gguf: the path to load is the file itself
};

const std::vector<std::string> kFolderFiles{"config.json", "model.safetensors", "vocab.json",
                                            "merges.txt",  "encoder.json",      "vocab.bpe"};

bool ends_with_gguf(const std::string& s) {
  if (s.size() < 5) return false;
  std::string tail = s.substr(s.size() - 5);
  std::transform(tail.begin(), tail.end(), tail.begin(), [](unsigned char c) { return std::tolower(c); });
  return tail == ".gguf";
}

std::string basename_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "nothing" : out;
}

// Which of the names present make a model: a lone .gguf, or the Hugging Face folder files.
std::vector<std::string> select_files(const std::string& uri, const std::vector<std::string>& present) {
  auto has = [&](const std::string& n) {
    return std::find(present.begin(), present.end(), n) != present.end();
  };
  std::vector<std::string> gguf;
  for (const auto& n : present)
    if (ends_with_gguf(n)) gguf.push_back(n);
  if (!has("model.safetensors") && !gguf.empty()) {
    if (gguf.size() > 1)
      throw invalid_argument(uri + " holds several .gguf files (" + join(gguf) +
                             "); point model at one of them");
    return gguf;
  }
  std::vector<std::string> missing;
  if (!has("config.json")) missing.push_back("config.json");
  if (!has("model.safetensors")) missing.push_back("model.safetensors");
  const bool hf_vocab = has("vocab.json") && has("merges.txt");
  const bool openai_vocab = has("encoder.json") && has("vocab.bpe");
  if (!hf_vocab && !openai_vocab) missing.push_back("vocab.json + merges.txt (or encoder.json + vocab.bpe)");
  if (!missing.empty())
    throw invalid_argument(uri + " is not a GPT-2 model: it lacks " + join(missing) + " (it holds " +
                           join(present) + "); a model is a .gguf file or a Hugging Face folder");
  std::vector<std::string> chosen;
  for (const auto& n : kFolderFiles)
    if (has(n)) chosen.push_back(n);
  return chosen;
}

std::string strip_quotes(std::string s) {
  if (s.rfind("W/", 0) == 0) s = s.substr(2);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

RemoteModel list_s3(const ModelUri& u, const FetchOptions& o) {
  auto client = std::make_shared<S3Client>(resolve_s3_settings(o.s3_endpoint, o.s3_region, o.environment));
  const std::string bucket = u.bucket;
  auto object_file = [&](const std::string& key, uint64_t size, const std::string& etag) {
    return RemoteFile{
        basename_of(key), size, etag, true,
        [client, bucket, key](uint64_t begin, uint64_t end) { return client->get(bucket, key, begin, end); }};
  };
  RemoteModel m;
  if (ends_with_gguf(u.key)) {
    auto o2 = client->head(u.bucket, u.key, o.cancel);
    if (!o2) throw not_found("no such model: " + u.text + " (no such object)");
    m.files.push_back(object_file(o2->key, o2->size, o2->etag));
    m.single_file = true;
    return m;
  }
  const std::string prefix = u.key.empty() ? "" : u.key + "/";
  std::vector<S3Object> objects = client->list(u.bucket, prefix, o.cancel);
  std::vector<std::string> names;
  std::map<std::string, S3Object> by_name;
  for (auto& obj : objects) {
    std::string rel = obj.key.substr(prefix.size());
    if (rel.empty() || rel.find('/') != std::string::npos) continue;  // sub-folders are not part of the model
    names.push_back(rel);
    by_name[rel] = obj;
  }
  if (names.empty()) {
    if (!u.key.empty())
      if (auto single = client->head(u.bucket, u.key, o.cancel)) {
        m.files.push_back(object_file(single->key, single->size, single->etag));
        m.single_file = true;
        return m;
      }
    throw not_found("no such model: " + u.text + " (no object " +
                    (u.key.empty() ? "in the bucket" : "named " + u.key + " and none under " + prefix) + ")");
  }
  for (const auto& n : select_files(u.text, names)) {
    const S3Object& obj = by_name[n];
    m.files.push_back(object_file(obj.key, obj.size, obj.etag));
  }
  m.single_file = m.files.size() == 1 && ends_with_gguf(m.files[0].name);
  return m;
}

// http(s):// and hf://: HEAD each candidate under the base URL.
RemoteModel list_http(const ModelUri& u, const FetchOptions& o) {
  std::string base;
  std::map<std::string, std::string> headers;
  if (u.scheme == UriScheme::kHf) {
    auto env_or = [&](const char* name, const std::string& fallback) {
      std::string v = o.environment.get(name);
      return v.empty() ? fallback : v;
    };
    std::string endpoint = env_or("HF_ENDPOINT", "https://huggingface.co");
    while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
    base = endpoint + "/" + u.repo + "/resolve/" + u.revision;
    if (auto token = env_or("HF_TOKEN", env_or("HUGGING_FACE_HUB_TOKEN", "")); !token.empty())
      headers["Authorization"] = "Bearer " + token;
  } else {
    base = u.url;
  }
  auto probe = [&](const std::string& url) -> std::optional<RemoteFile> {
    HttpRequest req;
    req.method = "HEAD";
    req.url = url;
    req.headers = headers;
    HttpResponse r = http_fetch(req, o.cancel);
    if (r.status == 404) return std::nullopt;
    if (r.status == 401 || r.status == 403)
      throw invalid_argument(
          "access denied: " + url + ": HTTP " + std::to_string(r.status) +
          (u.scheme == UriScheme::kHf
               ? " (the repository does not exist, or it is gated or private: set HF_TOKEN)"
               : ""));
    if (r.status < 200 || r.status >= 300)
      throw Error(ErrorCode::kInternal, "HEAD " + url + ": HTTP " + std::to_string(r.status));
    RemoteFile f;
    f.name = basename_of(url);
    f.size = std::strtoull(r.header("content-length").c_str(), nullptr, 10);
    f.etag = strip_quotes(r.header("x-linked-etag").empty() ? r.header("etag") : r.header("x-linked-etag"));
    f.ranges = r.header("accept-ranges") == "bytes";
    f.request = [url, headers](uint64_t begin, uint64_t end) {
      HttpRequest g;
      g.url = url;
      g.headers = headers;
      if (const std::string range = range_header(begin, end); !range.empty()) g.headers["Range"] = range;
      return g;
    };
    return f;
  };
  RemoteModel m;
  if (u.scheme == UriScheme::kHttp && ends_with_gguf(u.url)) {
    auto f = probe(u.url);
    if (!f) throw not_found("no such model: " + u.text + " (HTTP 404)");
    m.files.push_back(std::move(*f));
    m.single_file = true;
    return m;
  }
  std::map<std::string, RemoteFile> found;
  std::vector<std::string> names;
  for (const auto& n : kFolderFiles)
    if (auto f = probe(base + "/" + n)) {
      names.push_back(n);
      found[n] = std::move(*f);
    }
  if (names.empty())
    throw not_found("no such model: " + u.text + " (none of " + join(kFolderFiles) + " under " + base + ")");
  for (const auto& n : select_files(u.text, names)) m.files.push_back(found[n]);
  return m;
}

// The checksum an ETag carries, when it carries one: MD5 (S3 single-part uploads) or SHA-256 (Hugging
// Face's large files).
const EVP_MD* etag_digest(const std::string& etag) {
  const bool hex = !etag.empty() &&
                   std::all_of(etag.begin(), etag.end(), [](unsigned char c) { return std::isxdigit(c); });
  if (!hex) return nullptr;
  if (etag.size() == 32) return EVP_md5();
  if (etag.size() == 64) return EVP_sha256();
  return nullptr;
}

std::string file_digest(const std::string& path, const EVP_MD* md) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), md, nullptr);
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), out, &len);
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (unsigned i = 0; i < len; ++i) {
    hex += digits[out[i] >> 4];
    hex += digits[out[i] & 15];
  }
  return hex;
}

// Throws the error a download's answer stands for (access denied, gone, another failure); 2xx passes.
void check_download_status(const HttpResponse& r, const std::string& where) {
  if (r.status == 404) throw not_found("no such model: " + where + " disappeared during the download");
  if (r.status == 401 || r.status == 403)
    throw invalid_argument("access denied: " + where + ": HTTP " + std::to_string(r.status));
  if (r.status < 200 || r.status >= 300)
    throw Error(ErrorCode::kInternal, "downloading " + where + ": HTTP " + std::to_string(r.status));
}

uint64_t file_size_or_zero(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  return ec ? 0 : n;
}

class Download {
 public:
  Download(const std::string& uri, const FetchOptions& o, CacheEntry& entry)
      : uri_(uri), o_(o), entry_(entry) {}

  FetchedModel run(const RemoteModel& remote) {
    FetchedModel result;
    for (const auto& f : remote.files) total_ += f.size;
    result.total_bytes = total_;
    const std::string dir = entry_.model_dir();
    const std::string path = remote.single_file ? dir + "/" + remote.files[0].name : dir;

    CacheManifest cached = entry_.read_manifest().value_or(CacheManifest{});
    CacheManifest now{uri_, false, {}};
    std::vector<const RemoteFile*> wanted;
    for (const auto& f : remote.files) {
      CachedFile cf{f.name, f.size, f.etag};
      const bool valid = std::find(cached.files.begin(), cached.files.end(), cf) != cached.files.end() &&
                         file_size_or_zero(dir + "/" + f.name) == f.size;
      if (valid) {
        now.files.push_back(cf);
        done_ += f.size;
      } else {
        wanted.push_back(&f);
      }
    }
    remove_strays(remote);
    if (wanted.empty() && cached.complete) {
      report("done", "");
      result.path = path;
      return result;
    }
    entry_.write_manifest(now);
    started_ = std::chrono::steady_clock::now();
    for (const RemoteFile* f : wanted) {
      fetch_file(*f);
      now.files.push_back({f->name, f->size, f->etag});
      entry_.write_manifest(now);
    }
    now.complete = true;
    entry_.write_manifest(now);
    result.downloaded_bytes = downloaded_;
    result.path = path;
    report("done", "");
    return result;
  }

  void report(const std::string& stage, const std::string& file) {
    if (!o_.progress) return;
    FetchProgress p;
    p.stage = stage;
    p.file = file;
    p.done = done_;
    p.total = total_;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    p.bytes_per_second = seconds > 0 ? downloaded_ / seconds : 0;
    o_.progress(p);
  }

 private:
  // Files of an earlier version of the model that the current one does not have.
  void remove_strays(const RemoteModel& remote) {
    std::set<std::string> keep;
    for (const auto& f : remote.files) {
      keep.insert(f.name);
      keep.insert("." + f.name + ".part");
      keep.insert("." + f.name + ".part.etag");
    }
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(entry_.model_dir(), ec))
      if (!keep.count(e.path().filename().string())) fs::remove_all(e.path(), ec);
  }

  void fetch_file(const RemoteFile& f) {
    const std::string dir = entry_.model_dir();
    const std::string part = dir + "/." + f.name + ".part";
    const std::string part_etag = part + ".etag";
    const std::string where = uri_ + (f.name.empty() ? "" : " (" + f.name + ")");
    uint64_t offset = 0;
    if (file_exists(part) && file_exists(part_etag) && read_file(part_etag) == f.etag && !f.etag.empty())
      offset = std::min<uint64_t>(file_size_or_zero(part), f.size);
    if (offset == 0) std::remove(part.c_str());
    write_file_atomic(part_etag, f.etag);
    if (offset > 0) spdlog::info("{}: resuming {} at {}", uri_, f.name, format_bytes(offset));
    const uint64_t before = done_;  // the model's bytes in the cache before this file
    if (offset == 0 && f.ranges && o_.connections > 1 && f.size >= o_.parallel_min_bytes) {
      fetch_ranges(f, part);
      finish_file(f, part, before);
      return;
    }

    FILE* out = nullptr;
    bool restarted = false;
    auto sink = [&](long status, const char* p, size_t n) {
      if (!out) {
        const bool append = offset > 0 && status == 206;
        restarted = offset > 0 && !append;  // the server sent the whole file again
        out = std::fopen(part.c_str(), append ? "ab" : "wb");
        if (!out) throw Error(ErrorCode::kInternal, "cannot write " + part);
      }
      if (std::fwrite(p, 1, n, out) != n)
        throw Error(ErrorCode::kInternal, "cannot write " + part + " (disk full?)");
    };
    auto on_bytes = [&](uint64_t received) {
      const uint64_t start = restarted ? 0 : offset;
      done_ = before + start + received;
      downloaded_ = downloaded_base_ + received;
      report("downloading", f.name);
    };
    HttpResponse r;
    try {
      r = http_download(f.request(offset, 0), sink, on_bytes, o_.cancel);
    } catch (const Error& e) {
      if (out) std::fclose(out);
      const uint64_t have = file_size_or_zero(part);
      done_ = before;
      throw Error(e.code(), "downloading " + where + " broke off at " + format_bytes(have) + " of " +
                                format_bytes(f.size) + ": " + e.what() +
                                " (the next fetch resumes from there)");
    }
    if (out && std::fclose(out) != 0) throw Error(ErrorCode::kInternal, "cannot write " + part);
    downloaded_base_ = downloaded_;
    if (r.status == 416 && offset > 0) {  // the part is not a prefix of the object any more
      std::remove(part.c_str());
      std::remove(part_etag.c_str());
      done_ = before;
      fetch_file(f);
      return;
    }
    check_download_status(r, where);
    if (!out) {  // an empty body: create the (empty) file
      if (FILE* e = std::fopen(part.c_str(), offset > 0 ? "ab" : "wb")) std::fclose(e);
    }

    finish_file(f, part, before);
  }

  // Several connections, each fetching one slice of the file into its place in the .part file. When one
  // fails, the others stop and the .part keeps the longest complete prefix, where the next fetch resumes.
  void fetch_ranges(const RemoteFile& f, const std::string& part) {
    const std::string where = uri_ + " (" + f.name + ")";
    const int n = o_.connections;
    const uint64_t slice = (f.size + n - 1) / n;
    FILE* out = std::fopen(part.c_str(), "wb");
    if (!out || ::ftruncate(::fileno(out), static_cast<off_t>(f.size)) != 0) {
      if (out) std::fclose(out);
      throw Error(ErrorCode::kInternal, "cannot write " + part + " (disk full?)");
    }
    const int fd = ::fileno(out);
    const uint64_t before = done_;
    std::vector<std::atomic<uint64_t>> written(static_cast<size_t>(n));
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::string first_error;
    ErrorCode first_code = ErrorCode::kInternal;
    auto fail = [&](ErrorCode code, const std::string& what) {
      std::lock_guard lock(mu);
      if (first_error.empty()) {
        first_error = what;
        first_code = code;
      }
      stop = true;
    };
    // Cancelled when the caller cancels or another slice failed.
    std::atomic<bool> cancel{false};
    std::mutex report_mu;
    auto worker = [&](int i) {
      const uint64_t begin = static_cast<uint64_t>(i) * slice;
      const uint64_t end = std::min(f.size, begin + slice);
      if (begin >= end) return;
      auto sink = [&](long status, const char* p, size_t len) {
        if (status != 206) throw Error(ErrorCode::kInternal, "the server ignored a ranged request");
        const uint64_t at = begin + written[static_cast<size_t>(i)].load();
        if (at + len > end)
          throw Error(ErrorCode::kInternal, "the server sent more than the range asked for");
        if (::pwrite(fd, p, len, static_cast<off_t>(at)) != static_cast<ssize_t>(len))
          throw Error(ErrorCode::kInternal, "cannot write " + part + " (disk full?)");
        written[static_cast<size_t>(i)] += len;
      };
      auto on_bytes = [&](uint64_t) {
        if (stop || (o_.cancel && o_.cancel->load())) cancel = true;
        uint64_t sum = 0;
        for (const auto& w : written) sum += w.load();
        std::lock_guard lock(report_mu);
        done_ = before + sum;
        downloaded_ = downloaded_base_ + sum;
        report("downloading", f.name);
      };
      try {
        HttpResponse r = http_download(f.request(begin, end), sink, on_bytes, &cancel);
        check_download_status(r, where);
        if (r.status != 206)
          fail(ErrorCode::kInternal, "HTTP " + std::to_string(r.status) + " for bytes " +
                                         std::to_string(begin) + "-" + std::to_string(end - 1));
        else if (written[static_cast<size_t>(i)].load() != end - begin)
          fail(ErrorCode::kInternal,
               "the range " + std::to_string(begin) + "-" + std::to_string(end - 1) + " came back short");
      } catch (const Error& e) {
        fail(e.code(), e.what());
      }
    };
    std::vector<std::thread> threads;
    for (int i = 1; i < n; ++i) threads.emplace_back(worker, i);
    worker(0);
    for (auto& t : threads) t.join();
    uint64_t prefix = 0;  // the complete bytes from the start
    for (int i = 0; i < n; ++i) {
      const uint64_t begin = static_cast<uint64_t>(i) * slice;
      const uint64_t len = std::min(f.size, begin + slice) - std::min(f.size, begin);
      prefix += written[static_cast<size_t>(i)].load();
      if (written[static_cast<size_t>(i)].load() < len) break;
    }
    const bool ok = first_error.empty();
    if (!ok && ::ftruncate(fd, static_cast<off_t>(prefix)) != 0) prefix = 0;
    std::fclose(out);
    downloaded_base_ = downloaded_;
    if (!ok) {
      done_ = before;
      if (o_.cancel && o_.cancel->load()) throw Error(ErrorCode::kInternal, where + ": cancelled");
      throw Error(first_code, "downloading " + where + " broke off with " + format_bytes(prefix) + " of " +
                                  format_bytes(f.size) + " complete from the start: " + first_error +
                                  " (the next fetch resumes from there)");
    }
  }

  // Checks a downloaded .part (size, checksum) and moves it into place.
  void finish_file(const RemoteFile& f, const std::string& part, uint64_t before) {
    const std::string dir = entry_.model_dir();
    const std::string part_etag = part + ".etag";
    const std::string where = uri_ + " (" + f.name + ")";
    const uint64_t got = file_size_or_zero(part);
    if (got != f.size) {
      std::remove(part.c_str());
      std::remove(part_etag.c_str());
      done_ = before;
      throw corrupt_data("downloading " + where + ": got " + std::to_string(got) + " bytes, expected " +
                         std::to_string(f.size) + " (the partial file was removed)");
    }
    if (const EVP_MD* md = etag_digest(f.etag)) {
      const std::string digest = file_digest(part, md);
      if (digest != f.etag) {
        std::remove(part.c_str());
        std::remove(part_etag.c_str());
        done_ = before;
        throw corrupt_data("downloading " + where + ": checksum " + digest + " does not match the ETag " +
                           f.etag + " (the download was removed)");
      }
    }
    std::error_code ec;
    fs::rename(part, dir + "/" + f.name, ec);
    if (ec) throw Error(ErrorCode::kInternal, "cannot move " + part + " into place: " + ec.message());
    std::remove(part_etag.c_str());
    done_ = before + f.size;
  }

  std::string uri_;
  const FetchOptions& o_;
  CacheEntry& entry_;
  uint64_t total_ = 0, done_ = 0, downloaded_ = 0, downloaded_base_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace

int default_download_connections() {
  const char* v = std::getenv("CORTEX_DOWNLOAD_CONNECTIONS");
  const int n = v ? std::atoi(v) : 0;
  return n >= 1 && n <= 16 ? n : 4;
}

FetchedModel fetch_model(const std::string& uri_text, const FetchOptions& options) {
  const ModelUri u = parse_model_uri(uri_text);
  if (!u.remote()) {
    FetchedModel local;
    local.path = u.path;
    return local;
  }
  FetchOptions o = options;
  if (o.cache_dir.empty()) o.cache_dir = cortex_home() + "/cache";
  auto report = [&](const std::string& stage) {
    if (o.progress) o.progress(FetchProgress{stage, "", 0, 0, 0});
  };

  std::string key = u.canonical();
  if (u.scheme == UriScheme::kS3)
    key += " " + resolve_s3_settings(o.s3_endpoint, o.s3_region, o.environment).endpoint;
  CacheEntry entry(o.cache_dir, key);
  entry.lock([&] { report("waiting"); }, o.cancel);
  report("checking");

  RemoteModel remote;
  try {
    remote = u.scheme == UriScheme::kS3 ? list_s3(u, o) : list_http(u, o);
  } catch (const Error& e) {
    // The store cannot be reached (or fails): a complete cached copy still serves.
    auto manifest = entry.read_manifest();
    if (e.code() != ErrorCode::kInternal || !manifest || !manifest->complete ||
        manifest->uri != u.canonical())
      throw;
    FetchedModel cached;
    const bool single = manifest->files.size() == 1 && ends_with_gguf(manifest->files[0].name);
    cached.path = single ? entry.model_dir() + "/" + manifest->files[0].name : entry.model_dir();
    for (const auto& f : manifest->files) cached.total_bytes += f.size;
    cached.note = std::string("could not check the remote copy (") + e.what() + "); using the cached one";
    spdlog::warn("{}: {}", uri_text, cached.note);
    entry.mark_used();
    return cached;
  }
  Download download(u.canonical(), o, entry);
  FetchedModel fetched = download.run(remote);
  entry.mark_used();
  return fetched;
}

}  // namespace cortex::storage
