// The replica server end to end, in process, with curl as the client.
#include "serving/replica_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/test_models.h"
#include "tokenizer/utf8_stream_decoder.h"

namespace cortex::serving {
namespace {

using nlohmann::json;

struct HttpResult {
  int status = 0;
  std::string body;
  std::string headers;
};

class ReplicaServerTest : public ::testing::Test {
 protected:
  // The tiny model generates thousands of tokens a second; tests that need a request to last use 124M.
  static ReplicaOptions options(const std::string& model = "tiny") {
    ReplicaOptions o;
    o.model_path = testing::test_model(model);
    o.api_name = "generator";
    o.model.threads = 2;
    o.http.read_timeout = std::chrono::seconds(2);
    o.http.max_body_bytes = 1 << 20;
    o.limits.max_tokens = 200;
    return o;
  }
  void start(ReplicaOptions o = options()) {
    server_ = ReplicaServer::start(o);
    ASSERT_EQ(server_->wait_ready(), "");
  }
  std::string url(const std::string& path) {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + path;
  }

  // curl, as a user runs it: -X METHOD, the body on stdin, the status code on the last line.
  HttpResult curl(const std::string& method, const std::string& path, const std::string& body = "",
                  std::vector<std::string> extra = {}) {
    std::string headers_file = testing::make_temp_dir("curl") + "/headers";
    std::vector<std::string> argv = {"curl", "-sS",           "-N", "-X", method, "-D", headers_file,
                                     "-w",   "\n%{http_code}"};
    if (!body.empty() || method == "POST") {
      argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", "@-"});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url(path));
    auto r = testing::run_command(argv, body);
    HttpResult h;
    auto nl = r.out.rfind('\n');
    h.status = std::atoi(r.out.c_str() + nl + 1);
    h.body = r.out.substr(0, nl);
    std::ifstream in(headers_file);
    h.headers.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return h;
  }
  json post_json(const std::string& path, const json& body, int expect_status = 200) {
    auto r = curl("POST", path, body.dump());
    EXPECT_EQ(r.status, expect_status) << r.body;
    return json::parse(r.body);
  }

  std::unique_ptr<ReplicaServer> server_;
};

TEST_F(ReplicaServerTest, SeedPredictionApiWithCurl) {
  start();
  auto r = curl("POST", "/predict", R"({"samples": [{"text": "machine learning"}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  ASSERT_EQ(j["predictions"].size(), 1u);
  const std::string text = j["predictions"][0];
  EXPECT_EQ(text.rfind("machine learning", 0), 0u) << "the prediction continues the prompt: " << text;
  EXPECT_GT(text.size(), std::string("machine learning").size());

  // Several samples, each with its own parameters; a seed makes a sample reproducible.
  json req = {{"samples",
               {{{"text", "Hello"}, {"max_tokens", 6}, {"seed", 5}, {"temperature", 0.8}},
                {{"text", "Bonjour"}, {"max_tokens", 3}, {"temperature", 0}}}}};
  auto a = post_json("/predict", req), b = post_json("/predict", req);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a["predictions"].size(), 2u);
}

TEST_F(ReplicaServerTest, CompletionsStreamedAndWholeAgree) {
  start();
  json req = {{"model", "generator"}, {"prompt", "The meaning of life is"},
              {"max_tokens", 20},     {"seed", 11},
              {"temperature", 0.9},   {"ignore_eos", true}};
  auto whole = post_json("/v1/completions", req);
  EXPECT_EQ(whole["object"], "text_completion");
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(whole["usage"]["completion_tokens"], 20);
  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  auto r = curl("POST", "/v1/completions", req.dump());
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("text/event-stream"), std::string::npos) << r.headers;
  std::string text;
  json usage;
  bool done = false;
  size_t pos = 0;
  while ((pos = r.body.find("data: ", pos)) != std::string::npos) {
    size_t end = r.body.find("\n\n", pos);
    std::string data = r.body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      done = true;
      break;
    }
    auto event = json::parse(data);
    if (event.contains("usage")) usage = event["usage"];
    for (const auto& c : event["choices"]) {
      EXPECT_TRUE(tokenizer::is_valid_utf8(c["text"].get<std::string>()));
      text += c["text"].get<std::string>();
    }
  }
  EXPECT_TRUE(done) << "the stream ends with data: [DONE]";
  EXPECT_EQ(text, whole["choices"][0]["text"]);
  EXPECT_EQ(usage, whole["usage"]);
}

TEST_F(ReplicaServerTest, CompletionsOptions) {
  start();
  auto multi =
      post_json("/v1/completions", {{"prompt", {"a", "b"}}, {"n", 2}, {"max_tokens", 3}, {"seed", 1}});
  EXPECT_EQ(multi["choices"].size(), 4u);
  auto echo = post_json("/v1/completions", {{"prompt", "Echo me"}, {"echo", true}, {"max_tokens", 2}});
  EXPECT_EQ(echo["choices"][0]["text"].get<std::string>().rfind("Echo me", 0), 0u);
  auto ids = post_json("/v1/completions", {{"prompt", {15496, 11}}, {"max_tokens", 2}});
  EXPECT_EQ(ids["usage"]["prompt_tokens"], 2);
  // A stop string ends the text before it, with finish_reason "stop".
  auto free_run = post_json("/v1/completions",
                            {{"prompt", "x"}, {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}});
  std::string t = free_run["choices"][0]["text"];
  ASSERT_GT(t.size(), 6u);
  std::string stop = t.substr(3, 3);
  auto stopped = post_json(
      "/v1/completions",
      {{"prompt", "x"}, {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}, {"stop", stop}});
  EXPECT_EQ(stopped["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(stopped["choices"][0]["text"], t.substr(0, t.find(stop)));
  auto models = json::parse(curl("GET", "/v1/models").body);
  EXPECT_EQ(models["data"][0]["id"], "generator");
}

TEST_F(ReplicaServerTest, BadInputGetsAClearErrorAndTheServerKeepsServing) {
  start();
  struct Case {
    std::string path, body;
    int status;
    std::string must_mention;
  };
  std::string long_prompt;
  for (int i = 0; i < 300; ++i) long_prompt += " a";
  std::vector<Case> cases = {
      {"/predict", "{not json", 400, "invalid JSON"},
      {"/predict", "{}", 400, "samples"},
      {"/predict", R"({"samples": "text"})", 400, "samples"},
      {"/predict", R"({"samples": []})", 400, "samples"},
      {"/predict", R"({"samples": [{"text": 42}]})", 400, "text"},
      {"/predict", R"({"samples": [{"txt": "a"}]})", 400, "text"},
      {"/predict", R"({"samples": [{"text": ""}]})", 400, "empty"},
      {"/predict", R"({"samples": [{"text": "a", "max_tokens": -1}]})", 400, "max_tokens"},
      {"/predict", R"({"samples": [{"text": "a", "max_tokens": 100000}]})", 400, "max_tokens"},
      {"/predict", R"({"samples": [{"text": "a", "max_tokens": "ten"}]})", 400, "max_tokens"},
      {"/predict", R"({"samples": [{"text": "a", "temperature": -2}]})", 400, "temperature"},
      {"/predict", json({{"samples", {{{"text", long_prompt}}}}}).dump(), 400, "context length"},
      {"/predict", "{\"samples\": [{\"text\": \"\xff\xfe\"}]}", 400, "invalid JSON"},
      {"/v1/completions", R"({"prompt": "a", "logprobs": 2})", 400, "logprobs"},
      {"/v1/completions", R"({"prompt": "a", "n": 0})", 400, "n:"},
      {"/v1/completions", R"({"prompt": 7})", 400, "prompt"},
      {"/v1/completions", R"({"max_tokens": 3})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": "a", "model": "other"})", 404, "model_not_found"},
      {"/nope", "{}", 404, "/nope"},
  };
  for (const auto& c : cases) {
    auto r = curl("POST", c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.path << " " << c.body << " -> " << r.body;
    EXPECT_NE(r.body.find(c.must_mention), std::string::npos) << c.body << " -> " << r.body;
    auto j = json::parse(r.body);
    EXPECT_TRUE(j["error"]["message"].is_string()) << r.body;
    EXPECT_TRUE(j["error"].contains("type") && j["error"].contains("param")) << r.body;
  }
  auto param = json::parse(curl("POST", "/predict", R"({"samples": [{"text": "a", "top_p": 3}]})").body);
  EXPECT_EQ(param["error"]["param"], "top_p");
  auto wrong_method = curl("GET", "/predict");
  EXPECT_EQ(wrong_method.status, 405);
  // A body over the limit: 413 before it is read whole.
  auto huge = curl("POST", "/predict", std::string(3 << 20, 'x'));
  EXPECT_EQ(huge.status, 413) << huge.body;
  // Still serving.
  EXPECT_EQ(curl("POST", "/predict", R"({"samples": [{"text": "ok", "max_tokens": 2}]})").status, 200);
}

TEST_F(ReplicaServerTest, FullQueueGets503WithRetryAfter) {
  auto o = options("124M");
  o.scheduler.max_concurrency = 1;
  o.scheduler.max_queue_length = 0;
  o.scheduler.max_step_tokens = 64;
  start(o);
  auto slow = std::async(std::launch::async, [&] {
    return curl("POST", "/v1/completions", R"({"prompt": "a", "max_tokens": 40, "ignore_eos": true})");
  });
  // Wait until the slow request holds the only slot.
  for (int i = 0; i < 200; ++i) {
    if (curl("GET", "/metrics").body.find("cortex_batch_size 1") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto r = curl("POST", "/predict", R"({"samples": [{"text": "b", "max_tokens": 2}]})");
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.headers.find("Retry-After: 1"), std::string::npos) << r.headers;
  EXPECT_EQ(slow.get().status, 200);
}

TEST_F(ReplicaServerTest, ClientThatDisconnectsStopsItsGeneration) {
  auto o = options("124M");
  o.limits.max_tokens = 1000;
  start(o);
  // curl gives up after 0.5 s of a stream that would take many seconds.
  auto r = curl("POST", "/v1/completions",
                R"({"prompt": "a", "max_tokens": 1000, "ignore_eos": true, "stream": true})",
                {"--max-time", "0.5"});
  EXPECT_NE(r.body.find("data: "), std::string::npos) << "some tokens arrived before the client left";
  bool freed = false;
  for (int i = 0; i < 100 && !freed; ++i) {
    freed = curl("GET", "/metrics").body.find("cortex_batch_size 0") != std::string::npos;
    if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(freed) << "the sequence was not cancelled";
  std::string metrics = curl("GET", "/metrics").body;
  const std::string name = "\ncortex_tokens_generated_total ";
  auto at = metrics.find(name);
  ASSERT_NE(at, std::string::npos) << metrics;
  EXPECT_LT(std::stoi(metrics.substr(at + name.size())), 500) << "generation stopped long before max_tokens";
}

TEST_F(ReplicaServerTest, SlowClientIsDisconnectedWithoutBlockingOthers) {
  start();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string partial = "POST /predict HTTP/1.1\r\nHost: x\r\n";
  auto start_time = std::chrono::steady_clock::now();
  bool closed_by_server = false;
  for (char ch : partial) {  // one byte every 200 ms: the 2 s read timeout ends it
    if (send(fd, &ch, 1, MSG_NOSIGNAL) != 1) {
      closed_by_server = true;
      break;
    }
    EXPECT_EQ(curl("GET", "/healthz").status, 200) << "others are served meanwhile";
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    char buf[16];
    if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) == 0) {
      closed_by_server = true;
      break;
    }
  }
  close(fd);
  EXPECT_TRUE(closed_by_server);
  EXPECT_LT(std::chrono::steady_clock::now() - start_time, std::chrono::seconds(6));
}

TEST_F(ReplicaServerTest, HealthReadinessSignatureAndMetrics) {
  start();
  EXPECT_EQ(curl("GET", "/healthz").status, 200);
  EXPECT_EQ(json::parse(curl("GET", "/readyz").body)["status"], "ready");
  auto sig = json::parse(curl("GET", "/signature").body);
  EXPECT_EQ(sig["inputs"]["context"]["type"], "int32");
  EXPECT_EQ(sig["model"]["n_ctx"], 256);
  curl("POST", "/predict", R"({"samples": [{"text": "m", "max_tokens": 3}]})");
  curl("POST", "/predict", "{bad");
  std::string metrics = curl("GET", "/metrics").body;
  for (const char* line :
       {"cortex_requests_total{route=\"/predict\",code=\"200\"} 1",
        "cortex_requests_total{route=\"/predict\",code=\"400\"} 1", "cortex_tokens_generated_total 3",
        "cortex_time_to_first_token_seconds_count 1", "cortex_request_duration_seconds_bucket",
        "cortex_queue_length 0", "cortex_requests_in_flight 1"})
    EXPECT_NE(metrics.find(line), std::string::npos) << line << "\n" << metrics;
}

TEST_F(ReplicaServerTest, BenchServeMeasuresStreamingClients) {
  start();
  auto r =
      testing::run_command({testing::cortex_binary(), "bench", "serve", "--url",
                            "http://127.0.0.1:" + std::to_string(server_->port()), "--model", "generator",
                            "--clients", "3", "--requests", "2", "--max-tokens", "5", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["requests"], 6);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["tokens"], 30) << "exact counts from the usage event";
  EXPECT_GT(j["tokens_per_second"].get<double>(), 0);
  EXPECT_LE(j["ttft_p50_s"].get<double>(), j["latency_p50_s"].get<double>());
  // A wrong model name fails every request: a clear error, not a report of zeros.
  auto bad = testing::run_command({testing::cortex_binary(), "bench", "serve", "--url",
                                   "http://127.0.0.1:" + std::to_string(server_->port()), "--model", "nope",
                                   "--clients", "1", "--requests", "1"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("no request"), std::string::npos) << bad.err;
}

TEST(ReplicaServerLoadTest, BrokenModelIsNotReadyAndSaysWhy) {
  ReplicaOptions o;
  o.model_path = testing::binary_dir() + "/no-such-model";
  auto server = ReplicaServer::start(o);
  std::string error = server->wait_ready();
  EXPECT_NE(error.find("no-such-model"), std::string::npos) << error;
  auto r = testing::run_command({"curl", "-s", "-w", "\n%{http_code}",
                                 "http://127.0.0.1:" + std::to_string(server->port()) + "/readyz"});
  EXPECT_NE(r.out.find("503"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no-such-model"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace cortex::serving
