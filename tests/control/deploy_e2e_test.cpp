// The control plane end to end, as a user runs it: the `cortex` binary (deploy, get, logs, predict,
// refresh, delete, cluster), the operator it starts, replicas on the tiny test model, the gateway, and
// curl as the client. Each test has its own $CORTEX_HOME and gateway port.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "control/http_client.h"
#include "support/background_process.h"
#include "support/s3_test_server.h"
#include "support/test_models.h"
#include "util/file_util.h"

namespace cortex::control {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::cortex_binary;
using testing::run_command;
using testing::test_model;

using testing::free_port;

bool wait_until(const std::function<bool()>& done, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

class DeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    home_ = testing::make_temp_dir("deploy-home");
    project_ = testing::make_temp_dir("deploy-project");
    port_ = free_port();
    ::setenv("CORTEX_HOME", home_.c_str(), 1);
    ::setenv("CORTEX_GATEWAY_PORT", std::to_string(port_).c_str(), 1);
    gateway_ = "http://127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override { cortex({"cluster", "down"}); }

  ProcessResult cortex(std::vector<std::string> args) {
    args.insert(args.begin(), cortex_binary());
    return run_command(args);
  }

  // Writes the project's cortex.yaml: the example's, with `extra` appended to the api.
  void write_project(const std::string& api_fields, const std::string& model = "") {
    std::string yaml = "- kind: deployment\n  name: text\n- kind: api\n  name: generator\n  model: " +
                       (model.empty() ? test_model("tiny") : model) + "\n" + api_fields;
    write_file_atomic(project_ + "/cortex.yaml", yaml);
  }

  json api(const std::string& name) {
    auto r = cortex({"get", name, "-o", "json"});
    if (r.exit_code != 0) return json();
    return json::parse(r.out, nullptr, false);
  }

  bool wait_live(const std::string& name, std::chrono::seconds timeout = std::chrono::seconds(90)) {
    return wait_until(
        [&] {
          json a = api(name);
          return a.is_object() && a["status"] == "live";
        },
        timeout);
  }

  std::set<std::string> replica_ids(const std::string& name) {
    std::set<std::string> ids;
    json a = api(name);
    if (a.is_object())
      for (const auto& r : a["replicas"]) ids.insert(r["id"].get<std::string>());
    return ids;
  }

  HttpResponse post(const std::string& path, const std::string& body,
                    std::map<std::string, std::string> headers = {}) {
    HttpCall call;
    call.method = "POST";
    call.url = gateway_ + path;
    call.body = body;
    call.headers = std::move(headers);
    call.timeout = std::chrono::milliseconds(120'000);
    return http_call(call);
  }

  std::string home_, project_, gateway_;
  int port_ = 0;
};

const char* kSeedRequest = R"({"samples": [{"text": "machine learning"}]})";

TEST_F(DeployTest, WalkthroughDeployGetCurlPredictRedeployDelete) {
  // The example project, its model pointing at the tiny test model.
  std::string example = read_file(testing::source_dir() + "/examples/text-generator/cortex.yaml");
  ASSERT_NE(example.find("kind: deployment"), std::string::npos);
  write_file_atomic(project_ + "/cortex.yaml", example);
  fs::create_directory_symlink(test_model("tiny"), project_ + "/model");

  auto deployed = cortex({"deploy", project_});
  ASSERT_EQ(deployed.exit_code, 0) << deployed.err;
  EXPECT_NE(deployed.out.find("creating generator"), std::string::npos) << deployed.out;
  EXPECT_NE(deployed.out.find("Deployment started"), std::string::npos) << deployed.out;
  ASSERT_TRUE(wait_live("generator")) << api("generator").dump(2);

  auto table = cortex({"get"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("api"), std::string::npos);
  EXPECT_NE(table.out.find("generator  live"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("1/1"), std::string::npos) << table.out;

  // The seed's curl, verbatim but for the port.
  auto curl = run_command({"curl", "-s", "-S", gateway_ + "/text/generator", "-X", "POST", "-H",
                           "Content-Type: application/json", "-d", kSeedRequest});
  ASSERT_EQ(curl.exit_code, 0) << curl.err;
  json answer = json::parse(curl.out, nullptr, false);
  ASSERT_TRUE(answer.is_object()) << curl.out;
  ASSERT_EQ(answer["predictions"].size(), 1u) << curl.out;
  EXPECT_EQ(answer["predictions"][0].get<std::string>().rfind("machine learning", 0), 0u) << curl.out;

  // The same seed through the gateway and through `cortex predict` gives the same text.
  write_file_atomic(project_ + "/sample.json", R"({"samples": [{"text": "machine learning", "seed": 3}]})");
  auto predicted = cortex({"predict", "generator", project_ + "/sample.json"});
  ASSERT_EQ(predicted.exit_code, 0) << predicted.err;
  auto direct = post("/text/generator", R"({"samples": [{"text": "machine learning", "seed": 3}]})");
  ASSERT_EQ(direct.status, 200) << direct.body;
  EXPECT_EQ(json::parse(predicted.out)["predictions"], json::parse(direct.body)["predictions"]);

  // OpenAI-compatible route and model list at the gateway, streaming passes through.
  auto stream =
      post("/v1/completions", R"({"model": "generator", "prompt": "Hello", "max_tokens": 8, "stream": true,
                                           "ignore_eos": true})");
  ASSERT_EQ(stream.status, 200) << stream.body;
  EXPECT_EQ(stream.content_type.rfind("text/event-stream", 0), 0u);
  EXPECT_NE(stream.body.find("data: [DONE]"), std::string::npos) << stream.body;
  HttpCall models;
  models.url = gateway_ + "/v1/models";
  EXPECT_EQ(json::parse(http_call(models).body)["data"][0]["id"], "generator");
  EXPECT_EQ(post("/v1/completions", R"({"model": "nope", "prompt": "x"})").status, 404);
  EXPECT_EQ(post("/text/nope", kSeedRequest).status, 404);
  EXPECT_EQ(post("/other/generator", kSeedRequest).status, 404);
  HttpCall get_api;
  get_api.url = gateway_ + "/text/generator";
  EXPECT_EQ(http_call(get_api).status, 405);
  // Errors of the replica come back as they are.
  auto bad = post("/text/generator", R"({"samples": "nope"})");
  EXPECT_EQ(bad.status, 400) << bad.body;

  // `cortex get API`: endpoint, example curl, replicas, signature.
  auto detail = cortex({"get", "generator"});
  ASSERT_EQ(detail.exit_code, 0) << detail.err;
  EXPECT_NE(detail.out.find(gateway_ + "/text/generator"), std::string::npos) << detail.out;
  EXPECT_NE(detail.out.find("curl "), std::string::npos);
  EXPECT_NE(detail.out.find("ready"), std::string::npos);
  EXPECT_NE(detail.out.find("context"), std::string::npos) << detail.out;  // the signature's input
  auto described = cortex({"describe", "generator"});
  EXPECT_NE(described.out.find("events:"), std::string::npos) << described.out;
  auto logs = cortex({"logs", "generator"});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("cortex serve: ready"), std::string::npos) << logs.out;
  auto counts = api("generator")["traffic"];
  EXPECT_GE(counts["2xx"].get<int>(), 3);
  EXPECT_GE(counts["4xx"].get<int>(), 1);

  // The gateway's Prometheus metrics count what it answered.
  HttpCall metrics;
  metrics.url = gateway_ + "/metrics";
  std::string scraped = http_call(metrics).body;
  EXPECT_NE(scraped.find("cortex_gateway_requests_total{api=\"generator\",code=\"2xx\"}"), std::string::npos)
      << scraped;
  EXPECT_NE(scraped.find("cortex_gateway_request_duration_seconds_bucket{api=\"generator\""),
            std::string::npos)
      << scraped;

  // Deploying the same config again changes nothing.
  auto again = cortex({"deploy", project_});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("up to date"), std::string::npos) << again.out;

  // A changed config rolls the replicas over while requests keep flowing: none fails.
  auto before = replica_ids("generator");
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string last_failure;
  std::thread client([&] {
    while (!stop) {
      auto r = post("/text/generator", R"({"samples": [{"text": "roll", "max_tokens": 4}]})");
      if (r.status == 200) {
        ok++;
      } else {
        failed++;
        last_failure = std::to_string(r.status) + " " + r.error + " " + r.body;
      }
    }
  });
  std::string changed = example;
  changed.replace(changed.find("max_tokens: 50"), 14, "max_tokens: 20");
  write_file_atomic(project_ + "/cortex.yaml", changed);
  auto redeployed = cortex({"deploy", project_});
  ASSERT_EQ(redeployed.exit_code, 0) << redeployed.err;
  EXPECT_NE(redeployed.out.find("updating generator"), std::string::npos) << redeployed.out;
  bool rolled = wait_until(
      [&] {
        json a = api("generator");
        if (!a.is_object() || a["status"] != "live") return false;
        for (const auto& r : a["replicas"])
          if (before.count(r["id"].get<std::string>())) return false;
        return true;
      },
      std::chrono::seconds(90));
  // `cortex refresh` rolls them over the same way.
  auto rolled_ids = replica_ids("generator");
  auto refreshed = cortex({"refresh", "generator"});
  EXPECT_EQ(refreshed.exit_code, 0) << refreshed.err;
  bool refreshed_done = wait_until(
      [&] {
        json a = api("generator");
        if (!a.is_object() || a["status"] != "live" || a["replicas"].empty()) return false;
        for (const auto& r : a["replicas"])
          if (rolled_ids.count(r["id"].get<std::string>())) return false;
        return true;
      },
      std::chrono::seconds(90));
  stop = true;
  client.join();
  EXPECT_TRUE(rolled) << api("generator").dump(2);
  EXPECT_TRUE(refreshed_done) << api("generator").dump(2);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(failed.load(), 0) << last_failure;
  EXPECT_EQ(api("generator")["spec"]["generation"]["max_tokens"], 20);

  // Delete: the route goes at once, the replicas stop.
  auto deleted = cortex({"delete", "generator"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_EQ(post("/text/generator", kSeedRequest).status, 404);
  auto empty = cortex({"get"});
  EXPECT_NE(empty.out.find("no APIs"), std::string::npos) << empty.out;
  EXPECT_TRUE(wait_until(
      [&] {
        return run_command({"pgrep", "-f", "port-file " + home_}).exit_code != 0;
      },
      std::chrono::seconds(30)));
}

TEST_F(DeployTest, ConfigErrorsNameFileAndLineAndChangeNothing) {
  write_project("  compute:\n    min_replicas: 1\n");
  ASSERT_EQ(cortex({"deploy", project_}).exit_code, 0);
  ASSERT_TRUE(wait_live("generator"));
  auto version = api("generator")["version"];
  write_project("  compute:\n    min_replicas: 5\n    max_replicas: 2\n  colour: blue\n");
  auto r = cortex({"deploy", project_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("cortex.yaml:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("min_replicas"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("colour"), std::string::npos) << r.err;
  EXPECT_EQ(api("generator")["version"], version);
  EXPECT_EQ(api("generator")["status"], "live");
}

TEST_F(DeployTest, GpuWithoutBackendIsComputeUnavailable) {
  write_project("  compute:\n    gpu: 1\n");
  auto r = cortex({"deploy", project_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(wait_until([&] { return api("generator")["status"] == "compute unavailable"; },
                         std::chrono::seconds(10)));
  json a = api("generator");
  EXPECT_NE(a["reason"].get<std::string>().find("GPU"), std::string::npos) << a.dump(2);
  EXPECT_TRUE(a["replicas"].empty());  // never a silent fallback to the CPU
  auto refused = post("/text/generator", kSeedRequest);
  EXPECT_EQ(refused.status, 503);
  EXPECT_NE(refused.body.find("compute unavailable"), std::string::npos) << refused.body;
}

TEST_F(DeployTest, GatewayCancelsUpstreamOnDisconnectAndAnswers503WhenQueuesAreFull) {
  // The 124M model generates slowly enough for a request to be caught in flight.
  write_project("  max_concurrency: 1\n  max_queue_length: 0\n", test_model("124M"));
  ASSERT_EQ(cortex({"deploy", project_}).exit_code, 0);
  ASSERT_TRUE(wait_live("generator"));
  std::string endpoint = api("generator")["replicas"][0]["endpoint"].get<std::string>();
  // A streaming client that gives up after a second.
  std::thread quitter([&] {
    run_command(
        {"curl", "-s", "-N", "--max-time", "1", gateway_ + "/v1/completions", "-d",
         R"({"model": "generator", "prompt": "x", "max_tokens": 500, "ignore_eos": true, "stream": true})"});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  // Meanwhile the only replica's only slot is taken and its queue holds nothing: the gateway says 503.
  auto busy = post("/text/generator", kSeedRequest);
  EXPECT_EQ(busy.status, 503) << busy.body;
  auto busy_stream = post("/v1/completions", R"({"model": "generator", "prompt": "x", "stream": true})");
  EXPECT_EQ(busy_stream.status, 503) << busy_stream.body;  // not a 200 with an error inside the stream
  quitter.join();
  // The disconnect reached the replica: its sequence is cancelled within moments, not after 500 tokens.
  auto replica_metric = [&](const std::string& name) {
    HttpCall m;
    m.url = endpoint + "/metrics";
    std::string text = http_call(m).body;
    auto at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::atoi(text.c_str() + at + name.size() + 2);
  };
  EXPECT_TRUE(wait_until(
      [&] {
        return replica_metric("cortex_batch_size") == 0 && api("generator")["traffic"]["in_flight"] == 0;
      },
      std::chrono::seconds(5)))
      << replica_metric("cortex_batch_size");
  EXPECT_EQ(post("/text/generator", R"({"samples": [{"text": "x", "max_tokens": 2}]})").status, 200);
}

TEST_F(DeployTest, ApiKeyIsRequiredOnEveryRoute) {
  write_project("  api_key: s3cret\n");
  ASSERT_EQ(cortex({"deploy", project_}).exit_code, 0);
  ASSERT_TRUE(wait_live("generator"));
  EXPECT_EQ(post("/text/generator", kSeedRequest).status, 401);
  EXPECT_EQ(post("/text/generator", kSeedRequest, {{"Authorization", "Bearer wrong"}}).status, 401);
  EXPECT_EQ(cortex({"describe", "generator"}).out.find("s3cret"), std::string::npos);
  EXPECT_EQ(cortex({"get", "generator", "-o", "json"}).out.find("s3cret"), std::string::npos);
  EXPECT_EQ(post("/v1/completions", R"({"model": "generator", "prompt": "x", "max_tokens": 2})").status, 401);
  EXPECT_EQ(post("/text/generator", kSeedRequest, {{"Authorization", "Bearer s3cret"}}).status, 200);
  EXPECT_EQ(post("/v1/completions", R"({"model": "generator", "prompt": "x", "max_tokens": 2})",
                 {{"X-API-Key", "s3cret"}})
                .status,
            200);
}

TEST_F(DeployTest, ModelThatFailsToLoadIsAnErrorWithTheReason) {
  std::string broken = project_ + "/broken";
  fs::create_directory(broken);
  for (const char* f : {"config.json", "vocab.json", "merges.txt"})
    fs::copy_file(test_model("tiny") + "/" + f, broken + "/" + f);
  std::string weights = read_file(test_model("tiny") + "/model.safetensors");
  write_file_atomic(broken + "/model.safetensors", weights.substr(0, weights.size() / 2));  // truncated
  write_project("", broken);
  ASSERT_EQ(cortex({"deploy", project_}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return api("generator")["status"] == "error"; }, std::chrono::seconds(60)))
      << api("generator").dump(2);
  json a = api("generator");
  std::string lines = a["last_log_lines"].dump();
  EXPECT_NE(lines.find("model.safetensors"), std::string::npos) << a.dump(2);
  auto shown = cortex({"get", "generator"});
  EXPECT_NE(shown.out.find("error"), std::string::npos);
  EXPECT_NE(shown.out.find("last log lines"), std::string::npos) << shown.out;
}

TEST_F(DeployTest, ScalesUpUnderLoadAndBackDown) {
  write_project(
      "  max_concurrency: 2\n"
      "  compute:\n    min_replicas: 1\n    max_replicas: 3\n"
      "  autoscaling:\n    target_replica_concurrency: 1\n    window: 2s\n"
      "    upscale_stabilization_period: 1s\n    downscale_stabilization_period: 3s\n");
  ASSERT_EQ(cortex({"deploy", project_}).exit_code, 0);
  ASSERT_TRUE(wait_live("generator"));
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 6; ++i)
    clients.emplace_back([&] {
      while (!stop) {
        auto r = post("/text/generator", R"({"samples": [{"text": "load", "max_tokens": 48}]})");
        (r.status == 200 ? ok : failed)++;
      }
    });
  bool scaled_up = wait_until(
      [&] {
        json a = api("generator");
        return a.is_object() && a["requested"].get<int>() >= 2 && a["ready"].get<int>() >= 2;
      },
      std::chrono::seconds(90));
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_TRUE(scaled_up) << api("generator").dump(2);
  EXPECT_GT(ok.load(), 0);
  bool scaled_down = wait_until(
      [&] {
        json a = api("generator");
        return a.is_object() && a["requested"] == 1 && a["replicas"].size() == 1u && a["status"] == "live";
      },
      std::chrono::seconds(90));
  EXPECT_TRUE(scaled_down) << api("generator").dump(2);
  auto described = cortex({"describe", "generator"});
  EXPECT_NE(described.out.find("autoscaling from 1 to"), std::string::npos) << described.out;
}

TEST_F(DeployTest, KilledReplicaUnderLoadComesBackAndNothingHangs) {
  write_project("  compute:\n    min_replicas: 2\n");
  ASSERT_EQ(cortex({"deploy", project_}).exit_code, 0);
  ASSERT_TRUE(wait_live("generator"));
  json a = api("generator");
  ASSERT_EQ(a["replicas"].size(), 2u);
  int victim = a["replicas"][0]["pid"].get<int>();
  std::string victim_id = a["replicas"][0]["id"].get<std::string>();
  std::atomic<bool> stop{false};
  std::atomic<int> done{0}, failed{0}, unclear{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i)
    clients.emplace_back([&] {
      while (!stop) {
        auto r = post("/text/generator", R"({"samples": [{"text": "kill", "max_tokens": 32}]})");
        done++;
        if (r.status != 200) failed++;
        // A request the killed replica had gets 502 with a JSON error (it is not sent again); a request
        // that found no replica to connect to is retried on the other one.
        if (r.status != 200 && (r.status != 502 || r.body.find("\"error\"") == std::string::npos)) unclear++;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  bool back = wait_until(
      [&] {
        json now = api("generator");
        if (!now.is_object() || now["status"] != "live" || now["ready"] != 2) return false;
        for (const auto& r : now["replicas"])
          if (r["id"] == victim_id) return false;
        return true;
      },
      std::chrono::seconds(60));
  stop = true;
  for (auto& t : clients) t.join();  // every request ended (each has a deadline far above this test's)
  EXPECT_TRUE(back) << api("generator").dump(2);
  EXPECT_GT(done.load(), 0);
  // At most the requests in flight on the killed replica failed (4 clients), each with a clear 502.
  EXPECT_LE(failed.load(), 4);
  EXPECT_EQ(unclear.load(), 0);
}

TEST_F(DeployTest, OperatorKilledKeepsStateAndBringsReplicasBack) {
  write_project("");
  ASSERT_EQ(cortex({"deploy", project_}).exit_code, 0);
  ASSERT_TRUE(wait_live("generator"));
  auto info = json::parse(cortex({"cluster", "info", "-o", "json"}).out);
  int pid = info["pid"].get<int>();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(wait_until([&] { return ::kill(pid, 0) != 0; }, std::chrono::seconds(10)));
  // Nothing answers now; `cortex cluster up` brings the operator back with every API it had.
  EXPECT_NE(cortex({"get"}).exit_code, 0);
  auto up = cortex({"cluster", "up"});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  ASSERT_TRUE(wait_live("generator")) << api("generator").dump(2);
  EXPECT_EQ(post("/text/generator", kSeedRequest).status, 200);
  // The replicas of the killed operator did not outlive it: only the new one runs.
  EXPECT_TRUE(wait_until(
      [&] {
        auto r = run_command({"pgrep", "-f", "port-file " + home_});
        return std::count(r.out.begin(), r.out.end(), '\n') == 1;
      },
      std::chrono::seconds(20)));
}

TEST_F(DeployTest, PythonRequestHandlerServesAndOneThatCannotBeImportedIsAnErrorWithItsTraceback) {
  // The Python example (encoder.py, requirements.txt), its model the tiny test model, plus an API whose
  // handler cannot be imported.
  const std::string example = testing::source_dir() + "/examples/text-generator-python";
  for (const char* f : {"cortex.yaml", "encoder.py", "requirements.txt"})
    fs::copy_file(example + "/" + f, project_ + "/" + f);
  fs::create_directory_symlink(test_model("tiny"), project_ + "/model");
  write_file_atomic(project_ + "/broken.py", "import no_such_module_for_cortex\n");
  write_file_atomic(project_ + "/cortex.yaml", read_file(project_ + "/cortex.yaml") +
                                                   "\n- kind: api\n  name: broken\n  model: model\n"
                                                   "  request_handler: broken.py\n");
  auto deployed = cortex({"deploy", project_});
  ASSERT_EQ(deployed.exit_code, 0) << deployed.err;
  ASSERT_TRUE(wait_live("generator-python")) << api("generator-python").dump(2);
  auto r = post("/text/generator-python", R"({"samples": [{"text": "machine learning", "seed": 1}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["predictions"][0].get<std::string>().rfind("machine learning", 0), 0u)
      << r.body;
  ASSERT_TRUE(wait_until([&] { return api("broken")["status"] == "error"; }, std::chrono::seconds(60)))
      << api("broken").dump(2);
  const std::string lines = api("broken")["last_log_lines"].dump();
  EXPECT_NE(lines.find("ModuleNotFoundError: No module named 'no_such_module_for_cortex'"), std::string::npos)
      << lines;
  EXPECT_NE(lines.find("Traceback"), std::string::npos) << lines;
}

// The walkthrough with `model: s3://...`: the operator downloads the model (with the deploying shell's
// credentials, checked by a SigV4 front before s3rver), `cortex get` shows the download, the API answers,
// and a second deploy of the same model downloads nothing. Wrong credentials are an error saying so.
TEST_F(DeployTest, WalkthroughWithAnS3Model) {
  testing::S3TestServer s3(3'000'000);  // ~5 s for the tiny model: long enough to watch
  s3.upload(test_model("tiny"), "models", "tiny");
  ::setenv("AWS_ACCESS_KEY_ID", testing::S3TestServer::kAccessKey, 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret", 1);
  ::setenv("AWS_CONFIG_FILE", "/dev/null", 1);
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null", 1);
  write_project("  model_endpoint: " + s3.endpoint() + "\n  dtype: f16\n", "s3://models/tiny");
  auto denied = cortex({"deploy", project_, "--wait", "--timeout", "60"});
  EXPECT_NE(denied.exit_code, 0);
  EXPECT_NE(denied.err.find("access denied"), std::string::npos) << denied.err;
  EXPECT_NE(denied.err.find("SignatureDoesNotMatch"), std::string::npos) << denied.err;

  // Right credentials in the deploying shell: the running operator uses them.
  ::setenv("AWS_SECRET_ACCESS_KEY", testing::S3TestServer::kSecretKey, 1);
  ProcessResult waited;
  std::thread deploy([&] { waited = cortex({"deploy", project_, "--wait", "--timeout", "120"}); });
  bool saw_progress = false;
  wait_until(
      [&] {
        auto t = cortex({"get"});
        if (t.out.find("generator  updating ") != std::string::npos && t.out.find("%") != std::string::npos)
          saw_progress = true;
        return saw_progress;
      },
      std::chrono::seconds(30));
  json during = api("generator");
  deploy.join();
  ASSERT_EQ(waited.exit_code, 0) << waited.err;
  EXPECT_TRUE(saw_progress);
  EXPECT_NE(waited.err.find("downloading s3://models/tiny"), std::string::npos) << waited.err;
  EXPECT_NE(waited.out.find("is live"), std::string::npos) << waited.out;
  EXPECT_EQ(during["spec"]["model_env"]["AWS_SECRET_ACCESS_KEY"], "(set)") << during.dump(2);

  auto r = post("/text/generator", kSeedRequest);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["predictions"][0].get<std::string>().rfind("machine learning", 0), 0u)
      << r.body;
  // The model runs in F16 (dtype: f16) from its F32 files: the replica wrote the converted weights once,
  // for every replica of the model to map.
  std::vector<std::string> converted;
  for (const auto& e : fs::directory_iterator(home_ + "/cache/converted"))
    if (e.path().extension() == ".weights") converted.push_back(e.path().string());
  ASSERT_EQ(converted.size(), 1u);
  EXPECT_NE(converted[0].find("f16"), std::string::npos) << converted[0];
  // The replica loads the cached copy; its spec file carries no credentials.
  for (const auto& e : fs::directory_iterator(home_ + "/run"))
    EXPECT_EQ(read_file(e.path().string()).find(testing::S3TestServer::kSecretKey), std::string::npos);

  // A new operator (its state kept) and the same deploy again: the model comes from the cache.
  ASSERT_EQ(cortex({"cluster", "down"}).exit_code, 0);
  auto again = cortex({"deploy", project_, "--wait", "--timeout", "60"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.err.find("downloading"), std::string::npos) << again.err;
  const std::string log = read_file(home_ + "/operator.log");
  EXPECT_NE(log.find("(0 bytes downloaded)"), std::string::npos) << log;

  // `cortex cache`: the download, and the weights converted from it, which the running replica maps.
  // Removing the download removes both; the replica answers on from what it mapped.
  json listed = json::parse(cortex({"cache", "ls", "--json"}).out)["entries"];
  ASSERT_EQ(listed.size(), 2u) << listed.dump(2);
  for (const auto& e : listed) {
    if (e["kind"] == "download") {
      EXPECT_EQ(e["source"], "s3://models/tiny");
      EXPECT_EQ(e["state"], "complete");
    } else {
      EXPECT_EQ(e["path"], converted[0]);
      EXPECT_EQ(e["state"], "current");
      EXPECT_FALSE(e["mapped_by"].empty()) << e.dump();
    }
  }
  auto removed = cortex({"cache", "rm", "s3://models/tiny"});
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_NE(removed.out.find("made from the download above"), std::string::npos) << removed.out;
  EXPECT_NE(removed.out.find("running process maps it"), std::string::npos) << removed.out;
  EXPECT_TRUE(json::parse(cortex({"cache", "ls", "--json"}).out)["entries"].empty());
  auto after = post("/text/generator", kSeedRequest);
  EXPECT_EQ(after.status, 200) << after.body;
}

}  // namespace
}  // namespace cortex::control
