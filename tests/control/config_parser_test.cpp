#include "control/config_parser.h"

#include <gtest/gtest.h>
#include <stdlib.h>  // mkdtemp, setenv

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "control/quantity.h"
#include "util/error.h"

namespace cortex::control {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' is not in:\n" << text;
}

// The message of what `f` throws as cortex::Error, or "<no error>".
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// ---------------------------------------------------------------------------------------------------
// Quantities and durations

TEST(QuantityTest, CpuIsMillicores) {
  EXPECT_EQ(parse_cpu_quantity("1"), 1000);
  EXPECT_EQ(parse_cpu_quantity("2"), 2000);
  EXPECT_EQ(parse_cpu_quantity("0.5"), 500);
  EXPECT_EQ(parse_cpu_quantity(".5"), 500);
  EXPECT_EQ(parse_cpu_quantity("500m"), 500);
  EXPECT_EQ(parse_cpu_quantity("1.5"), 1500);
  EXPECT_EQ(parse_cpu_quantity("0.001"), 1);
  EXPECT_EQ(parse_cpu_quantity("+1"), 1000);
  EXPECT_EQ(parse_cpu_quantity("0"), 0);
  EXPECT_EQ(parse_cpu_quantity("1000000u"), 1000);
  EXPECT_EQ(parse_cpu_quantity("1e-3"), 1);
  EXPECT_EQ(parse_cpu_quantity("2E0"), 2000);
  EXPECT_EQ(parse_cpu_quantity("1k"), 1'000'000);
  EXPECT_EQ(parse_cpu_quantity("0.50000000000000000000"), 500);  // trailing zeros are not significant
}

TEST(QuantityTest, CpuErrorsSayWhatIsAllowed) {
  EXPECT_EQ(error_of([] { parse_cpu_quantity("2 cores"); }),
            "invalid CPU quantity '2 cores': write cores (2, 0.5) or millicores (500m)");
  EXPECT_TRUE(Contains(error_of([] { parse_cpu_quantity(""); }), "invalid CPU quantity ''"));
  EXPECT_TRUE(Contains(error_of([] { parse_cpu_quantity("1.2.3"); }), "invalid CPU quantity '1.2.3'"));
  EXPECT_TRUE(Contains(error_of([] { parse_cpu_quantity("m"); }), "invalid CPU quantity 'm'"));
  EXPECT_TRUE(Contains(error_of([] { parse_cpu_quantity("1e"); }), "invalid CPU quantity '1e'"));
  EXPECT_EQ(error_of([] { parse_cpu_quantity("-1"); }), "CPU quantity '-1' must not be negative");
  EXPECT_TRUE(Contains(error_of([] { parse_cpu_quantity("0.0005"); }), "is finer than 1m (one millicore)"));
  EXPECT_TRUE(Contains(error_of([] { parse_cpu_quantity("100u"); }), "is finer than 1m"));
  EXPECT_EQ(error_of([] { parse_cpu_quantity("9e30"); }), "CPU quantity '9e30' is too large");
  EXPECT_TRUE(Contains(error_of([] { parse_cpu_quantity("1234567890123456789012"); }), "too many digits"));
}

