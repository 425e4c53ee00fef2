// Python request handlers (the seed's encoder.py): replicas in process with a PythonHandler, curl as the
// client; `cortex serve --handler` and `cortex deploy`'s requirements.txt check through the binary.
#include "serving/python_handler.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "serving/replica_server.h"
#include "support/test_models.h"
#include "util/file_util.h"

namespace cortex::serving {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct HttpResult {
  int status = 0;
  json body;
};

class PythonHandlerTest : public ::testing::Test {
 protected:
  // A handler file of its own (module names differ between tests), in a fresh folder.
  static std::string write_handler(const std::string& name, const std::string& source) {
    std::string path = testing::make_temp_dir("handler") + "/" + name + ".py";
    write_file_atomic(path, source);
    return path;
  }
  static ReplicaOptions options(std::shared_ptr<RequestHandler> handler = nullptr) {
    ReplicaOptions o;
    o.model_path = testing::test_model("tiny");
    o.api_name = "generator";
    o.model.threads = 2;
    o.limits.max_tokens = 200;
    o.handler = std::move(handler);
    return o;
  }
  static std::unique_ptr<ReplicaServer> start(const ReplicaOptions& o) {
    auto server = ReplicaServer::start(o);
    EXPECT_EQ(server->wait_ready(), "");
    return server;
  }
  static HttpResult post(const ReplicaServer& server, const json& body,
                         const std::string& path = "/predict") {
    auto r = testing::run_command(
        {"curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-", "-w",
         "\n%{http_code}", "http://127.0.0.1:" + std::to_string(server.port()) + path},
        body.dump());
    auto nl = r.out.rfind('\n');
    HttpResult h;
    h.status = std::atoi(r.out.c_str() + nl + 1);
    h.body = json::parse(r.out.substr(0, nl), nullptr, false);
    return h;
  }
  static std::string example_handler() {
    return testing::source_dir() + "/examples/text-generator-python/encoder.py";
  }
};

TEST_F(PythonHandlerTest, SeedEncoderGivesExactlyTheBuiltInPredictions) {
  auto handler = PythonHandler::load(example_handler());
  EXPECT_TRUE(handler->has_pre_inference());
  EXPECT_TRUE(handler->has_post_inference());
  auto python = start(options(std::move(handler)));
  auto builtin = start(options());
  // Generation parameters in the sample apply with either handler; text with accents, CJK, emoji,
  // contractions, digits and runs of spaces exercises the pre-tokenizer and the byte alphabet.
  json request = {{"samples",
                   {{{"text", "machine learning"}, {"seed", 1}},
                    {{"text", "It's 2019: GPT-2 said \"héllo\"  wörld 你好 🙂\n\n  tabs\tand   spaces"},
                     {"seed", 2},
                     {"max_tokens", 60},
                     {"temperature", 1.3},
                     {"ignore_eos", true}},
                    {{"text", "Deploy GPT-2 as a service"},
                     {"seed", 3},
                     {"top_k", 5},
                     {"top_p", 0.9},
                     {"max_tokens", 20}},
                    {{"text", "stop here"}, {"seed", 4}, {"stop", json::array({"e", "a"})}}}}};
  auto a = post(*python, request), b = post(*builtin, request);
  ASSERT_EQ(a.status, 200) << a.body.dump();
  ASSERT_EQ(b.status, 200) << b.body.dump();
  EXPECT_EQ(a.body, b.body);
  EXPECT_EQ(a.body["predictions"][0].get<std::string>().rfind("machine learning", 0), 0u);
  // Many different seeds, concurrently (the handler's threads and the GIL under load).
  std::vector<std::future<std::pair<HttpResult, HttpResult>>> runs;
  for (int seed = 10; seed < 18; ++seed)
    runs.push_back(std::async(std::launch::async, [&, seed] {
      json req = {{"samples", {{{"text", "The quick brown fox"}, {"seed", seed}, {"max_tokens", 30}}}}};
      return std::make_pair(post(*python, req), post(*builtin, req));
    }));
  for (auto& run : runs) {
    auto [p, q] = run.get();
    EXPECT_EQ(p.status, 200) << p.body.dump();
    EXPECT_EQ(p.body, q.body);
  }
}

TEST_F(PythonHandlerTest, PreOnlyAndPostOnlyUseTheBuiltInOtherHalf) {
  // pre only: the model input comes from Python, with a generation parameter beside the context.
  auto pre = PythonHandler::load(write_handler("pre_only", R"PY(
def pre_inference(sample, metadata):
    return {"context": [sample["ids"]], "max_tokens": 3, "ignore_eos": True}
)PY"));
  EXPECT_TRUE(pre->has_pre_inference());
  EXPECT_FALSE(pre->has_post_inference());
  auto pre_server = start(options(std::move(pre)));
  auto r = post(*pre_server, {{"samples", {{{"ids", {15496, 995}}, {"seed", 1}}}}});  // "Hello world"
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["predictions"][0].get<std::string>().rfind("Hello world", 0), 0u) << r.body.dump();

  // post only: the built-in tokenizes; Python sees the ids (prompt and 3 generated tokens) and the
  // metadata (the model's signature).
  auto post_only = PythonHandler::load(write_handler("post_only", R"PY(
def post_inference(prediction, metadata):
    ids = prediction["response"]["sample"]
    return {"ids": ids, "n": len(ids), "input": metadata["inputs"]["context"]["type"],
            "output": sorted(metadata["outputs"]), "has_path": bool(metadata["model"]["path"])}
)PY"));
  EXPECT_FALSE(post_only->has_pre_inference());
  auto post_server = start(options(std::move(post_only)));
  r = post(*post_server,
           {{"samples", {{{"text", "Hello world"}, {"max_tokens", 3}, {"ignore_eos", true}, {"seed", 1}}}}});
  ASSERT_EQ(r.status, 200) << r.body.dump();
  const json& p = r.body["predictions"][0];
  EXPECT_EQ(p["n"], 5);
  EXPECT_EQ(p["ids"][0], 15496);
  EXPECT_EQ(p["ids"][1], 995);
  EXPECT_EQ(p["input"], "int32");
  EXPECT_EQ(p["output"], json::array({"sample"}));
  EXPECT_EQ(p["has_path"], true);
}

TEST_F(PythonHandlerTest, SetsAndTuplesBecomeListsAndErrorsMapToStatusCodes) {
  std::shared_ptr<PythonHandler> handler = PythonHandler::load(write_handler("errors", R"PY(
def pre_inference(sample, metadata):
    mode = sample.get("mode")
    if mode == "value":
        raise ValueError("text: must not mention cats")
    if mode == "runtime":
        raise RuntimeError("the handler broke")
    if mode == "bad_context":
        return {"nothing": 1}
    if mode == "huge_id":
        return {"context": [15496, 2**32 + 995]}
    return {"context": [[15496, 995]], "max_tokens": 2, "mode": None}

def post_inference(prediction, metadata):
    return {"set": {3, 1, 2}, "tuple": (1, "a", None), "nested": [{"f": 1.5, "b": True}], 7: "seven"}
)PY"));
  auto server = start(options(handler));
  auto r = post(*server, {{"samples", {{{"text", "x"}}}}});
  ASSERT_EQ(r.status, 200) << r.body.dump();
  json p = r.body["predictions"][0];
  std::vector<int> set = p["set"].get<std::vector<int>>();
  std::sort(set.begin(), set.end());
  EXPECT_EQ(set, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(p["tuple"], json::parse(R"([1, "a", null])"));
  EXPECT_EQ(p["nested"], json::parse(R"([{"f": 1.5, "b": true}])"));
  EXPECT_EQ(p["7"], "seven");

  r = post(*server, {{"samples", {{{"mode", "value"}}}}});
  EXPECT_EQ(r.status, 400) << r.body.dump();
  EXPECT_EQ(r.body["error"]["message"], "text: must not mention cats");
  EXPECT_EQ(r.body["error"]["param"], "text");

  r = post(*server, {{"samples", {{{"mode", "runtime"}}}}});
  EXPECT_EQ(r.status, 500) << r.body.dump();
  EXPECT_EQ(r.body["error"]["message"], "errors.pre_inference raised RuntimeError: the handler broke");

  r = post(*server, {{"samples", {{{"mode", "bad_context"}}}}});
  EXPECT_EQ(r.status, 400) << r.body.dump();
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("context"), std::string::npos);

  r = post(*server, {{"samples", {{{"mode", "huge_id"}}}}});
  EXPECT_EQ(r.status, 400) << r.body.dump();
  EXPECT_EQ(r.body["error"]["message"], "context: token id 4294968291 is outside the vocabulary");

  // The handler's own calls, directly: JSON in, JSON out.
  json direct = handler->post_inference({{"response", {{"sample", {1, 2}}}}}, json::object());
  EXPECT_EQ(direct["tuple"].size(), 3u);
}

TEST_F(PythonHandlerTest, ResultThatIsNotJsonSerialisableIsAClearError) {
  auto server = start(options(PythonHandler::load(write_handler("unserialisable", R"PY(
class Thing:
    pass

def post_inference(prediction, metadata):
    loop = []
    loop.append(loop)
    what = {"bytes": {"x": [1, b"raw"]}, "object": Thing(), "nan": float("nan"), "loop": loop}
    return what[prediction["response"]["sample"][0] == 15496 and "bytes" or "object"]
)PY"))));
  auto r = post(*server, {{"samples", {{{"text", "Hello"}, {"max_tokens", 1}}}}});
  EXPECT_EQ(r.status, 500) << r.body.dump();
  EXPECT_EQ(r.body["error"]["message"],
            "unserialisable.post_inference returned a value that is not JSON-serialisable: "
            "result[\"x\"][1] is an object of type bytes");
  r = post(*server, {{"samples", {{{"text", "Bonjour"}, {"max_tokens", 1}}}}});
  EXPECT_EQ(r.status, 500) << r.body.dump();
  EXPECT_NE(r.body["error"]["message"].get<std::string>().find("the result is an object of type Thing"),
            std::string::npos)
      << r.body.dump();

  auto handler = PythonHandler::load(write_handler("unserialisable_direct", R"PY(
def post_inference(prediction, metadata):
    loop = []
    loop.append(loop)
    return {"nan": float("nan")} if prediction == 1 else loop
)PY"));
  try {
    handler->post_inference(1, json::object());
    FAIL() << "nan is not JSON";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("result[\"nan\"] is the float nan"), std::string::npos) << e.what();
  }
  try {
    handler->post_inference(2, json::object());
    FAIL() << "a list that holds itself is not JSON";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nested too deeply"), std::string::npos) << e.what();
  }
}

TEST_F(PythonHandlerTest, HangingHandlerIsBoundedByTheRequestTimeout) {
  PythonHandlerOptions handler_options;
  handler_options.call_timeout = std::chrono::milliseconds(1000);
  auto handler = PythonHandler::load(write_handler("hanging", R"PY(
import time
def pre_inference(sample, metadata):
    if sample.get("mode") == "spin":
        while True:
            pass
    if sample.get("mode") == "sleep":
        time.sleep(20)
    return {"context": [15496, 995], "max_tokens": 2}
)PY"),
                                     handler_options);
  ReplicaOptions o = options(std::move(handler));
  o.scheduler.request_timeout = std::chrono::milliseconds(1000);
  auto server = start(o);
  for (const char* mode : {"spin", "sleep"}) {
    auto begin = Clock::now();
    auto r = post(*server, {{"samples", {{{"mode", mode}}}}});
    double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
    EXPECT_EQ(r.status, 504) << mode << ": " << r.body.dump();
    EXPECT_NE(
        r.body["error"]["message"].get<std::string>().find("hanging.pre_inference did not return within 1 s"),
        std::string::npos)
        << r.body.dump();
    EXPECT_LT(seconds, 5.0) << mode;
  }
  // Both stuck calls took a handler thread; replacements keep serving everyone else.
  for (int i = 0; i < 3; ++i) {
    auto r = post(*server, {{"samples", {{{"text", "fine"}}}}});
    EXPECT_EQ(r.status, 200) << r.body.dump();
  }
}

// `cortex serve --handler` through the binary, as the operator runs it.
TEST_F(PythonHandlerTest, ServeRefusesAHandlerThatCannotBeImportedWithItsTraceback) {
  std::string bad = write_handler("broken_import", "import json\nimport no_such_module_for_cortex\n");
  auto r = testing::run_command({testing::cortex_binary(), "serve", "--model", testing::test_model("tiny"),
                                 "--port", "0", "--handler", bad});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("Traceback (most recent call last)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ModuleNotFoundError: No module named 'no_such_module_for_cortex'"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("broken_import.py\", line 2"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("listening"), std::string::npos) << "refused before listening: " << r.err;

  std::string syntax = write_handler("broken_syntax", "def pre_inference(sample, metadata)\n    return 1\n");
  r = testing::run_command({testing::cortex_binary(), "serve", "--model", testing::test_model("tiny"),
                            "--port", "0", "--handler", syntax});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("SyntaxError"), std::string::npos) << r.err;

  r = testing::run_command({testing::cortex_binary(), "serve", "--model", testing::test_model("tiny"),
                            "--port", "0", "--handler", "/nonexistent/handler.py"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/handler.py: no such file"), std::string::npos) << r.err;
}

TEST_F(PythonHandlerTest, ServeWithTheSeedEncoderAnswersPredict) {
  std::string dir = testing::make_temp_dir("serve-handler");
  std::string port_file = dir + "/port", pid_file = dir + "/pid";
  auto child = std::async(std::launch::async, [&] {
    return testing::run_command({"sh", "-c", "echo $$ > \"$0\"; exec timeout -s TERM 60 \"$@\"", pid_file,
                                 testing::cortex_binary(), "serve", "--model", testing::test_model("tiny"),
                                 "--port", "0", "--port-file", port_file, "--handler", example_handler()});
  });
  std::string port;
  for (int i = 0; i < 600 && port.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::ifstream in(port_file);
    std::getline(in, port);
  }
  ASSERT_FALSE(port.empty());
  std::string url = "http://127.0.0.1:" + port;
  ProcessResult r;
  for (int i = 0; i < 600; ++i) {  // until the model is loaded
    r = testing::run_command({"curl", "-sS", "-X", "POST", "--data-binary", "@-", url + "/predict"},
                             R"({"samples": [{"text": "machine learning", "max_tokens": 5}]})");
    if (r.out.find("predictions") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(r.out.find("\"predictions\":[\"machine learning"), std::string::npos) << r.out << r.err;
  ::kill(std::stoi(read_file(pid_file)), SIGTERM);  // timeout passes SIGTERM on to cortex serve
  auto done = child.get();
  EXPECT_NE(done.err.find("stopping (SIGTERM)"), std::string::npos) << done.err;
  EXPECT_NE(done.err.find("request handler"), std::string::npos) << done.err;
}

// `cortex deploy` checks requirements.txt against the system's Python before anything starts.
TEST_F(PythonHandlerTest, DeployRefusesAMissingRequirementNamingIt) {
  std::string project = testing::make_temp_dir("requirements");
  write_file_atomic(project + "/cortex.yaml",
                    "- kind: deployment\n  name: text\n- kind: api\n  name: generator\n"
                    "  model: " +
                        testing::test_model("tiny") + "\n  request_handler: encoder.py\n");
  write_file_atomic(project + "/encoder.py", read_file(example_handler()));
  write_file_atomic(project + "/requirements.txt",
                    "# what encoder.py needs\nregex\n\nno-such-distribution-for-cortex>=1.0  # missing\n");
  const std::string home = testing::make_temp_dir("requirements-home");
  auto r = testing::run_command({"env", "CORTEX_HOME=" + home, testing::cortex_binary(), "deploy", project});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(
      r.err.find("requirements.txt:4: no-such-distribution-for-cortex: not installed for /usr/bin/python3"),
      std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("regex"), std::string::npos) << "regex is installed: " << r.err;
  EXPECT_TRUE(std::filesystem::is_empty(home)) << "nothing started";

  write_file_atomic(project + "/requirements.txt", "-r other.txt\n");
  r = testing::run_command({"env", "CORTEX_HOME=" + home, testing::cortex_binary(), "deploy", project});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("requirements.txt:1: '-r other.txt': pip options are not supported"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace cortex::serving
