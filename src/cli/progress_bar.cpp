#include "cli/progress_bar.h"

#include <unistd.h>

#include <cstdio>

#include "storage/model_uri.h"

namespace cortex::cli {

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)), tty_(::isatty(STDERR_FILENO) == 1) {}

ProgressBar::~ProgressBar() {
  if (drawn_ && tty_) std::fputc('\n', stderr);
}

std::string ProgressBar::render(const storage::FetchProgress& p, int width) {
  if (p.total == 0) return p.stage == "waiting" ? "waiting for another download of this model" : "checking";
  const double fraction = static_cast<double>(p.done) / static_cast<double>(p.total);
  const int filled = static_cast<int>(fraction * width);
  std::string bar = "[";
  for (int i = 0; i < width; ++i) bar += i < filled ? '=' : i == filled ? '>' : ' ';
  bar += "]";
  char eta[32] = "-";
  if (p.done >= p.total) {
    std::snprintf(eta, sizeof eta, "0s");
  } else if (p.bytes_per_second > 0) {
    const double s = static_cast<double>(p.total - p.done) / p.bytes_per_second;
    if (s < 120)
      std::snprintf(eta, sizeof eta, "%ds", static_cast<int>(s + 0.5));
    else
      std::snprintf(eta, sizeof eta, "%dm", static_cast<int>(s / 60 + 0.5));
  }
  char tail[160];
  std::snprintf(tail, sizeof tail, " %3d%%  %.1f/%.1f MB  %.1f MB/s  ETA %s",
                static_cast<int>(fraction * 100), p.done / 1e6, p.total / 1e6, p.bytes_per_second / 1e6, eta);
  return bar + tail;
}

void ProgressBar::update(const storage::FetchProgress& p) {
  if (p.stage == "checking" || (p.stage == "done" && !drawn_)) return;  // nothing to show for a cache hit
  if (p.stage == "waiting") {
    if (last_stage_ != "waiting")
      std::fprintf(stderr, "%s: waiting for another download of this model\n", label_.c_str());
    last_stage_ = p.stage;
    return;
  }
  last_stage_ = p.stage;
  if (tty_) {
    std::fprintf(stderr, "\r%s %s\033[K", label_.c_str(), render(p).c_str());
    std::fflush(stderr);
    drawn_ = true;
    return;
  }
  const int decile = p.total ? static_cast<int>(10 * p.done / p.total) : 0;
  if (decile != last_decile_) {
    std::fprintf(stderr, "%s %s\n", label_.c_str(), render(p).c_str());
    last_decile_ = decile;
  }
}

std::string local_model_path(const std::string& uri, const std::string& endpoint, const std::string& region) {
  if (!storage::is_remote_model(uri)) return storage::fetch_model(uri).path;
  ProgressBar bar("downloading " + uri);
  storage::FetchOptions o;
  o.s3_endpoint = endpoint;
  o.s3_region = region;
  o.progress = [&](const storage::FetchProgress& p) { bar.update(p); };
  storage::FetchedModel m = storage::fetch_model(uri, o);
  if (m.downloaded_bytes == 0)
    std::fprintf(stderr, "model %s: %s\n", uri.c_str(),
                 m.note.empty() ? ("in the cache (" + m.path + ")").c_str() : m.note.c_str());
  return m.path;
}

}  // namespace cortex::cli
