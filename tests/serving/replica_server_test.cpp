// The replica server end to end, in process, with curl (and raw sockets, for what curl will not send)
// as the client.
#include "serving/replica_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/test_models.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/utf8_stream_decoder.h"
#include "util/file_util.h"

namespace cortex::serving {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// The JSON events of a server-sent event stream; *done tells whether it ended with "data: [DONE]".
std::vector<json> sse_events(const std::string& body, bool* done = nullptr) {
  std::vector<json> events;
  if (done) *done = false;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    std::string data = body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      if (done) *done = true;
      break;
    }
    events.push_back(json::parse(data));
  }
  return events;
}

// Characters (code points) of valid UTF-8 text.
size_t utf8_length(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// The characters [from, from + count) of valid UTF-8 text.
std::string utf8_chars(const std::string& s, size_t from, size_t count) {
  auto byte_of = [&](size_t chars) {  // where character number `chars` starts (s.size() past the end)
    size_t seen = 0;
    for (size_t i = 0; i < s.size(); ++i)
      if ((s[i] & 0xC0) != 0x80 && seen++ == chars) return i;
    return s.size();
  };
  const size_t begin = byte_of(from);
  return s.substr(begin, byte_of(from + count) - begin);
}

// A TCP connection to 127.0.0.1:port with a receive timeout; -1 on failure.
int connect_to(int port, std::chrono::milliseconds receive_timeout = std::chrono::seconds(10)) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{};
  tv.tv_sec = receive_timeout.count() / 1000;
  tv.tv_usec = (receive_timeout.count() % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Reads until the peer closes (or the receive timeout passes).
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// The logprobs lists of one choice, concatenated over stream events (or copied from a whole response).
void append_logprobs(json* all, const json& lp) {
  for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"})
    for (const auto& v : lp.at(key)) (*all)[key].push_back(v);
}

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
  // A request's stream: its events, which must end with data: [DONE].
  std::vector<json> post_stream(const json& body) {
    auto r = curl("POST", "/v1/completions", body.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    bool done = false;
    auto events = sse_events(r.body, &done);
    EXPECT_TRUE(done) << "the stream ends with data: [DONE]";
    return events;
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

// logprobs: n gives OpenAI's legacy logprobs object; the values are the raw model's log-probabilities.
TEST_F(ReplicaServerTest, CompletionLogprobs) {
  start();
  json req = {{"prompt", "The quick brown fox"},
              {"max_tokens", 10},
              {"temperature", 0},
              {"logprobs", 3},
              {"ignore_eos", true}};
  auto greedy = post_json("/v1/completions", req);
  const std::string text = greedy["choices"][0]["text"];
  const json lp = greedy["choices"][0]["logprobs"];
  ASSERT_TRUE(lp.is_object()) << greedy;
  for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"})
    ASSERT_EQ(lp[key].size(), 10u) << key << ": one entry per generated token";
  for (size_t k = 0; k < 10; ++k) {
    const std::string token = lp["tokens"][k];
    const double logprob = lp["token_logprobs"][k];
    const json& top = lp["top_logprobs"][k];
    EXPECT_LE(logprob, 0.0);
    EXPECT_EQ(top.size(), 3u) << "greedy: the chosen token is one of the 3 most likely";
    double best = -INFINITY, mass = 0;
    for (const auto& [t, v] : top.items()) {
      EXPECT_LE(v.get<double>(), 0.0);
      best = std::max(best, v.get<double>());
      mass += std::exp(v.get<double>());
    }
    EXPECT_LE(mass, 1.0 + 1e-6) << "probabilities of distinct tokens";
    EXPECT_EQ(logprob, best) << "a greedy token is the most likely one (position " << k << ")";
    ASSERT_TRUE(top.contains(token)) << top;
    EXPECT_EQ(top[token].get<double>(), logprob);
    // text_offset: where the token's text starts in the choice's text (characters).
    const size_t offset = lp["text_offset"][k];
    if (k == 0) {
      EXPECT_EQ(offset, 0u);
    } else {
      EXPECT_GE(offset, lp["text_offset"][k - 1].get<size_t>());
    }
    EXPECT_LE(offset, utf8_length(text));
    const bool whole_chars = token.rfind("bytes:", 0) != 0 &&
                             (k == 0 || lp["tokens"][k - 1].get<std::string>().rfind("bytes:", 0) != 0);
    if (whole_chars) {
      EXPECT_EQ(utf8_chars(text, offset, utf8_length(token)), token) << "token " << k << " in " << text;
    }
  }
  // Temperature, top-k and top-p do not change the values: a sampled run from the same prompt has the
  // same distribution at its first position.
  req["temperature"] = 1.7;
  req["top_k"] = 2;
  req["seed"] = 5;
  auto sampled = post_json("/v1/completions", req)["choices"][0]["logprobs"];
  ASSERT_EQ(sampled["top_logprobs"][0].size(), 3u);
  for (const auto& [t, v] : lp["top_logprobs"][0].items())
    EXPECT_NEAR(sampled["top_logprobs"][0].value(t, 1.0), v.get<double>(), 1e-5) << t;
  // logprobs 0: the chosen token's own entry only; without logprobs: null.
  req["logprobs"] = 0;
  auto zero = post_json("/v1/completions", req)["choices"][0]["logprobs"];
  for (const auto& top : zero["top_logprobs"]) EXPECT_EQ(top.size(), 1u);
  req.erase("logprobs");
  EXPECT_TRUE(post_json("/v1/completions", req)["choices"][0]["logprobs"].is_null());

  // A token that is a piece of a character: the text stays valid UTF-8 and the token reads "bytes:\xNN".
  auto tokenizer = tokenizer::BpeTokenizer::load(testing::test_model("tiny"));
  const auto e2 = tokenizer->token_id("\xc3\xa2");  // byte 0xE2 (the first of 3 in U+2019 and others)
  ASSERT_TRUE(e2.has_value());
  auto piece =
      post_json("/v1/completions", {{"prompt", {*e2}}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 1}});
  EXPECT_TRUE(tokenizer::is_valid_utf8(piece["choices"][0]["text"].get<std::string>()));
  EXPECT_EQ(piece["choices"][0]["logprobs"]["tokens"][0], "bytes:\\xe2");
}

// The same request streamed and whole: the same tokens with the same values, offsets and text; each
// event carries the entries of its own tokens. With echo the prompt's tokens come first.
TEST_F(ReplicaServerTest, StreamedLogprobsEqualWholeOnes) {
  start();
  const std::string prompt = "Once upon a time";
  json req = {{"prompt", prompt}, {"max_tokens", 12}, {"seed", 21},        {"temperature", 0.9},
              {"logprobs", 2},    {"echo", true},     {"ignore_eos", true}};
  auto whole = post_json("/v1/completions", req)["choices"][0];
  const json& lp = whole["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 4u + 12u) << "4 prompt tokens, then the generated ones";
  EXPECT_TRUE(lp["token_logprobs"][0].is_null()) << "nothing predicts the first prompt token";
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_EQ(lp["text_offset"][4], utf8_length(prompt)) << "the generated text follows the echoed prompt";
  std::string joined_prompt;
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(lp["text_offset"][k], utf8_length(joined_prompt));
    joined_prompt += lp["tokens"][k].get<std::string>();
  }
  EXPECT_EQ(joined_prompt, prompt);

  req["stream"] = true;
  std::string text;
  json streamed = {{"tokens", json::array()},
                   {"token_logprobs", json::array()},
                   {"top_logprobs", json::array()},
                   {"text_offset", json::array()}};
  auto events = post_stream(req);
  ASSERT_GE(events.size(), 2u);
  for (size_t e = 0; e < events.size(); ++e) {
    const json& c = events[e]["choices"][0];
    text += c["text"].get<std::string>();
    append_logprobs(&streamed, c["logprobs"]);
    if (e + 1 < events.size()) {
      EXPECT_GE(c["logprobs"]["tokens"].size(), 1u) << "event " << e;
    }
  }
  EXPECT_EQ(events.front()["choices"][0]["text"], prompt)
      << "the echo comes first, with the prompt's entries";
  EXPECT_EQ(events.front()["choices"][0]["logprobs"]["tokens"].size(), 4u);
  EXPECT_EQ(text, whole["text"]);
  EXPECT_EQ(streamed, lp);
}

// Echo with max_tokens 0 scores a prompt: its log-probabilities against the numpy reference model.
TEST_F(ReplicaServerTest, PromptLogprobsMatchTheReferenceModel) {
  start();
  const std::vector<int32_t> prompt = {464, 2068, 7586, 21831, 18045, 625, 262};
  auto r =
      post_json("/v1/completions", {{"prompt", prompt}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 5}});
  const json lp = r["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), prompt.size()) << r;
  EXPECT_EQ(r["usage"]["completion_tokens"], 0);

  const std::string model = testing::test_model("tiny");
  const std::string out = testing::make_temp_dir("ref") + "/logits.f32";
  std::string ids;
  for (int32_t t : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(t);
  auto ref = testing::run_command({CORTEX_PYTHON3, testing::source_dir() + "/tests/model/reference_gpt2.py",
                                   "logits", "--model", model, "--tokens", ids, "--out", out});
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const std::string bytes = read_file(out);
  auto tokenizer = tokenizer::BpeTokenizer::load(model);
  const size_t V = tokenizer->vocab_size();
  ASSERT_EQ(bytes.size(), prompt.size() * V * sizeof(float));
  std::vector<float> logits(prompt.size() * V);
  std::memcpy(logits.data(), bytes.data(), bytes.size());
  for (size_t k = 1; k < prompt.size(); ++k) {
    // Row k-1 predicts token k: log-softmax in double.
    const float* row = logits.data() + (k - 1) * V;
    const double max = *std::max_element(row, row + V);
    double z = 0;
    for (size_t i = 0; i < V; ++i) z += std::exp(row[i] - max);
    auto logprob = [&](size_t id) { return row[id] - max - std::log(z); };
    EXPECT_EQ(lp["tokens"][k], token_text(*tokenizer, prompt[k]));
    EXPECT_NEAR(lp["token_logprobs"][k].get<double>(), logprob(static_cast<size_t>(prompt[k])), 1e-3);
    std::vector<double> sorted(V);
    for (size_t i = 0; i < V; ++i) sorted[i] = logprob(i);
    std::nth_element(sorted.begin(), sorted.begin() + 5, sorted.end(), std::greater<>());
    const json& top = lp["top_logprobs"][k];
    EXPECT_GE(top.size(), 5u);
    for (const auto& [text, value] : top.items()) {
      // Each entry is a token's reference value, and (but the prompt's own) among the reference's best 5.
      bool found = false;
      for (size_t i = 0; i < V && !found; ++i)
        if (std::fabs(value.get<double>() - logprob(i)) < 1e-3 &&
            token_text(*tokenizer, static_cast<int32_t>(i)) == text)
          found = true;
      EXPECT_TRUE(found) << text << " " << value;
      if (text != lp["tokens"][k]) {
        EXPECT_GE(value.get<double>(), sorted[5] - 1e-3) << text;
      }
    }
  }
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
      {"/predict", "", 400, "invalid JSON"},
      {"/predict", "[1, 2]", 400, "samples"},
      {"/predict", R"({"samples": [{"text": "a", "stop": 5}]})", 400, "stop"},
      {"/predict", R"({"samples": [{"text": "a", "seed": "x"}]})", 400, "seed"},
      {"/predict", R"({"samples": [{"text": "a", "top_k": 2.5}]})", 400, "top_k"},
      {"/v1/completions", "{\"prompt\": ", 400, "invalid JSON"},
      {"/v1/completions", "[\"prompt\"]", 400, "JSON object"},
      {"/v1/completions", R"({"prompt": "a", "logprobs": 6})", 400, "between 0 and 5"},
      {"/v1/completions", R"({"prompt": "a", "logprobs": -1})", 400, "logprobs"},
      {"/v1/completions", R"({"prompt": "a", "logprobs": "2"})", 400, "logprobs"},
      {"/v1/completions", R"({"prompt": "a", "stream": "yes"})", 400, "stream"},
      {"/v1/completions", R"({"prompt": "a", "echo": 1})", 400, "echo"},
      {"/v1/completions", R"({"prompt": "a", "stream": true, "stream_options": [1]})", 400, "stream_options"},
      {"/v1/completions", R"({"prompt": "a", "max_tokens": 1e9})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "a", "max_tokens": -5})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": ""})", 400, "empty"},
      {"/v1/completions", R"({"prompt": [15496, 99999999]})", 400, "vocabulary"},
      {"/v1/completions", json({{"prompt", long_prompt}}).dump(), 400, "context length"},
      // Invalid UTF-8, raw or as an unpaired surrogate escape: the JSON parser refuses it.
      {"/v1/completions", "{\"prompt\": \"caf\xc3\x28\"}", 400, "invalid JSON"},
      {"/v1/completions", "{\"prompt\": \"\xed\xa0\x80\"}", 400, "invalid JSON"},
      {"/v1/completions", R"({"prompt": "\ud800"})", 400, "invalid JSON"},
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
  param = json::parse(curl("POST", "/v1/completions", R"({"prompt": "a", "logprobs": 9})").body);
  EXPECT_EQ(param["error"]["param"], "logprobs");
  // Still serving.
  EXPECT_EQ(curl("POST", "/predict", R"({"samples": [{"text": "ok", "max_tokens": 2}]})").status, 200);
}

TEST_F(ReplicaServerTest, UnknownPathsAndMethodsGetJsonErrors) {
  start();
  struct Case {
    std::string method, path;
    int status;
    std::string allow;  // the Allow header of a 405
  };
  for (const Case& c : std::vector<Case>{{"GET", "/nope", 404, ""},
                                         {"POST", "/", 404, ""},
                                         {"DELETE", "/v1/completions/x", 404, ""},
                                         {"GET", "/predict", 405, "POST"},
                                         {"DELETE", "/v1/completions", 405, "POST"},
                                         {"PUT", "/healthz", 405, "GET"},
                                         {"POST", "/v1/models", 405, "GET"},
                                         {"BREW", "/predict", 405, "POST"}}) {
    auto r = curl(c.method, c.path);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " -> " << r.body;
    auto j = json::parse(r.body);
    EXPECT_TRUE(j["error"]["message"].is_string()) << r.body;
    EXPECT_NE(r.body.find(c.path), std::string::npos) << "the error names the path: " << r.body;
    if (!c.allow.empty()) {
      EXPECT_NE(r.headers.find("Allow: " + c.allow), std::string::npos) << r.headers;
    }
  }
  // Not HTTP at all: 400 with a JSON error, then the connection closes.
  int fd = connect_to(server_->port());
  ASSERT_GE(fd, 0);
  const std::string garbage = "\x16\x03\x01 hello\r\n\r\n";  // e.g. TLS sent to a plain HTTP port
  ASSERT_EQ(send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL), static_cast<ssize_t>(garbage.size()));
  const std::string answer = read_all(fd);
  close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
  EXPECT_NE(answer.find("\"error\""), std::string::npos) << answer;
  EXPECT_EQ(curl("GET", "/healthz").status, 200);
}

// A 50 MB body against a 1 MB limit: 413 with a JSON error naming the limit as soon as the headers say
// so (or, chunked, once 1 MB has come), the connection closed, while other clients are served.
TEST_F(ReplicaServerTest, HugeBodyGets413AtOnceAndOthersAreServed) {
  start();
  const std::string huge(50u << 20, 'x');
  auto check_413 = [](int status, const std::string& body) {
    EXPECT_EQ(status, 413) << body;
    auto j = json::parse(body);
    EXPECT_NE(j["error"]["message"].get<std::string>().find("1048576 bytes"), std::string::npos) << body;
  };
  std::atomic<bool> uploading{true};
  auto others = std::async(std::launch::async, [&] {
    int served = 0;
    while (uploading.load()) {
      EXPECT_EQ(curl("POST", "/predict", R"({"samples": [{"text": "ok", "max_tokens": 2}]})").status, 200);
      ++served;
    }
    return served;
  });
  // curl as users run it (it asks "Expect: 100-continue" first), without asking, and chunked.
  for (const auto& extra : std::vector<std::vector<std::string>>{
           {}, {"-H", "Expect:"}, {"-H", "Expect:", "-H", "Transfer-Encoding: chunked"}}) {
    const auto t0 = Clock::now();
    auto r = curl("POST", "/predict", huge, extra);
    check_413(r.status, r.body);
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5)) << "answered without reading 50 MB";
  }
  // The answer comes from the headers alone, before any of the body; what the client sends after it is
  // read and dropped until it stops (the answer is not lost to a connection reset).
  int fd = connect_to(server_->port());
  ASSERT_GE(fd, 0);
  const std::string head =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(huge.size()) + "\r\n\r\n";
  ASSERT_EQ(send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  char first[64] = {};
  const auto t0 = Clock::now();
  ASSERT_GT(recv(fd, first, sizeof first - 1, 0), 0) << "no answer before the body";
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(std::string(first).rfind("HTTP/1.1 413", 0), 0u) << first;
  for (size_t sent = 0; sent < (4u << 20);) {
    const ssize_t n = send(fd, huge.data() + sent, 1 << 16, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  const std::string answer = first + read_all(fd);
  close(fd);
  check_413(413, answer.substr(answer.find("\r\n\r\n") + 4));
  uploading = false;
  EXPECT_GT(others.get(), 0) << "others were served during the uploads";
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
  // curl gives up after 2 s of a stream that would take many seconds (1000 tokens of 124M: ~25 s in a
  // release build). Under the sanitizers on a busy 2-core machine the first token alone took more than
  // 0.5 s about once in three runs.
  auto r =
      curl("POST", "/v1/completions",
           R"({"prompt": "a", "max_tokens": 1000, "ignore_eos": true, "stream": true})", {"--max-time", "2"});
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

// A client that sends one byte a second never completes a request: the read timeout (2 s here) ends
// its connection, counted from the request's start, however steadily it trickles; others are served
// meanwhile. Once in the headers, once in the body.
TEST_F(ReplicaServerTest, SlowClientIsDisconnectedWithoutBlockingOthers) {
  start();
  const std::string body = R"({"prompt": "slow", "max_tokens": 2})";
  const std::string head =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  for (bool in_body : {false, true}) {
    int fd = connect_to(server_->port());
    ASSERT_GE(fd, 0);
    std::string trickle = head + body;
    if (in_body) {  // the headers at once, then the body byte by byte
      ASSERT_EQ(send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
      trickle = body;
    }
    const auto start_time = Clock::now();
    bool closed_by_server = false;
    int served = 0;
    for (size_t i = 0; i < trickle.size() && !closed_by_server; ++i) {
      if (send(fd, &trickle[i], 1, MSG_NOSIGNAL) != 1) break;
      // Others are served meanwhile (a generation and a probe), then a second passes.
      const auto sent_at = Clock::now();
      EXPECT_EQ(curl("POST", "/v1/completions", R"({"prompt": "fast", "max_tokens": 3})").status, 200);
      EXPECT_EQ(curl("GET", "/healthz").status, 200);
      ++served;
      while (Clock::now() - sent_at < std::chrono::seconds(1)) {
        char buf[256];
        const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
          closed_by_server = true;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    close(fd);
    const auto elapsed = Clock::now() - start_time;
    EXPECT_TRUE(closed_by_server) << (in_body ? "body" : "headers");
    EXPECT_GE(elapsed, std::chrono::milliseconds(1900)) << "not before the read timeout";
    EXPECT_LT(elapsed, std::chrono::seconds(5)) << "soon after the read timeout";
    EXPECT_GE(served, 2);
  }
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
