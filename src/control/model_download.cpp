#include "control/model_download.h"

#include <spdlog/spdlog.h>
#include <cstdio>

namespace cortex::control {

ModelDownload::ModelDownload(const ApiSpec& spec, const std::string& cache_dir) {
  storage::FetchOptions o;
  o.cache_dir = cache_dir;
  o.s3_endpoint = spec.model_endpoint;
  o.s3_region = spec.model_region;
  if (spec.model_env) o.environment = storage::ModelEnvironment(*spec.model_env);
  o.cancel = &cancel_;
  o.progress = [this](const storage::FetchProgress& p) {
    std::lock_guard lock(mu_);
    state_.progress = p;
  };
  const std::string uri = spec.model, api = spec.name;
  thread_ = std::thread([this, o, uri, api] {
    try {
      storage::FetchedModel m = storage::fetch_model(uri, o);
      spdlog::info("api {}: model {} ready at {} ({} bytes downloaded)", api, uri, m.path,
                   m.downloaded_bytes);
      std::lock_guard lock(mu_);
      state_.local_path = m.path;
      state_.note = m.note;
      state_.phase = Phase::kDone;
    } catch (const std::exception& e) {
      spdlog::warn("api {}: cannot fetch model {}: {}", api, uri, e.what());
      std::lock_guard lock(mu_);
      state_.error = e.what();
      state_.phase = Phase::kFailed;
    }
  });
}

ModelDownload::~ModelDownload() {
  cancel_ = true;
  if (thread_.joinable()) thread_.join();
}

ModelDownload::State ModelDownload::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

std::string ModelDownload::describe(const storage::FetchProgress& p) {
  if (p.stage == "waiting") return "waiting for another download of this model";
  if (p.stage.empty() || p.stage == "checking" || p.total == 0) return "checking the model's files";
  char buf[128];
  std::snprintf(buf, sizeof buf, "%d%% (%.1f of %.1f MB, %.1f MB/s)",
                static_cast<int>(100.0 * static_cast<double>(p.done) / static_cast<double>(p.total)),
                p.done / 1e6, p.total / 1e6, p.bytes_per_second / 1e6);
  return buf;
}

}  // namespace cortex::control
