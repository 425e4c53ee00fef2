// A download progress bar on stderr: "model.safetensors [=========>      ] 58%  29.1/50.2 MB  12.3 MB/s  ETA
// 2s", redrawn in place on a terminal; on anything else one line per 10% so that logs stay readable.
#pragma once

#include <cstdint>
#include <string>

#include "storage/model_fetcher.h"

namespace cortex::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();  // ends the line if one was drawn
  void update(const storage::FetchProgress& p);
  // The bar's text without terminal control characters (for tests and `cortex get`).
  static std::string render(const storage::FetchProgress& p, int width = 30);

 private:
  std::string label_;
  bool tty_;
  bool drawn_ = false;
  int last_decile_ = -1;
  std::string last_stage_;
};

// The local path of a model named by path or URI: remote models are fetched into the cache first, with a
// progress bar on stderr. endpoint/region: per-API S3 settings (empty: from the environment).
std::string local_model_path(const std::string& uri, const std::string& endpoint = "",
                             const std::string& region = "");

}  // namespace cortex::cli
