// The environment variables that say where and as whom models are fetched (AWS_*, HF_*). The CLI captures
// them when it deploys, so that the operator, a long-running process started with some other
// environment, fetches a model with the credentials of the shell that deployed it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cortex::storage {

// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, AWS_DEFAULT_PROFILE,
// AWS_REGION, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_SHARED_CREDENTIALS_FILE,
// AWS_CONFIG_FILE, HF_TOKEN, HUGGING_FACE_HUB_TOKEN, HF_ENDPOINT.
const std::vector<std::string>& model_environment_variables();

class ModelEnvironment {
 public:
  // The process's own environment.
  ModelEnvironment() = default;
  // Exactly these values for the model variables (one missing here is unset); others from the process.
  explicit ModelEnvironment(std::map<std::string, std::string> captured) : captured_(std::move(captured)) {}
  // The model variables set in this process, for ModelEnvironment(captured) elsewhere.
  static std::map<std::string, std::string> capture();

  std::string get(const std::string& name) const;

 private:
  std::optional<std::map<std::string, std::string>> captured_;
};

}  // namespace cortex::storage
