#include "control/api_spec.h"

#include <limits>
#include <nlohmann/json.hpp>

#include "util/error.h"

// JSON keys are the C++ member names; durations are integers of milliseconds under the member name
// with "_ms" appended ("window_ms"). Keys that from_json does not know are ignored.

namespace cortex::control {

namespace {

using nlohmann::json;

// Reads j[key] of an object, naming the field ("apis[0].compute.min_replicas") when it is wrong.
class Reader {
 public:
  Reader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object()) throw invalid_argument(where() + "must be a JSON object");
  }

  const json& at(const std::string& key) const {
    auto it = j_.find(key);
    if (it == j_.end()) throw invalid_argument(field(key) + ": missing");
    return *it;
  }
  std::string string(const std::string& key) const {
    const json& v = at(key);
    if (!v.is_string()) throw invalid_argument(field(key) + ": must be a string");
    return v.get<std::string>();
  }
  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  // A field added after specs were first stored: absent means `fallback`.
  std::string optional_string(const std::string& key, const std::string& fallback) const {
    return j_.contains(key) ? string(key) : fallback;
  }
  int64_t int64(const std::string& key) const {
    const json& v = at(key);
    if (!v.is_number_integer()) throw invalid_argument(field(key) + ": must be an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      throw invalid_argument(field(key) + ": out of range");
    return v.get<int64_t>();
  }
  int integer(const std::string& key) const {
    const int64_t v = int64(key);
    if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
      throw invalid_argument(field(key) + ": out of range");
    return static_cast<int>(v);
  }
  double number(const std::string& key) const {
    const json& v = at(key);
    if (!v.is_number()) throw invalid_argument(field(key) + ": must be a number");
    return v.get<double>();
  }
  std::chrono::milliseconds millis(const std::string& key) const {
    return std::chrono::milliseconds(int64(key));
  }
  Reader object(const std::string& key) const { return Reader(at(key), field(key)); }
  std::string field(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  std::string where() const { return path_.empty() ? "spec: " : path_ + ": "; }

  const json& j_;
  std::string path_;
};

ApiSpec api_from(const Reader& r) {
  ApiSpec api;
  api.name = r.string("name");
  api.model = r.string("model");
  api.model_format = r.string("model_format");
  api.model_endpoint = r.optional_string("model_endpoint", "");
  api.model_region = r.optional_string("model_region", "");
  api.dtype = r.optional_string("dtype", "");
  api.kv_cache_dtype = r.optional_string("kv_cache_dtype", "");
  if (r.has("model_env")) {
    const json& env = r.at("model_env");
    if (!env.is_object()) throw invalid_argument(r.field("model_env") + ": must be an object of strings");
    std::map<std::string, std::string> vars;
    for (const auto& [k, v] : env.items()) {
      if (!v.is_string()) throw invalid_argument(r.field("model_env") + "." + k + ": must be a string");
      vars[k] = v.get<std::string>();
    }
    api.model_env = std::move(vars);
  }
  api.request_handler = r.string("request_handler");

  const Reader c = r.object("compute");
  api.compute.min_replicas = c.integer("min_replicas");
  api.compute.max_replicas = c.integer("max_replicas");
  api.compute.init_replicas = c.integer("init_replicas");
  api.compute.cpu_millis = c.int64("cpu_millis");
  api.compute.mem_bytes = c.int64("mem_bytes");
  api.compute.gpu = c.integer("gpu");

  const Reader a = r.object("autoscaling");
  api.autoscaling.target_replica_concurrency = a.number("target_replica_concurrency");
  api.autoscaling.max_replica_concurrency = a.integer("max_replica_concurrency");
  api.autoscaling.window = a.millis("window_ms");
  api.autoscaling.downscale_stabilization_period = a.millis("downscale_stabilization_period_ms");
  api.autoscaling.upscale_stabilization_period = a.millis("upscale_stabilization_period_ms");
  api.autoscaling.max_downscale_factor = a.number("max_downscale_factor");
  api.autoscaling.max_upscale_factor = a.number("max_upscale_factor");
  api.autoscaling.downscale_tolerance = a.number("downscale_tolerance");
  api.autoscaling.upscale_tolerance = a.number("upscale_tolerance");

  api.max_concurrency = r.integer("max_concurrency");
  api.max_queue_length = r.integer("max_queue_length");

  const Reader g = r.object("generation");
  api.generation.max_tokens = g.integer("max_tokens");
  api.generation.max_tokens_limit = g.integer("max_tokens_limit");
  api.generation.temperature = g.number("temperature");
  api.generation.top_k = g.integer("top_k");
  api.generation.top_p = g.number("top_p");

  api.api_key = r.string("api_key");
  api.threads = r.integer("threads");
  api.kv_cache_tokens = r.integer("kv_cache_tokens");
  return api;
}

}  // namespace

nlohmann::json to_json(const ApiSpec& api) {
  const ComputeSpec& c = api.compute;
  const AutoscalingSpec& a = api.autoscaling;
  const GenerationSpec& g = api.generation;
  json j{
      {"name", api.name},
      {"model", api.model},
      {"model_format", api.model_format},
      {"model_endpoint", api.model_endpoint},
      {"model_region", api.model_region},
      {"dtype", api.dtype},
      {"request_handler", api.request_handler},
      {"compute",
       {{"min_replicas", c.min_replicas},
        {"max_replicas", c.max_replicas},
        {"init_replicas", c.init_replicas},
        {"cpu_millis", c.cpu_millis},
        {"mem_bytes", c.mem_bytes},
        {"gpu", c.gpu}}},
      {"autoscaling",
       {{"target_replica_concurrency", a.target_replica_concurrency},
        {"max_replica_concurrency", a.max_replica_concurrency},
        {"window_ms", a.window.count()},
        {"downscale_stabilization_period_ms", a.downscale_stabilization_period.count()},
        {"upscale_stabilization_period_ms", a.upscale_stabilization_period.count()},
        {"max_downscale_factor", a.max_downscale_factor},
        {"max_upscale_factor", a.max_upscale_factor},
        {"downscale_tolerance", a.downscale_tolerance},
        {"upscale_tolerance", a.upscale_tolerance}}},
      {"max_concurrency", api.max_concurrency},
      {"max_queue_length", api.max_queue_length},
      {"generation",
       {{"max_tokens", g.max_tokens},
        {"max_tokens_limit", g.max_tokens_limit},
        {"temperature", g.temperature},
        {"top_k", g.top_k},
        {"top_p", g.top_p}}},
      {"api_key", api.api_key},
      {"threads", api.threads},
      {"kv_cache_tokens", api.kv_cache_tokens},
      {"kv_cache_dtype", api.kv_cache_dtype},
  };
  if (api.model_env) j["model_env"] = *api.model_env;
  return j;
}

ApiSpec api_spec_from_json(const nlohmann::json& j) {
  return api_from(Reader(j, ""));
}

nlohmann::json to_json(const DeploymentSpec& deployment) {
  json apis = json::array();
  for (const auto& api : deployment.apis) apis.push_back(to_json(api));
  return json{{"name", deployment.name}, {"project_dir", deployment.project_dir}, {"apis", apis}};
}

DeploymentSpec deployment_spec_from_json(const nlohmann::json& j) {
  const Reader r(j, "");
  DeploymentSpec d;
  d.name = r.string("name");
  d.project_dir = r.string("project_dir");
  const json& apis = r.at("apis");
  if (!apis.is_array()) throw invalid_argument("apis: must be an array");
  for (size_t i = 0; i < apis.size(); ++i)
    d.apis.push_back(api_from(Reader(apis[i], "apis[" + std::to_string(i) + "]")));
  return d;
}

}  // namespace cortex::control
