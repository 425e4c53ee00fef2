// Turns a model URI into a local path the loader can open: local paths and file:// as they are; s3://,
// http(s):// and hf:// through the cache in $CORTEX_HOME/cache (see model_cache.h). A cached model whose
// files still have the remote sizes and ETags is used without downloading anything.
//
// What is fetched: a .gguf file as it is; otherwise the Hugging Face folder files a GPT-2 needs:
// config.json, model.safetensors and the vocabulary (vocab.json + merges.txt, or encoder.json +
// vocab.bpe). For s3:// the prefix is listed; for http(s):// and hf:// each name is asked for (HEAD) under
// the base URL, for hf:// at $HF_ENDPOINT/<owner>/<name>/resolve/<revision>/<file> with $HF_TOKEN.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "storage/model_environment.h"

namespace cortex::storage {

struct FetchProgress {
  std::string stage;   // "checking", "waiting" (another process fills the cache), "downloading", "done"
  std::string file;    // the file being downloaded
  uint64_t done = 0;   // bytes of the model in the cache so far
  uint64_t total = 0;  // bytes of the whole model (0 until known)
  double bytes_per_second = 0;  // download rate since the download started
};

// $CORTEX_DOWNLOAD_CONNECTIONS (1..16), else 4.
int default_download_connections();

struct FetchOptions {
  std::string cache_dir;         // empty: $CORTEX_HOME/cache
  std::string s3_endpoint;       // per-API S3 endpoint (S3-compatible stores); empty: from the environment
  std::string s3_region;         // empty: from the environment
  ModelEnvironment environment;  // where AWS_* and HF_* are read
  // Files of at least parallel_min_bytes are fetched over `connections` ranged requests at once (when
  // the server takes ranges); 1: one request per file. Defaults: $CORTEX_DOWNLOAD_CONNECTIONS or 4, 64 MiB.
  int connections = default_download_connections();
  uint64_t parallel_min_bytes = 64ull << 20;
  std::function<void(const FetchProgress&)> progress;  // called at most ~10 times a second
  const std::atomic<bool>* cancel = nullptr;
};

struct FetchedModel {
  std::string path;               // folder or .gguf file to load
  uint64_t downloaded_bytes = 0;  // 0: everything came from the cache (or the model is local)
  uint64_t total_bytes = 0;
  std::string note;  // e.g. why a cached copy was used without checking the remote
};

// Throws Error: kNotFound "no such model: URI ..." when nothing is there, kInvalidArgument for access
// denied and for a location that holds no usable model (naming what it holds), kInternal for transfers
// that fail (the message says how; nothing incomplete is left where the loader looks).
FetchedModel fetch_model(const std::string& uri, const FetchOptions& options = {});

}  // namespace cortex::storage
