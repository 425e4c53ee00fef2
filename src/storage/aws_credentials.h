// Where S3 requests go and who signs them, found the way the AWS tools find it: credentials from
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the profile (AWS_PROFILE, default
// "default") in ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE) or ~/.aws/config (AWS_CONFIG_FILE);
// region from AWS_REGION, AWS_DEFAULT_REGION or the profile; endpoint from AWS_ENDPOINT_URL_S3 or
// AWS_ENDPOINT_URL. Explicit settings (a per-API endpoint/region) win over all of these.
#pragma once

#include <string>

#include "storage/model_environment.h"

namespace cortex::storage {

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
  std::string source;  // "environment", "profile default in /root/.aws/credentials", or "none"
  bool anonymous() const { return access_key_id.empty(); }
};

struct S3Settings {
  AwsCredentials credentials;
  std::string region = "us-east-1";
  std::string endpoint;  // scheme://host[:port] of an S3-compatible store; empty: AWS itself
  // Path-style (endpoint/bucket/key) for custom endpoints; virtual-hosted (bucket.s3.region.amazonaws.com)
  // for AWS unless the bucket name has dots.
  bool path_style = false;
};

// Resolves the settings from the environment and the AWS files; `endpoint` and `region` override when
// not empty. Throws Error(kNotFound) when AWS_PROFILE names a profile that no file has.
S3Settings resolve_s3_settings(const std::string& endpoint = "", const std::string& region = "",
                               const ModelEnvironment& env = ModelEnvironment());

}  // namespace cortex::storage
