// Logging through spdlog: one process-wide logger writing to stderr, so that stdout stays clean for the
// output of commands (token ids, generated text, JSON).
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace cortex {

// Sends all log output to stderr at `level` ("debug", "info", "warn", "error").
void init_logging(const std::string& level = "info");

}  // namespace cortex
