// The random GPT-2 models written by the `make_test_models` fixture (seed 7): tiny (C=64, 2 layers,
// 4 heads, 256 positions) and 124M, each as a Hugging Face folder and as a GGUF file.
#pragma once

#include <string>

#include "support/test_env.h"

namespace cortex::testing {

inline std::string test_model(const std::string& name) {
  return binary_dir() + "/test-models/" + name;
}

}  // namespace cortex::testing
