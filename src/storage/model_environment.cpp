#include "storage/model_environment.h"

#include <algorithm>
#include <cstdlib>

namespace cortex::storage {

const std::vector<std::string>& model_environment_variables() {
  static const std::vector<std::string> names{"AWS_ACCESS_KEY_ID",           "AWS_SECRET_ACCESS_KEY",
                                              "AWS_SESSION_TOKEN",           "AWS_PROFILE",
                                              "AWS_DEFAULT_PROFILE",         "AWS_REGION",
                                              "AWS_DEFAULT_REGION",          "AWS_ENDPOINT_URL",
                                              "AWS_ENDPOINT_URL_S3",         "AWS_CONFIG_FILE",
                                              "AWS_SHARED_CREDENTIALS_FILE", "HF_TOKEN",
                                              "HUGGING_FACE_HUB_TOKEN",      "HF_ENDPOINT"};
  return names;
}

std::map<std::string, std::string> ModelEnvironment::capture() {
  std::map<std::string, std::string> out;
  for (const auto& name : model_environment_variables())
    if (const char* v = std::getenv(name.c_str()); v && *v) out[name] = v;
  return out;
}

std::string ModelEnvironment::get(const std::string& name) const {
  const auto& names = model_environment_variables();
  if (captured_ && std::find(names.begin(), names.end(), name) != names.end()) {
    auto it = captured_->find(name);
    return it == captured_->end() ? "" : it->second;
  }
  const char* v = std::getenv(name.c_str());
  return v ? v : "";
}

}  // namespace cortex::storage
