#include "util/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace cortex {

void init_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("cortex");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace cortex
