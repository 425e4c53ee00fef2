// A model download on behalf of an API: fetches the API's remote model (s3://, http(s)://, hf://) into
// the cache on its own thread, so that the reconciler can start replicas on the local copy once it is
// there, and `cortex get` can show how far it got. Destroying it cancels the transfer and waits for the
// thread.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "control/api_spec.h"
#include "storage/model_fetcher.h"

namespace cortex::control {

class ModelDownload {
 public:
  enum class Phase { kRunning, kDone, kFailed };
  struct State {
    Phase phase = Phase::kRunning;
    storage::FetchProgress progress;
    std::string local_path;  // kDone: what replicas load
    std::string error;       // kFailed
    std::string note;        // kDone: e.g. served from the cache without checking the remote
  };

  // Starts fetching spec.model; cache_dir empty: $CORTEX_HOME/cache.
  ModelDownload(const ApiSpec& spec, const std::string& cache_dir);
  ~ModelDownload();
  ModelDownload(const ModelDownload&) = delete;
  ModelDownload& operator=(const ModelDownload&) = delete;

  State state() const;
  // "42% (5.2 of 12.4 MB, 3.1 MB/s)" while downloading, or what it waits for.
  static std::string describe(const storage::FetchProgress& p);

 private:
  mutable std::mutex mu_;
  State state_;
  std::atomic<bool> cancel_{false};
  std::thread thread_;
};

}  // namespace cortex::control