TEST(QuantityTest, MemoryIsBytes) {
  EXPECT_EQ(parse_memory_quantity("2Gi"), int64_t{2} << 30);
  EXPECT_EQ(parse_memory_quantity("512Mi"), int64_t{512} << 20);
  EXPECT_EQ(parse_memory_quantity("1G"), 1'000'000'000);
  EXPECT_EQ(parse_memory_quantity("1000"), 1000);
  EXPECT_EQ(parse_memory_quantity("1.5Gi"), int64_t{3} << 29);
  EXPECT_EQ(parse_memory_quantity("100M"), 100'000'000);
  EXPECT_EQ(parse_memory_quantity("1e9"), 1'000'000'000);
  EXPECT_EQ(parse_memory_quantity("1k"), 1000);
  EXPECT_EQ(parse_memory_quantity("1Ki"), 1024);
  EXPECT_EQ(parse_memory_quantity("0.5Ki"), 512);
  EXPECT_EQ(parse_memory_quantity("7Ei"), int64_t{7} << 60);
  EXPECT_EQ(parse_memory_quantity("0"), 0);
}

TEST(QuantityTest, MemoryErrorsSayWhatIsAllowed) {
  EXPECT_EQ(
      error_of([] { parse_memory_quantity("100m"); }),
      "memory quantity '100m' is in thousandths of a byte or smaller ('m' is a sub-unit); for megabytes "
      "write 100M, for mebibytes 100Mi");
  EXPECT_EQ(
      error_of([] { parse_memory_quantity("2GB"); }),
      "invalid memory quantity '2GB' (for '2GB' write 2G or 2Gi): write bytes (1000, 1e9) with an "
      "optional suffix Ki Mi Gi Ti Pi Ei (powers of 1024) or k M G T P E (powers of 1000), e.g. 512Mi or "
      "2Gi");
  EXPECT_TRUE(Contains(error_of([] { parse_memory_quantity("4K"); }), "(for '4K' write 4k or 4Ki)"));
  EXPECT_TRUE(Contains(error_of([] { parse_memory_quantity("1GiB"); }), "(for '1GiB' write 1Gi)"));
  EXPECT_TRUE(Contains(error_of([] { parse_memory_quantity("2 Gi"); }), "invalid memory quantity '2 Gi'"));
  EXPECT_EQ(error_of([] { parse_memory_quantity("0.5"); }),
            "memory quantity '0.5' is not a whole number of bytes");
  EXPECT_EQ(error_of([] { parse_memory_quantity("-1Gi"); }), "memory quantity '-1Gi' must not be negative");
  EXPECT_EQ(error_of([] { parse_memory_quantity("8Ei"); }), "memory quantity '8Ei' is too large");
}

TEST(QuantityTest, Durations) {
  EXPECT_EQ(parse_duration("10s"), milliseconds(10'000));
  EXPECT_EQ(parse_duration("5m"), milliseconds(300'000));
  EXPECT_EQ(parse_duration("1h"), milliseconds(3'600'000));
  EXPECT_EQ(parse_duration("500ms"), milliseconds(500));
  EXPECT_EQ(parse_duration("1m30s"), milliseconds(90'000));
  EXPECT_EQ(parse_duration("1.5s"), milliseconds(1'500));
  EXPECT_EQ(parse_duration("1h1m1s1ms"), milliseconds(3'661'001));
  EXPECT_EQ(parse_duration("0"), milliseconds(0));
  EXPECT_EQ(parse_duration("0s"), milliseconds(0));
}

TEST(QuantityTest, DurationErrorsSayWhatIsAllowed) {
  const std::string allowed = "write a number with a unit h, m, s or ms, e.g. 60s, 5m, 500ms, 1m30s";
  EXPECT_EQ(error_of([] { parse_duration("60"); }), "duration '60' has no unit; " + allowed);
  EXPECT_EQ(error_of([] { parse_duration("1m30"); }), "duration '1m30' has no unit; " + allowed);
  EXPECT_EQ(error_of([] { parse_duration("5d"); }), "invalid duration '5d': " + allowed);
  EXPECT_EQ(error_of([] { parse_duration("5 minutes"); }), "invalid duration '5 minutes': " + allowed);
  EXPECT_EQ(error_of([] { parse_duration(""); }), "invalid duration '': " + allowed);
  EXPECT_EQ(error_of([] { parse_duration("s"); }), "invalid duration 's': " + allowed);
  EXPECT_EQ(error_of([] { parse_duration("-5s"); }), "duration '-5s' must not be negative");
  EXPECT_EQ(error_of([] { parse_duration("1.5ms"); }),
            "duration '1.5ms' is finer than 1ms, the smallest unit");
}

TEST(QuantityTest, FormatsAreShortestAndRoundTrip) {
  EXPECT_EQ(format_cpu_quantity(500), "500m");
  EXPECT_EQ(format_cpu_quantity(2000), "2");
  EXPECT_EQ(format_cpu_quantity(0), "0");
  EXPECT_EQ(format_memory_quantity(int64_t{2} << 30), "2Gi");
  EXPECT_EQ(format_memory_quantity(1'000'000'000), "1G");
  EXPECT_EQ(format_memory_quantity(int64_t{1536} << 20), "1536Mi");
  EXPECT_EQ(format_memory_quantity(1001), "1001");
  EXPECT_EQ(format_memory_quantity(0), "0");
  EXPECT_EQ(format_duration(milliseconds(90'000)), "1m30s");
  EXPECT_EQ(format_duration(milliseconds(500)), "500ms");
  EXPECT_EQ(format_duration(milliseconds(3'600'000)), "1h");
  EXPECT_EQ(format_duration(milliseconds(0)), "0s");
  for (int64_t v : {int64_t{1}, int64_t{999}, int64_t{1000}, int64_t{1024}, int64_t{123456789},
                    int64_t{3} << 40, int64_t{5'000'000'000'000}}) {
    EXPECT_EQ(parse_cpu_quantity(format_cpu_quantity(v)), v);
    EXPECT_EQ(parse_memory_quantity(format_memory_quantity(v)), v);
    EXPECT_EQ(parse_duration(format_duration(milliseconds(v))), milliseconds(v));
  }
}

// ---------------------------------------------------------------------------------------------------
// cortex.yaml

// Runs in `dir` until the end of the scope, whatever happens in between.
class InFolder {
 public:
  explicit InFolder(const fs::path& dir) : previous_(fs::current_path()) { fs::current_path(dir); }
  ~InFolder() { fs::current_path(previous_); }

 private:
  fs::path previous_;
};

// A project folder: model/ (an HF folder), tiny.gguf, handler.py, and things that are not models.
class ConfigParserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "cortex_config_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    fs::create_directories(dir_ / "model");
    write("model/config.json", "{}");
    write("model/model.safetensors", "not really weights");
    write("tiny.gguf", "GGUF");
    write("handler.py", "def pre_inference(sample, metadata): pass\n");
    write("notes.txt", "not a model");
    fs::create_directories(dir_ / "empty");
    fs::create_directories(dir_ / "half");
    write("half/config.json", "{}");
    fs::create_directories(dir_ / "my model");
    write("my model/config.json", "{}");
    write("my model/model.safetensors", "");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::string& contents) { std::ofstream(dir_ / name) << contents; }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  DeploymentSpec parse(const std::string& yaml) {
    return parse_project_config(yaml, "cortex.yaml", dir_.string());
  }
  // Every problem of an invalid config, one per line; "<valid>" when it parses.
  std::string problems(const std::string& yaml) {
    try {
      parse(yaml);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "<valid>";
  }
  // A valid config whose api's fields continue at line 6 with `api_lines`.
  static std::string config(const std::string& api_lines = "") {
    return "- kind: deployment\n"  // 1
           "  name: text\n"        // 2
           "- kind: api\n"         // 3
           "  name: generator\n"   // 4
           "  model: ./model\n"    // 5
           + api_lines;
  }

  fs::path dir_;
};

TEST_F(ConfigParserTest, MinimalConfigGetsEveryDefault) {
  const DeploymentSpec d = parse(config());
  EXPECT_EQ(d.name, "text");
  EXPECT_EQ(d.project_dir, dir_.string());
  ASSERT_EQ(d.apis.size(), 1u);
  const ApiSpec& api = d.apis[0];
  EXPECT_EQ(api.name, "generator");
  EXPECT_EQ(api.model, path("model"));
  EXPECT_EQ(api.model_format, "hf");
  EXPECT_EQ(api.request_handler, "");
  EXPECT_EQ(api.compute.min_replicas, 1);
  EXPECT_EQ(api.compute.max_replicas, 100);
  EXPECT_EQ(api.compute.init_replicas, 1);
  EXPECT_EQ(api.compute.cpu_millis, 0);
  EXPECT_EQ(api.compute.mem_bytes, 0);
  EXPECT_EQ(api.compute.gpu, 0);
  EXPECT_EQ(api.autoscaling.target_replica_concurrency, 32);  // max_concurrency
  EXPECT_EQ(api.autoscaling.max_replica_concurrency, 1024);
  EXPECT_EQ(api.autoscaling.window, milliseconds(60'000));
  EXPECT_EQ(api.autoscaling.downscale_stabilization_period, milliseconds(300'000));
  EXPECT_EQ(api.autoscaling.upscale_stabilization_period, milliseconds(60'000));
  EXPECT_EQ(api.autoscaling.max_downscale_factor, 0.75);
  EXPECT_EQ(api.autoscaling.max_upscale_factor, 1.5);
  EXPECT_EQ(api.autoscaling.downscale_tolerance, 0.05);
  EXPECT_EQ(api.autoscaling.upscale_tolerance, 0.05);
  EXPECT_EQ(api.max_concurrency, 32);
  EXPECT_EQ(api.max_queue_length, 128);
  EXPECT_EQ(api.generation.max_tokens, 50);
  EXPECT_EQ(api.generation.max_tokens_limit, 1024);
  EXPECT_EQ(api.generation.temperature, 1.0);
  EXPECT_EQ(api.generation.top_k, 40);
  EXPECT_EQ(api.generation.top_p, 1.0);
  EXPECT_EQ(api.api_key, "");
  EXPECT_EQ(api.threads, 0);
  EXPECT_EQ(api.kv_cache_tokens, 0);
}

TEST_F(ConfigParserTest, DependentDefaultsFollowTheirFields) {
  const ApiSpec api = parse(config("  max_concurrency: 8\n"
                                   "  compute:\n"
                                   "    min_replicas: 3\n"))
                          .apis[0];
  EXPECT_EQ(api.compute.init_replicas, 3);
  EXPECT_EQ(api.autoscaling.target_replica_concurrency, 8);
}

TEST_F(ConfigParserTest, EmptyValuesMeanTheDefault) {
  const ApiSpec api = parse(config("  compute:\n"
                                   "  autoscaling:\n"
                                   "  request_handler:\n"
                                   "  model_format: ~\n"))
                          .apis[0];
  EXPECT_EQ(api.compute.max_replicas, 100);
  EXPECT_EQ(api.request_handler, "");
  EXPECT_EQ(api.model_format, "hf");
}

const char* kFullConfig = R"(# every field, none at its default
- kind: deployment
  name: text
- kind: api
  name: generator
  model: ./model
  model_format: hf
  request_handler: handler.py
  compute:
    min_replicas: 2
    max_replicas: 5
    init_replicas: 3
    cpu: 500m
    mem: 1.5Gi
    gpu: 1
  autoscaling:
    target_replica_concurrency: 4.5
    max_replica_concurrency: 64
    window: 10s
    downscale_stabilization_period: 1m30s
    upscale_stabilization_period: 500ms
    max_downscale_factor: 0.5
    max_upscale_factor: 2
    downscale_tolerance: 0.1
    upscale_tolerance: 0
  max_concurrency: 8
  max_queue_length: 16
  generation:
    max_tokens: 20
    max_tokens_limit: 200
    temperature: 0.7
    top_k: 0
    top_p: 0.9
  api_key: s3cret-key
  threads: 2
  kv_cache_tokens: 4096
- kind: api
  name: small
  model: tiny.gguf
)";

TEST_F(ConfigParserTest, FullConfigReadsEveryField) {
  const DeploymentSpec d = parse(kFullConfig);
  ASSERT_EQ(d.apis.size(), 2u);
  const ApiSpec& api = d.apis[0];
  EXPECT_EQ(api.model, path("model"));
  EXPECT_EQ(api.model_format, "hf");
  EXPECT_EQ(api.request_handler, path("handler.py"));
  EXPECT_EQ(api.compute.min_replicas, 2);
  EXPECT_EQ(api.compute.max_replicas, 5);
  EXPECT_EQ(api.compute.init_replicas, 3);
  EXPECT_EQ(api.compute.cpu_millis, 500);
  EXPECT_EQ(api.compute.mem_bytes, int64_t{3} << 29);
  EXPECT_EQ(api.compute.gpu, 1);
  EXPECT_EQ(api.autoscaling.target_replica_concurrency, 4.5);
  EXPECT_EQ(api.autoscaling.max_replica_concurrency, 64);
  EXPECT_EQ(api.autoscaling.window, milliseconds(10'000));
  EXPECT_EQ(api.autoscaling.downscale_stabilization_period, milliseconds(90'000));
  EXPECT_EQ(api.autoscaling.upscale_stabilization_period, milliseconds(500));
  EXPECT_EQ(api.autoscaling.max_downscale_factor, 0.5);
  EXPECT_EQ(api.autoscaling.max_upscale_factor, 2.0);
  EXPECT_EQ(api.autoscaling.downscale_tolerance, 0.1);
  EXPECT_EQ(api.autoscaling.upscale_tolerance, 0.0);
  EXPECT_EQ(api.max_concurrency, 8);
  EXPECT_EQ(api.max_queue_length, 16);
  EXPECT_EQ(api.generation.max_tokens, 20);
  EXPECT_EQ(api.generation.max_tokens_limit, 200);
  EXPECT_EQ(api.generation.temperature, 0.7);
  EXPECT_EQ(api.generation.top_k, 0);
  EXPECT_EQ(api.generation.top_p, 0.9);
  EXPECT_EQ(api.api_key, "s3cret-key");
  EXPECT_EQ(api.threads, 2);
  EXPECT_EQ(api.kv_cache_tokens, 4096);
  EXPECT_EQ(d.apis[1].name, "small");
  EXPECT_EQ(d.apis[1].model, path("tiny.gguf"));
  EXPECT_EQ(d.apis[1].model_format, "gguf");
}

TEST_F(ConfigParserTest, FullConfigRoundTripsThroughJson) {
  const DeploymentSpec d = parse(kFullConfig);
  const nlohmann::json j = to_json(d);
  EXPECT_EQ(j["apis"][0]["autoscaling"]["downscale_stabilization_period_ms"], 90'000);
  EXPECT_EQ(j["apis"][0]["compute"]["cpu_millis"], 500);
  EXPECT_EQ(j["apis"][0]["compute"]["mem_bytes"], int64_t{3} << 29);
  EXPECT_EQ(j["project_dir"], dir_.string());
  // Through text too, as the state store keeps it.
  const DeploymentSpec back = deployment_spec_from_json(nlohmann::json::parse(j.dump()));
  EXPECT_EQ(to_json(back), j);
  ASSERT_EQ(back.apis.size(), 2u);
  EXPECT_EQ(back.apis[0].autoscaling.window, milliseconds(10'000));
  EXPECT_EQ(back.apis[0].generation.temperature, 0.7);
  EXPECT_EQ(back.apis[0].autoscaling.target_replica_concurrency, 4.5);
  EXPECT_EQ(back.apis[1].model_format, "gguf");
  EXPECT_EQ(to_json(api_spec_from_json(to_json(d.apis[0]))), to_json(d.apis[0]));
}

TEST_F(ConfigParserTest, FromJsonNamesTheWrongField) {
  nlohmann::json j = to_json(parse(kFullConfig));
  nlohmann::json missing = j;
  missing["apis"][1]["compute"].erase("min_replicas");
  EXPECT_EQ(error_of([&] { deployment_spec_from_json(missing); }), "apis[1].compute.min_replicas: missing");
  nlohmann::json wrong = j;
  wrong["apis"][0]["autoscaling"]["window_ms"] = "10s";
  EXPECT_EQ(error_of([&] { deployment_spec_from_json(wrong); }),
            "apis[0].autoscaling.window_ms: must be an integer");
  nlohmann::json api = j["apis"][0];
  api["model"] = 5;
  EXPECT_EQ(error_of([&] { api_spec_from_json(api); }), "model: must be a string");
  api = j["apis"][0];
  api["threads"] = int64_t{1} << 40;
  EXPECT_EQ(error_of([&] { api_spec_from_json(api); }), "threads: out of range");
  EXPECT_EQ(error_of([&] {
              deployment_spec_from_json(nlohmann::json{{"name", "text"}, {"project_dir", "/"}});
            }),
            "apis: missing");
  EXPECT_EQ(error_of([&] { api_spec_from_json(nlohmann::json::array()); }), "spec: must be a JSON object");
  try {
    api_spec_from_json(nlohmann::json::object());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
}

TEST_F(ConfigParserTest, LocalPathsResolveAgainstTheProjectFolder) {
  for (const std::string& model :
       std::vector<std::string>{"model", "./model/", "empty/../model", path("model"),
                                "file://" + path("model"), "file://localhost" + path("model")}) {
    const ApiSpec api = parse("- kind: deployment\n  name: text\n- kind: api\n  name: a\n  model: " + model +
                              "\n  request_handler: ./handler.py\n")
                            .apis[0];
    EXPECT_EQ(api.model, path("model")) << model;
    EXPECT_EQ(api.model_format, "hf") << model;
    EXPECT_EQ(api.request_handler, path("handler.py")) << model;
  }
  const ApiSpec spaced = parse("- kind: deployment\n  name: text\n- kind: api\n  name: a\n  model: file://" +
                               dir_.string() + "/my%20model\n")
                             .apis[0];
  EXPECT_EQ(spaced.model, path("my model"));
  // A relative project folder is made absolute.
  DeploymentSpec d;
  {
    InFolder here(dir_);
    d = parse_project_config(config(), "cortex.yaml", ".");
  }
  EXPECT_EQ(d.project_dir, dir_.string());
  EXPECT_EQ(d.apis[0].model, path("model"));
}

TEST_F(ConfigParserTest, ModelFormatIsInferredFromTheFiles) {
  auto format_of = [&](const std::string& model) {
    return parse("- kind: deployment\n  name: text\n- kind: api\n  name: a\n  model: " + model + "\n")
        .apis[0]
        .model_format;
  };
  EXPECT_EQ(format_of("model"), "hf");
  EXPECT_EQ(format_of("tiny.gguf"), "gguf");
  EXPECT_EQ(format_of("s3://bucket/models/gpt2"), "hf");
  EXPECT_EQ(format_of("s3://bucket/models/gpt2.Q8_0.gguf"), "gguf");
  EXPECT_EQ(format_of("https://example.com/gpt2.gguf?download=true"), "gguf");
  EXPECT_EQ(format_of("hf://openai-community/gpt2"), "hf");
  // An explicit format wins for a URI.
  EXPECT_EQ(parse("- kind: deployment\n  name: text\n- kind: api\n  name: a\n  model: s3://b/m\n"
                  "  model_format: gguf\n")
                .apis[0]
                .model_format,
            "gguf");
}

TEST_F(ConfigParserTest, UrisAreKeptAsWritten) {
  for (const std::string uri : {"s3://cortex-examples/text-generator/774", "https://example.com/gpt2",
                                "http://127.0.0.1:9000/m.gguf", "hf://gpt2", "HF://gpt2"}) {
    const ApiSpec api =
        parse("- kind: deployment\n  name: text\n- kind: api\n  name: a\n  model: " + uri + "\n").apis[0];
    EXPECT_EQ(api.model, uri);
  }
}

TEST_F(ConfigParserTest, ModelStoreSettingsAndWeightType) {
  const ApiSpec api =
      parse(
          "- kind: deployment\n  name: text\n- kind: api\n  name: a\n  model: S3://b/m\n"
          "  model_endpoint: http://127.0.0.1:9000\n  model_region: eu-west-1\n  dtype: q8_0\n"
          "  kv_cache_dtype: f16\n")
          .apis[0];
  EXPECT_EQ(api.model_endpoint, "http://127.0.0.1:9000");
  EXPECT_EQ(api.model_region, "eu-west-1");
  EXPECT_EQ(api.dtype, "q8_0");
  EXPECT_FALSE(api.model_env.has_value());
  const ApiSpec back = api_spec_from_json(to_json(api));
  EXPECT_EQ(back.model_endpoint, "http://127.0.0.1:9000");
  EXPECT_EQ(back.dtype, "q8_0");
  EXPECT_EQ(api.kv_cache_dtype, "f16");
  EXPECT_EQ(back.kv_cache_dtype, "f16");

  EXPECT_TRUE(Contains(problems(config("  model_endpoint: http://minio:9000\n")),
                       "cortex.yaml:6: api 'generator' model_endpoint: applies to s3:// models only"));
  EXPECT_TRUE(Contains(problems(config("  model_region: us-east-1\n")),
                       "cortex.yaml:6: api 'generator' model_region: applies to s3:// models only"));
  EXPECT_EQ(problems(config("  dtype: int4\n")),
            "cortex.yaml:6: api 'generator' dtype: must be f32, f16 or q8_0, got 'int4'");
  EXPECT_EQ(problems(config("  kv_cache_dtype: q8_0\n")),
            "cortex.yaml:6: api 'generator' kv_cache_dtype: must be f32 or f16, got 'q8_0'");
  EXPECT_EQ(problems("- kind: deployment\n  name: text\n- kind: api\n  name: a\n  model: s3://b/m\n"
                     "  model_endpoint: minio:9000\n"),
            "cortex.yaml:6: api 'a' model_endpoint: must be an http:// or https:// URL of an S3-compatible "
            "store, got 'minio:9000'");
  EXPECT_EQ(problems("- kind: deployment\n  name: text\n- kind: api\n  name: a\n  model: hf://a/b/c\n"),
            "cortex.yaml:5: api 'a' model: 'hf://a/b/c' is not hf://owner/name or hf://owner/name@revision");
}

TEST_F(ConfigParserTest, LoadsAFileOrAFolder) {
  write("cortex.yaml", config("  compute:\n    cpu: 2\n"));
  const DeploymentSpec from_folder = load_project_config(dir_.string());
  EXPECT_EQ(from_folder.apis.at(0).compute.cpu_millis, 2000);
  EXPECT_EQ(from_folder.project_dir, dir_.string());
  const DeploymentSpec from_file = load_project_config(path("cortex.yaml"));
  EXPECT_EQ(to_json(from_file), to_json(from_folder));

  // Messages name the file as the caller named it.
  write("cortex.yaml", config("  threads: -1\n"));
  EXPECT_EQ(error_of([&] { load_project_config(dir_.string()); }),
            path("cortex.yaml") + ":6: api 'generator' threads: must be >= 0, got -1");
  std::string here, named;
  {
    InFolder in_project(dir_);
    here = error_of([] { load_project_config("."); });
    named = error_of([] { load_project_config("cortex.yaml"); });
  }
  EXPECT_EQ(here, "cortex.yaml:6: api 'generator' threads: must be >= 0, got -1");
  EXPECT_EQ(named, here);
}

TEST_F(ConfigParserTest, MissingFileIsNotFound) {
  try {
    load_project_config(path("empty"));
    ADD_FAILURE() << "no error";
  } catch (const ConfigError&) {
    ADD_FAILURE() << "a ConfigError";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_EQ(std::string(e.what()), "no cortex.yaml in " + path("empty"));
  }
  write("empty/cortex.yml", config());
  EXPECT_TRUE(Contains(error_of([&] { load_project_config(path("empty")); }),
                       "(there is a cortex.yml: rename it to cortex.yaml)"));
  try {
    load_project_config(path("nowhere/cortex.yaml"));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_EQ(std::string(e.what()), path("nowhere/cortex.yaml") + ": no such file");
  }
}

// ---------------------------------------------------------------------------------------------------
// Problems: each names file:line, the field and what is allowed

TEST_F(ConfigParserTest, MalformedYaml) {
  EXPECT_EQ(problems("- kind: api\n  name: [x\n"),
            "cortex.yaml:3: invalid YAML: end of sequence flow not found");
  EXPECT_EQ(problems("- kind: api\n  name: a: b\n"), "cortex.yaml:2: invalid YAML: illegal map value");
  EXPECT_EQ(problems("- kind: deployment\n  name: text\n kind: api\n"),
            "cortex.yaml:3: invalid YAML: end of sequence not found");
}

TEST_F(ConfigParserTest, EmptyFile) {
  const std::string expected =
      "cortex.yaml: the file is empty; a cortex.yaml is a list of resources (- kind: deployment / name: ..., "
      "then "
      "- kind: api / name: ... / model: ...)";
  EXPECT_EQ(problems(""), expected);
  EXPECT_EQ(problems("# nothing yet\n\n"), expected);
  try {
    parse("");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.problems().size(), 1u);
    EXPECT_EQ(e.problems()[0].line, 0);
    EXPECT_EQ(e.problems()[0].file, "cortex.yaml");
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
}

TEST_F(ConfigParserTest, TopLevelMustBeAList) {
  EXPECT_EQ(problems("\nkind: api\nname: generator\n"),
            "cortex.yaml:2: the top level must be a list of resources, each item starting with '- kind:' "
            "(deployment or api), got a mapping");
  EXPECT_TRUE(Contains(problems("hello"), "cortex.yaml:1: the top level must be a list of resources"));
  EXPECT_TRUE(
      Contains(problems(config() + "---\n" + config()),
               "cortex.yaml:7: holds 2 YAML documents (separated by ---); a cortex.yaml is one list"));
}

TEST_F(ConfigParserTest, ResourcesNeedAKnownKind) {
  EXPECT_EQ(problems(config() + "- name: other\n  model: ./model\n"),
            "cortex.yaml:6: item 3 kind: required; must be deployment or api");
  EXPECT_EQ(problems(config() + "- kind: apii\n  name: other\n"),
            "cortex.yaml:6: item 3 kind: must be deployment or api, got string 'apii'; did you mean 'api'?");
  EXPECT_EQ(problems(config() + "- kind: [api]\n"),
            "cortex.yaml:6: item 3 kind: must be deployment or api, got a list");
  EXPECT_EQ(
      problems(config() + "- just text\n"),
      "cortex.yaml:6: item 3: each resource must be a mapping with kind: deployment or kind: api, got string "
      "'just text'");
}

TEST_F(ConfigParserTest, UnknownFieldsNameTheAllowedOnes) {
  EXPECT_EQ(problems(config("  compute:\n    min_replica: 2\n")),
            "cortex.yaml:7: api 'generator' compute.min_replica: unknown field 'min_replica' (did you mean "
            "'min_replicas'?); allowed: min_replicas, max_replicas, init_replicas, cpu, mem, gpu");
  EXPECT_TRUE(
      Contains(problems(config("  max_replicas: 3\n")),
               "cortex.yaml:6: api 'generator' max_replicas: unknown field 'max_replicas' (it belongs "
               "under compute: compute.max_replicas); allowed: kind, name, model,"));
  EXPECT_EQ(problems(config("  autoscaling:\n    speed: 2\n")),
            "cortex.yaml:7: api 'generator' autoscaling.speed: unknown field 'speed'; allowed: "
            "target_replica_concurrency, max_replica_concurrency, window, downscale_stabilization_period, "
            "upscale_stabilization_period, max_downscale_factor, max_upscale_factor, downscale_tolerance, "
            "upscale_tolerance");
  EXPECT_EQ(
      problems("- kind: deployment\n  name: text\n  region: eu\n- kind: api\n  name: g\n  model: model\n"),
      "cortex.yaml:3: deployment 'text' region: unknown field 'region'; allowed: kind, name");
  EXPECT_TRUE(
      Contains(problems(config("  generation:\n    temprature: 0.5\n")),
               "cortex.yaml:7: api 'generator' generation.temprature: unknown field 'temprature' (did you "
               "mean 'temperature'?)"));
}

TEST_F(ConfigParserTest, UnknownFieldsSuggestLongerOrShorterSpellings) {
  EXPECT_TRUE(Contains(
      problems(config("  compute:\n    memory: 2Gi\n")),
      "cortex.yaml:7: api 'generator' compute.memory: unknown field 'memory' (did you mean 'mem'?)"));
  EXPECT_TRUE(Contains(problems(config("  generation:\n    temp: 0.5\n")),
                       "generation.temp: unknown field 'temp' (did you mean 'temperature'?)"));
  EXPECT_TRUE(Contains(problems(config("  compute:\n    xyz: 1\n")), "unknown field 'xyz'; allowed:"));
}

TEST_F(ConfigParserTest, RepeatedFields) {
  EXPECT_EQ(problems(config("  threads: 1\n  threads: 2\n")),
            "cortex.yaml:7: api 'generator' threads: given twice (first at line 6); keep one");
}

TEST_F(ConfigParserTest, WrongTypes) {
  EXPECT_EQ(problems(config("  compute:\n    min_replicas: two\n")),
            "cortex.yaml:7: api 'generator' compute.min_replicas: must be an integer, got string 'two'");
  EXPECT_EQ(problems(config("  compute:\n    max_replicas: \"2\"\n")),
            "cortex.yaml:7: api 'generator' compute.max_replicas: must be an integer, got string '2'");
  EXPECT_EQ(problems(config("  max_concurrency: 1.5\n")),
            "cortex.yaml:6: api 'generator' max_concurrency: must be an integer, got number 1.5");
  EXPECT_EQ(problems(config("  threads: true\n")),
            "cortex.yaml:6: api 'generator' threads: must be an integer, got boolean true");
  EXPECT_EQ(problems(config("  generation:\n    temperature: hot\n")),
            "cortex.yaml:7: api 'generator' generation.temperature: must be a number, got string 'hot'");
  EXPECT_EQ(problems(config("  compute: 2\n")),
            "cortex.yaml:6: api 'generator' compute: must be a mapping of min_replicas, max_replicas, "
            "init_replicas, "
            "cpu, mem, gpu, got integer 2");
  EXPECT_EQ(problems(config("  request_handler: [a.py]\n")),
            "cortex.yaml:6: api 'generator' request_handler: must be a string, got a list");
  EXPECT_EQ(problems(config("  autoscaling:\n    window: {seconds: 10}\n")),
            "cortex.yaml:7: api 'generator' autoscaling.window: must be a duration like 60s, 5m, 500ms or "
            "1m30s, got "
            "a mapping");
  EXPECT_EQ(problems(config("  compute:\n    gpu: 2147483648\n")),
            "cortex.yaml:7: api 'generator' compute.gpu: must be at most 2147483647, got 2147483648");
  EXPECT_EQ(problems(config("  threads: -99999999999999999999\n")),
            "cortex.yaml:6: api 'generator' threads: must be >= 0, got -99999999999999999999");
}

TEST_F(ConfigParserTest, MissingRequiredFields) {
  EXPECT_EQ(
      problems("- kind: deployment\n  name: text\n- kind: api\n  name: generator\n"),
      "cortex.yaml:3: api 'generator' model: required; a local path (relative to the project folder) or a "
      "URI: s3://, https://, http://, hf://, file://");
  EXPECT_EQ(
      problems("- kind: deployment\n  name: text\n- kind: api\n  name: generator\n  model:\n"),
      "cortex.yaml:5: api 'generator' model: required; a local path (relative to the project folder) or a "
      "URI: s3://, https://, http://, hf://, file://");
  EXPECT_TRUE(Contains(problems("- kind: deployment\n  name: text\n- kind: api\n  model: ./model\n"),
                       "cortex.yaml:3: item 2 (api) name: required; a DNS-1035 label"));
  EXPECT_TRUE(Contains(problems("- kind: deployment\n- kind: api\n  name: g\n  model: ./model\n"),
                       "cortex.yaml:1: item 1 (deployment) name: required; a DNS-1035 label"));
}

TEST_F(ConfigParserTest, NamesAreDns1035Labels) {
  const std::string allowed =
      "must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, ending with a "
      "letter "
      "or digit, at most 63 characters, got ";
  for (const std::string& bad :
       std::vector<std::string>{"Generator", "gen_1", "1gen", "gen-", std::string(64, 'a')}) {
    EXPECT_EQ(
        problems("- kind: deployment\n  name: text\n- kind: api\n  name: " + bad + "\n  model: ./model\n"),
        "cortex.yaml:4: api '" + bad.substr(0, 37) + (bad.size() > 40 ? "..." : "") + "' name: " + allowed +
            "'" + bad.substr(0, 37) + (bad.size() > 40 ? "..." : "") + "'");
  }
  EXPECT_EQ(problems("- kind: deployment\n  name: Text\n- kind: api\n  name: g\n  model: ./model\n"),
            "cortex.yaml:2: deployment 'Text' name: " + allowed + "'Text'");
  EXPECT_EQ(parse("- kind: deployment\n  name: a\n- kind: api\n  name: " + std::string(63, 'b') +
                  "\n  model: model\n")
                .apis[0]
                .name,
            std::string(63, 'b'));
}

TEST_F(ConfigParserTest, MinAboveMax) {
  EXPECT_EQ(problems(config("  compute:\n    min_replicas: 5\n    max_replicas: 2\n")),
            "cortex.yaml:7: api 'generator' compute.min_replicas: must be <= max_replicas (2), got 5");
  EXPECT_EQ(problems(config("  compute:\n    min_replicas: 101\n")),
            "cortex.yaml:7: api 'generator' compute.min_replicas: must be <= max_replicas (100, the "
            "default), got 101");
  EXPECT_EQ(problems(config("  compute:\n    max_replicas: 3\n    init_replicas: 4\n")),
            "cortex.yaml:8: api 'generator' compute.init_replicas: must be between min_replicas (1, the "
            "default) and "
            "max_replicas (3), got 4");
  EXPECT_EQ(
      problems(config("  generation:\n    max_tokens: 100\n    max_tokens_limit: 10\n")),
      "cortex.yaml:7: api 'generator' generation.max_tokens: must be <= max_tokens_limit (10), got 100");
  EXPECT_EQ(problems(config("  generation:\n    max_tokens_limit: 10\n")),
            "cortex.yaml:7: api 'generator' generation.max_tokens_limit: must be >= max_tokens (50, the "
            "default), got "
            "10");
}

TEST_F(ConfigParserTest, NegativeAndOutOfRangeValues) {
  EXPECT_EQ(problems(config("  compute:\n    gpu: -1\n")),
            "cortex.yaml:7: api 'generator' compute.gpu: must be >= 0, got -1");
  EXPECT_EQ(problems(config("  compute:\n    min_replicas: 0\n")),
            "cortex.yaml:7: api 'generator' compute.min_replicas: must be >= 1, got 0");
  EXPECT_EQ(problems(config("  max_queue_length: -5\n")),
            "cortex.yaml:6: api 'generator' max_queue_length: must be >= 0, got -5");
  EXPECT_EQ(problems(config("  max_concurrency: 0\n")),
            "cortex.yaml:6: api 'generator' max_concurrency: must be >= 1, got 0");
  EXPECT_EQ(problems(config("  kv_cache_tokens: -1\n")),
            "cortex.yaml:6: api 'generator' kv_cache_tokens: must be >= 0, got -1");
  EXPECT_EQ(problems(config("  generation:\n    top_p: 0\n    top_k: -1\n    temperature: 101\n")),
            "cortex.yaml:7: api 'generator' generation.top_p: must be > 0 and <= 1, got 0\n"
            "cortex.yaml:8: api 'generator' generation.top_k: must be between 0 and 1000000, got -1\n"
            "cortex.yaml:9: api 'generator' generation.temperature: must be between 0 and 100, got 101");
  EXPECT_EQ(parse(config("  compute:\n    gpu: 8\n")).apis[0].compute.gpu, 8);  // no GPU here: still valid
}

TEST_F(ConfigParserTest, BadQuantities) {
  EXPECT_EQ(
      problems(config("  compute:\n    cpu: 2 cores\n    mem: 2GB\n")),
      "cortex.yaml:7: api 'generator' compute.cpu: invalid CPU quantity '2 cores': write cores (2, 0.5) or "
      "millicores (500m)\n"
      "cortex.yaml:8: api 'generator' compute.mem: invalid memory quantity '2GB' (for '2GB' write 2G or "
      "2Gi): "
      "write bytes (1000, 1e9) with an optional suffix Ki Mi Gi Ti Pi Ei (powers of 1024) or k M G T P E "
      "(powers of 1000), e.g. 512Mi or 2Gi");
  EXPECT_EQ(problems(config("  compute:\n    cpu: -1\n")),
            "cortex.yaml:7: api 'generator' compute.cpu: CPU quantity '-1' must not be negative");
  const ComputeSpec c = parse(config("  compute:\n    cpu: 0.5\n    mem: \"512Mi\"\n")).apis[0].compute;
  EXPECT_EQ(c.cpu_millis, 500);
  EXPECT_EQ(c.mem_bytes, int64_t{512} << 20);
  EXPECT_EQ(parse(config("  compute:\n    cpu: 2\n    mem: 1e9\n")).apis[0].compute.mem_bytes, 1'000'000'000);
}

TEST_F(ConfigParserTest, BadDurations) {
  EXPECT_EQ(
      problems(config("  autoscaling:\n    window: 60\n    downscale_stabilization_period: 5 minutes\n"
                      "    upscale_stabilization_period: -1m\n")),
      "cortex.yaml:7: api 'generator' autoscaling.window: duration '60' has no unit; write a number with a "
      "unit h, m, s or ms, e.g. 60s, 5m, 500ms, 1m30s\n"
      "cortex.yaml:8: api 'generator' autoscaling.downscale_stabilization_period: invalid duration '5 "
      "minutes': "
      "write a number with a unit h, m, s or ms, e.g. 60s, 5m, 500ms, 1m30s\n"
      "cortex.yaml:9: api 'generator' autoscaling.upscale_stabilization_period: duration '-1m' must not be "
      "negative");
  EXPECT_EQ(problems(config("  autoscaling:\n    window: 0s\n")),
            "cortex.yaml:7: api 'generator' autoscaling.window: must be longer than 0s, got 0s");
  EXPECT_EQ(parse(config("  autoscaling:\n    upscale_stabilization_period: 0\n"))
                .apis[0]
                .autoscaling.upscale_stabilization_period,
            milliseconds(0));
}

TEST_F(ConfigParserTest, AutoscalingRanges) {
  EXPECT_EQ(
      problems(config("  autoscaling:\n"
                      "    max_downscale_factor: 1\n"
                      "    max_upscale_factor: 1\n"
                      "    downscale_tolerance: -0.1\n"
                      "    upscale_tolerance: .nan\n"
                      "    target_replica_concurrency: 0\n")),
      "cortex.yaml:7: api 'generator' autoscaling.max_downscale_factor: must be >= 0 and < 1, got 1\n"
      "cortex.yaml:8: api 'generator' autoscaling.max_upscale_factor: must be > 1, got 1\n"
      "cortex.yaml:9: api 'generator' autoscaling.downscale_tolerance: must be >= 0, got -0.1\n"
      "cortex.yaml:10: api 'generator' autoscaling.upscale_tolerance: must be a number, got string '.nan'\n"
      "cortex.yaml:11: api 'generator' autoscaling.target_replica_concurrency: must be > 0, got 0");
  EXPECT_EQ(problems(config(
                "  autoscaling:\n    target_replica_concurrency: 20\n    max_replica_concurrency: 10\n")),
            "cortex.yaml:7: api 'generator' autoscaling.target_replica_concurrency: must be <= "
            "max_replica_concurrency (10), got 20");
  EXPECT_EQ(problems(config("  autoscaling:\n    max_replica_concurrency: 16\n")),
            "cortex.yaml:7: api 'generator' autoscaling.max_replica_concurrency: must be >= "
            "target_replica_concurrency (32, which defaults to max_concurrency), got 16");
  EXPECT_TRUE(Contains(problems(config("  max_concurrency: 2000\n")),
                       "cortex.yaml:6: api 'generator' max_concurrency: is also the default "
                       "autoscaling.target_replica_concurrency, which must be <= "
                       "autoscaling.max_replica_concurrency (1024, the default), got 2000"));
}

TEST_F(ConfigParserTest, DuplicateApiNames) {
  EXPECT_EQ(
      problems(config() + "- kind: api\n  name: generator\n  model: tiny.gguf\n"),
      "cortex.yaml:7: api 'generator' name: another api is named 'generator' (at line 4); api names must be "
      "unique");
}

TEST_F(ConfigParserTest, ExactlyOneDeployment) {
  EXPECT_EQ(problems("- kind: api\n  name: generator\n  model: ./model\n"),
            "cortex.yaml:1: no kind: deployment resource; add one (- kind: deployment / name: NAME)");
  EXPECT_EQ(
      problems(config() + "- kind: deployment\n  name: other\n"),
      "cortex.yaml:6: deployment 'other': a second deployment (the first is at line 1); a cortex.yaml has "
      "exactly one kind: deployment");
  EXPECT_EQ(
      problems("- kind: deployment\n  name: text\n"),
      "cortex.yaml:1: no kind: api resource; add at least one (- kind: api / name: NAME / model: PATH)");
}

TEST_F(ConfigParserTest, ModelPathProblems) {
  auto with_model = [](const std::string& model) {
    return "- kind: deployment\n  name: text\n- kind: api\n  name: g\n  model: " + model + "\n";
  };
  EXPECT_EQ(problems(with_model("./missing")),
            "cortex.yaml:5: api 'g' model: './missing' does not exist (looked for " + path("missing") + ")");
  EXPECT_TRUE(Contains(problems(with_model("~/gpt2")), "'~' is not expanded"));
  EXPECT_EQ(
      problems(with_model("empty")),
      "cortex.yaml:5: api 'g' model: cannot tell the model format: " + path("empty") +
          " is a folder without config.json and model.safetensors (a Hugging Face model folder has both; it "
          "is empty); point model at hf (a Hugging Face folder with config.json and model.safetensors) or "
          "gguf "
          "(a .gguf file)");
  EXPECT_TRUE(Contains(problems(with_model("half")),
                       path("half") +
                           " is a folder without model.safetensors (a Hugging Face model folder has both; "
                           "it holds config.json)"));
  EXPECT_TRUE(Contains(problems(with_model(".")),
                       dir_.string() +
                           " is a folder without config.json and model.safetensors (a Hugging Face "
                           "model folder has both; it holds empty/, half/, handler.py, model/, my "
                           "model/ and 2 more)"));
  EXPECT_TRUE(Contains(problems(with_model("notes.txt")),
                       "cortex.yaml:5: api 'g' model: cannot tell the model format: " + path("notes.txt") +
                           " is a file without the .gguf suffix"));
  EXPECT_EQ(
      problems(with_model("gs://bucket/model")),
      "cortex.yaml:5: api 'g' model: unsupported URI scheme 'gs://'; model must be a local path (relative to "
      "the project folder) or a URI: s3://, https://, http://, hf://, file://");
  EXPECT_TRUE(
      Contains(problems(with_model("file://model")),
               "cortex.yaml:5: api 'g' model: a file:// URI needs an absolute path (file:///path/to/model)"));
  EXPECT_EQ(
      problems(with_model("s3://")),
      "cortex.yaml:5: api 'g' model: 's3://' names no location after s3:// (e.g. s3://bucket/path/to/model)");
  EXPECT_EQ(problems(with_model("./model") + "  model_format: onnx\n"),
            "cortex.yaml:6: api 'g' model_format: must be hf (a Hugging Face folder with config.json and "
            "model.safetensors) or gguf (a .gguf file), got 'onnx'");
  EXPECT_EQ(problems(with_model("./model") + "  model_format: gguf\n"),
            "cortex.yaml:6: api 'g' model_format: is gguf (a .gguf file), but model " + path("model") +
                " is not a file");
  EXPECT_EQ(problems(with_model("tiny.gguf") + "  model_format: hf\n"),
            "cortex.yaml:6: api 'g' model_format: is hf (a Hugging Face model folder), but model " +
                path("tiny.gguf") + " is not a folder");
  // An explicit format lets a file without the suffix through.
  EXPECT_EQ(parse(with_model("notes.txt") + "  model_format: gguf\n").apis[0].model_format, "gguf");
}

TEST_F(ConfigParserTest, RequestHandlerMustExist) {
  EXPECT_EQ(problems(config("  request_handler: encoder.py\n")),
            "cortex.yaml:6: api 'generator' request_handler: 'encoder.py' does not exist (looked for " +
                path("encoder.py") + ")");
  EXPECT_EQ(problems(config("  request_handler: empty\n")),
            "cortex.yaml:6: api 'generator' request_handler: " + path("empty") +
                " is not a file; request_handler is a Python file such as handler.py");
  EXPECT_TRUE(Contains(problems(config("  request_handler: s3://b/handler.py\n")),
                       "cortex.yaml:6: api 'generator' request_handler: must be a file in the project"));
}

TEST_F(ConfigParserTest, ApiKeys) {
  EXPECT_EQ(parse(config("  api_key: abc123\n")).apis[0].api_key, "abc123");
  ::setenv("CORTEX_CONFIG_TEST_KEY", "from-env", 1);
  EXPECT_EQ(parse(config("  api_key_env: CORTEX_CONFIG_TEST_KEY\n")).apis[0].api_key, "from-env");
  ::unsetenv("CORTEX_CONFIG_TEST_KEY");
  EXPECT_EQ(problems(config("  api_key_env: CORTEX_CONFIG_TEST_KEY\n")),
            "cortex.yaml:6: api 'generator' api_key_env: environment variable CORTEX_CONFIG_TEST_KEY is not "
            "set (it "
            "holds the API key)");
  EXPECT_EQ(problems(config("  api_key: a\n  api_key_env: K\n")),
            "cortex.yaml:7: api 'generator' api_key_env: give api_key or api_key_env, not both");
  const std::string spaced = problems(config("  api_key: secret with spaces\n"));
  EXPECT_EQ(
      spaced,
      "cortex.yaml:6: api 'generator' api_key: must be printable ASCII without spaces (clients send it as "
      "'Authorization: Bearer KEY')");
  EXPECT_FALSE(Contains(spaced, "secret"));  // never echoed
}

TEST_F(ConfigParserTest, CollectsEveryProblemInFileOrder) {
  const std::string yaml = config(
                               "  compute:\n"                   // 6
                               "    min_replicas: 5\n"          // 7
                               "    max_replicas: 2\n"          // 8
                               "    mem: lots\n"                // 9
                               "  autoscaling:\n"               // 10
                               "    window: soon\n"             // 11
                               "  request_handler: nope.py\n")  // 12
                           +
                           "- kind: api\n"       // 13
                           "  name: Bad_Name\n"  // 14
                           "  model: ./model\n"  // 15
                           "  colour: blue\n";   // 16
  try {
    parse(yaml);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    const auto& p = e.problems();
    ASSERT_EQ(p.size(), 6u) << e.what();
    EXPECT_EQ(p[0].line, 7);
    EXPECT_EQ(p[0].field, "api 'generator' compute.min_replicas");
    EXPECT_EQ(p[0].message, "must be <= max_replicas (2), got 5");
    EXPECT_EQ(p[0].file, "cortex.yaml");
    EXPECT_EQ(p[1].line, 9);
    EXPECT_EQ(p[1].field, "api 'generator' compute.mem");
    EXPECT_EQ(p[2].line, 11);
    EXPECT_EQ(p[2].field, "api 'generator' autoscaling.window");
    EXPECT_EQ(p[3].line, 12);
    EXPECT_EQ(p[3].field, "api 'generator' request_handler");
    EXPECT_EQ(p[4].line, 14);
    EXPECT_EQ(p[4].field, "api 'Bad_Name' name");
    EXPECT_EQ(p[5].line, 16);
    EXPECT_EQ(p[5].field, "api 'Bad_Name' colour");
    std::string joined;
    for (const auto& problem : p) joined += (joined.empty() ? "" : "\n") + problem.to_string();
    EXPECT_EQ(std::string(e.what()), joined);
  }
}

// docs/config.md: every ```yaml block is a valid cortex.yaml, except one marked <!-- invalid -->, whose
// problems are the ```text block after it.
TEST_F(ConfigParserTest, ReferenceExamplesAreRight) {
  const char* source = std::getenv("CORTEX_SOURCE_DIR");
  std::ifstream in(fs::path(source ? source : ".") / "docs" / "config.md");
  ASSERT_TRUE(in.is_open()) << "docs/config.md (set CORTEX_SOURCE_DIR or run from the repository root)";
  write("encoder.py", "");
  fs::create_directories(dir_ / "models");
  write("models/gpt2.gguf", "");

  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  auto block_at = [&](size_t& i) {  // the block whose opening fence is lines[i]; i ends on its closing one
    std::string text;
    while (++i < lines.size() && lines[i] != "```") text += lines[i] + "\n";
    return text;
  };
  int valid = 0, invalid = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i] != "```yaml") continue;
    const bool expect_problems = i > 0 && lines[i - 1] == "<!-- invalid -->";
    const size_t start = i + 1;
    const std::string yaml = block_at(i);
    if (!expect_problems) {
      EXPECT_EQ(problems(yaml), "<valid>") << "docs/config.md:" << start;
      ++valid;
      continue;
    }
    while (++i < lines.size() && lines[i] != "```text") {
    }
    ASSERT_LT(i, lines.size()) << "no ```text block after the invalid example at docs/config.md:" << start;
    EXPECT_EQ(problems(yaml) + "\n", block_at(i)) << "docs/config.md:" << start;
    ++invalid;
  }
  EXPECT_EQ(valid, 3);
  EXPECT_EQ(invalid, 1);
}

TEST(ConfigProblemTest, FormatsLeaveOutWhatIsUnknown) {
  EXPECT_EQ((ConfigProblem{"c.yaml", 3, "api 'a' threads", "bad"}.to_string()),
            "c.yaml:3: api 'a' threads: bad");
  EXPECT_EQ((ConfigProblem{"c.yaml", 0, "", "empty"}.to_string()), "c.yaml: empty");
  EXPECT_EQ((ConfigProblem{"c.yaml", 2, "", "bad YAML"}.to_string()), "c.yaml:2: bad YAML");
}

}  // namespace
}  // namespace cortex::control
