// The resolved description of what a user deployed: one deployment (cortex.yaml's `kind: deployment`)
// and its APIs (`kind: api`), with every default filled in. The config parser produces it, the state
// store keeps it as JSON, the reconciler and gateway act on it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace cortex::control {

// `compute:` of an api. Quantities are normalised: cpu in millicores ("0.5" and "500m" are 500),
// memory in bytes ("2Gi" is 2 << 30). Zero means "not requested".
struct ComputeSpec {
  int min_replicas = 1;
  int max_replicas = 100;
  int init_replicas = 1;  // defaults to min_replicas
  int64_t cpu_millis = 0;
  int64_t mem_bytes = 0;
  int gpu = 0;
};

// Cortex's request-based autoscaling (`autoscaling:` of an api).
struct AutoscalingSpec {
  double target_replica_concurrency = 0;  // 0: the api's max_concurrency (requests one replica runs at once)
  int max_replica_concurrency = 1024;     // in-flight + queued per replica before 503
  std::chrono::milliseconds window{60'000};
  std::chrono::milliseconds downscale_stabilization_period{300'000};
  std::chrono::milliseconds upscale_stabilization_period{60'000};
  double max_downscale_factor = 0.75;
  double max_upscale_factor = 1.5;
  double downscale_tolerance = 0.05;
  double upscale_tolerance = 0.05;
};

// Generation defaults of an api; a request may override them within the limits.
struct GenerationSpec {
  int max_tokens = 50;
  int max_tokens_limit = 1024;
  double temperature = 1.0;
  int top_k = 40;
  double top_p = 1.0;
};

struct ApiSpec {
  std::string name;            // DNS-1035 label, unique within the deployment
  std::string model;           // absolute path or URI as resolved against the project folder
  std::string model_format;    // "hf" (safetensors folder) or "gguf"; inferred when absent
  std::string model_endpoint;  // s3:// models: the S3-compatible endpoint; empty: from the environment
  std::string model_region;    // s3:// models: the region; empty: from the environment
  std::string dtype;           // weight type in memory: "f32", "f16", "q8_0"; empty: as stored
  std::string kv_cache_dtype;  // the KV cache's type: "f32", "f16"; empty: the replica's default (f16 for f16
                               // and q8_0 weights, f32 for f32)
  // Remote models: the AWS_*/HF_* variables of the shell that deployed (storage/model_environment.h);
  // absent: the operator's own environment.
  std::optional<std::map<std::string, std::string>> model_env;
  std::string request_handler;  // absolute path; empty: the built-in GPT-2 handler
  ComputeSpec compute;
  AutoscalingSpec autoscaling;
  int max_concurrency = 32;    // sequences a replica decodes at once
  int max_queue_length = 128;  // requests a replica holds waiting
  GenerationSpec generation;
  std::string api_key;      // empty: no key required
  int threads = 0;          // threads per replica; 0: the replica's default
  int kv_cache_tokens = 0;  // 0: the replica's default
};

struct DeploymentSpec {
  std::string name;
  std::string project_dir;  // absolute folder holding cortex.yaml
  std::vector<ApiSpec> apis;
};

// JSON forms, used by the state store and the operator's HTTP API. from_json accepts what to_json
// writes (every field present) and throws Error(kInvalidArgument) naming the field otherwise.
nlohmann::json to_json(const ApiSpec& api);
ApiSpec api_spec_from_json(const nlohmann::json& j);
nlohmann::json to_json(const DeploymentSpec& deployment);
DeploymentSpec deployment_spec_from_json(const nlohmann::json& j);

}  // namespace cortex::control
