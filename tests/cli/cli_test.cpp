// The cortex binary as a user runs it: generate, tokenize/detokenize, model info, and clear errors.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "support/background_process.h"
#include "support/test_models.h"
#include "util/file_util.h"

namespace cortex {
namespace {

using testing::cortex_binary;
using testing::run_command;
using testing::test_model;

TEST(CliTest, GenerateIsReproducibleForASeed) {
  auto run = [](const std::string& seed) {
    return run_command({cortex_binary(), "generate", "--model", test_model("tiny"), "-p", "machine learning",
                        "-n", "24", "--seed", seed, "--temperature", "0.9", "--ignore-eos"});
  };
  auto a = run("3"), b = run("3"), c = run("4");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_FALSE(a.out.empty());
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
  EXPECT_NE(a.err.find("tok/s"), std::string::npos) << a.err;
  EXPECT_EQ(a.out.find("machine learning"), std::string::npos) << "prints the continuation, not the prompt";
}

TEST(CliTest, GenerateFromGgufMatchesTheFolderGreedily) {
  auto args = [](const std::string& model) {
    return std::vector<std::string>{cortex_binary(), "generate", "--model", model,           "-p",
                                    "Hello",         "-n",       "16",      "--temperature", "0",
                                    "--ignore-eos"};
  };
  auto a = run_command(args(test_model("tiny"))), b = run_command(args(test_model("tiny.gguf")));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
}

TEST(CliTest, TokenizeAndDetokenizeRoundTrip) {
  const std::string text = "GPT-2 says: it's 42°C in 東京 🌡️\n\n  indented";
  auto t = run_command({cortex_binary(), "tokenize", "--model", test_model("tiny")}, text);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  auto ids = nlohmann::json::parse(t.out);
  ASSERT_TRUE(ids.is_array());
  EXPECT_GT(ids.size(), 10u);
  auto d = run_command({cortex_binary(), "detokenize", "--model", test_model("tiny.gguf")}, t.out);
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(d.out, text);
  auto special = run_command({cortex_binary(), "tokenize", "--special", "--model", test_model("tiny")},
                             "a<|endoftext|>");
  EXPECT_EQ(nlohmann::json::parse(special.out), nlohmann::json({64, 50256}));
}

// OPENBLAS_CORETYPE naming a core without AVX-512 kernels on a CPU with AVX-512 is reported once, as a
// warning naming the variable; with the variable unset, or naming an AVX-512 core, nothing is said.
TEST(CliTest, WarnsWhenOpenBlasIsHeldToKernelsWithoutAvx512) {
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  auto generate = [](const std::vector<std::string>& env) {
    std::vector<std::string> args = {"/usr/bin/env"};
    args.insert(args.end(), env.begin(), env.end());
    for (const std::string& a :
         {cortex_binary(), std::string("generate"), std::string("--model"), test_model("tiny"),
          std::string("-p"), std::string("hi"), std::string("-n"), std::string("1")})
      args.push_back(a);
    return run_command(args);
  };
  const std::string warning = "holds OpenBLAS to its Haswell kernels, without AVX-512";
  auto haswell = generate({"OPENBLAS_CORETYPE=Haswell"});
  ASSERT_EQ(haswell.exit_code, 0) << haswell.err;
  const size_t at = haswell.err.find("OPENBLAS_CORETYPE=Haswell " + warning);
  EXPECT_EQ(at != std::string::npos, avx512) << haswell.err;
  if (at != std::string::npos) {
    EXPECT_EQ(haswell.err.find("OPENBLAS_CORETYPE", at + 1), std::string::npos) << "once: " << haswell.err;
  }
  for (const std::vector<std::string>& env : {std::vector<std::string>{"-u", "OPENBLAS_CORETYPE"},
                                              std::vector<std::string>{"OPENBLAS_CORETYPE=SkylakeX"}}) {
    auto r = generate(env);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err.find("OPENBLAS_CORETYPE"), std::string::npos) << env[0] << ": " << r.err;
  }
}

TEST(CliTest, ModelInfoDescribesTheShape) {
  auto r = run_command({cortex_binary(), "model", "info", "--model", test_model("124M")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["n_layer"], 12);
  EXPECT_EQ(j["n_embd"], 768);
  EXPECT_NEAR(j["parameters"].get<double>(), 124.4e6, 0.2e6);
}

TEST(CliTest, ErrorsAreOneLineAndNameTheFile) {
  std::string dir = testing::make_temp_dir("cli") + "/broken";
  std::filesystem::copy(test_model("tiny"), dir, std::filesystem::copy_options::recursive);
  std::filesystem::resize_file(dir + "/model.safetensors", 1000);
  auto r = run_command({cortex_binary(), "generate", "--model", dir, "-p", "hi"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir + "/model.safetensors"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;

  auto bad_detok =
      run_command({cortex_binary(), "detokenize", "--model", test_model("tiny")}, "[1, 2, \"x\"]");
  EXPECT_EQ(bad_detok.exit_code, 2);
  EXPECT_NE(bad_detok.err.find("integers"), std::string::npos) << bad_detok.err;
  auto out_of_range = run_command({cortex_binary(), "detokenize", "--model", test_model("tiny")}, "[99999]");
  EXPECT_NE(out_of_range.exit_code, 0);
  EXPECT_NE(out_of_range.err.find("99999"), std::string::npos) << out_of_range.err;

  std::string words;
  for (int i = 0; i < 400; ++i) words += " b";  // 400 tokens: more than the tiny model's 256 positions
  auto long_prompt = run_command({cortex_binary(), "generate", "--model", test_model("tiny"), "-p", words});
  EXPECT_EQ(long_prompt.exit_code, 2);
  EXPECT_NE(long_prompt.err.find("context length 256"), std::string::npos) << long_prompt.err;

  auto bad_shape = run_command({cortex_binary(), "model", "random", "--shape", "huge", "--out", dir + "2"});
  EXPECT_EQ(bad_shape.exit_code, 2);
  EXPECT_NE(bad_shape.err.find("tiny, 124M"), std::string::npos) << bad_shape.err;
}

}  // namespace
}  // namespace cortex

namespace cortex {
namespace {

TEST(CliTest, ServeRefusesWhatItCannotDoWithAClearError) {
  std::string dir = testing::make_temp_dir("serve-args");
  auto handler =
      run_command({cortex_binary(), "serve", "--model", test_model("tiny"), "--handler", dir + "/h.py"});
  EXPECT_EQ(handler.exit_code, 1);
  EXPECT_NE(handler.err.find("h.py: no such file"), std::string::npos) << handler.err;
  auto nothing = run_command({cortex_binary(), "serve"});
  EXPECT_EQ(nothing.exit_code, 2);
  EXPECT_NE(nothing.err.find("--model"), std::string::npos) << nothing.err;
  std::ofstream(dir + "/bad.json") << "{not json";
  auto bad = run_command({cortex_binary(), "serve", "--spec", dir + "/bad.json"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("bad.json: not JSON"), std::string::npos) << bad.err;
  std::ofstream(dir + "/partial.json") << R"({"name": "generator"})";
  auto partial = run_command({cortex_binary(), "serve", "--spec", dir + "/partial.json"});
  EXPECT_EQ(partial.exit_code, 2);
  EXPECT_NE(partial.err.find("partial.json"), std::string::npos) << partial.err;
  auto unknown_flag = run_command({cortex_binary(), "serve", "--no-such-flag"});
  EXPECT_EQ(unknown_flag.exit_code, 2) << unknown_flag.err;
}

TEST(CliTest, CompletionScriptsAreValidShell) {
  std::string dir = testing::make_temp_dir("completion");
  for (const char* shell : {"bash", "zsh"}) {
    auto script = run_command({cortex_binary(), "completion", shell});
    ASSERT_EQ(script.exit_code, 0) << script.err;
    EXPECT_NE(script.out.find("complete -F _cortex cortex"), std::string::npos);
    std::ofstream(dir + "/c.sh") << script.out;
    auto check = run_command({"bash", "-n", dir + "/c.sh"});
    EXPECT_EQ(check.exit_code, 0) << shell << ": " << check.err;
  }
}

TEST(CliTest, BenchRunsTheDecodeTestsAtEachDepth) {
  // Depths in any order run shallowest first; 255 leaves tiny's 256 positions room for one step.
  auto r = testing::run_command({cortex_binary(), "bench", "--model", testing::test_model("tiny"),
                                 "--decode-tokens", "8", "--batch-sizes", "4", "--batch-steps", "4",
                                 "--prompt-lengths", "0", "--rounds", "1", "--decode-depths", "100,255,16",
                                 "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto config = nlohmann::json::parse(read_file(testing::test_model("tiny") + "/config.json"));
  const double layers = config["n_layer"].get<double>(), C = config["n_embd"].get<double>(),
               V = config["vocab_size"].get<double>();
  ASSERT_EQ(config["n_positions"].get<int>(), 256);
  const double kv_position = layers * 2 * C * 4;  // an F32 cache
  // Tiny's F32 file is used in place: every weight a step reads (and the position embeddings), at most
  // the file; of its whole 2 MiB pages, those mapped as such.
  const double file_mb =
      static_cast<double>(std::filesystem::file_size(testing::test_model("tiny") + "/model.safetensors")) /
      1e6;
  EXPECT_GE(j["weights_in_place_mb"].get<double>(), j["weight_mb"].get<double>());
  EXPECT_LE(j["weights_in_place_mb"].get<double>(), file_mb);
  EXPECT_LE(j["weights_in_place_huge_page_mb"].get<double>(), j["weights_in_place_mb"].get<double>());
  EXPECT_LE(j["weights_in_place_on_huge_pages_mb"].get<double>(),
            j["weights_in_place_huge_page_mb"].get<double>());
  std::vector<std::string> names;
  for (const auto& f : j["figures"]) {
    const std::string name = f["name"];
    names.push_back(name);
    // Each test's steps start after a prompt of its depth: their positions, their cache reads and their
    // attention's FLOP follow from it.
    const int depth = name.ends_with("@d100") ? 100 : name.ends_with("@d255") ? 255 : 16;
    EXPECT_EQ(f["decode_depth"], depth) << f.dump();
    const int rows = name.starts_with("tg") ? 1 : 4;
    const int steps = std::min(name.starts_with("tg") ? 8 : 4, 256 - depth);
    const double p0 = depth, p1 = depth + steps;
    const double cache = rows * kv_position * (p0 + p1 + 1) / 2;
    EXPECT_NEAR(f["kv_cache_mb_per_step"].get<double>() * 1e6, cache, 1e-9 * cache) << f.dump();
    const double flops = 2 * layers * 12 * C * C + 2 * V * C +
                         layers * 4 * C * (p1 * (p1 + 1) - p0 * (p0 + 1)) / 2 / (p1 - p0);
    EXPECT_NEAR(f["mflop_per_token"].get<double>() * 1e6, flops, 1e-9 * flops) << f.dump();
    EXPECT_GT(f["tokens_per_second"].get<double>(), 0) << f.dump();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"tg8", "batch4", "tg8@d100", "batch4@d100", "tg1@d255",
                                             "batch4@d255"}));
  EXPECT_EQ(j["bandwidth_test"], "tg8");

  // A depth that leaves no position for a step is refused once the model is known, before any buffer
  // is cleared or test run; one below 1 or given twice before the model is even looked for.
  auto full = testing::run_command({cortex_binary(), "bench", "--model", testing::test_model("tiny"),
                                    "--decode-depths", "16,256", "--rounds", "1"});
  EXPECT_NE(full.exit_code, 0);
  EXPECT_NE(full.err.find("decode depth 256 leaves no room for a step in the model's 256 positions"),
            std::string::npos)
      << full.err;
  EXPECT_EQ(full.out, "");
  for (const auto& [depths, message] : std::vector<std::pair<std::string, std::string>>{
           {"0", "a decode depth must be at least 1 token (got 0)"},
           {"16,40,16", "decode depth 16 is given twice"}}) {
    auto bad = testing::run_command({cortex_binary(), "bench", "--model", "/nonexistent/model",
                                     "--decode-depths", depths, "--rounds", "1"});
    EXPECT_NE(bad.exit_code, 0) << depths;
    EXPECT_NE(bad.err.find(message), std::string::npos) << depths << ": " << bad.err;
  }
}

TEST(CliTest, BenchReportsEveryFigureBesideItsLimit) {
  auto r = testing::run_command({cortex_binary(), "bench", "--model", testing::test_model("tiny"),
                                 "--decode-tokens", "8", "--batch-steps", "4", "--kv-cache-dtype", "f16",
                                 "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["bandwidth_gb_s"].get<double>(), 0.1);
  EXPECT_GT(j["min_bandwidth_gb_s"].get<double>(), 0.1);
  EXPECT_LE(j["min_bandwidth_gb_s"].get<double>(), j["bandwidth_gb_s"].get<double>());
  EXPECT_GT(j["peak_bandwidth_gb_s"].get<double>(), 0.1);
  // The report's bandwidth is the single-stream test's: one read of a weights-sized buffer after each of
  // its steps, every round.
  EXPECT_EQ(j["bandwidth_test"], "tg8");
  EXPECT_EQ(j["bandwidth_reads_per_round"], 8);
  EXPECT_GT(j["sgemm_gflop_s"].get<double>(), 0.1);
  EXPECT_EQ(j["dtype"], "f32");
  EXPECT_EQ(j["kv_cache_dtype"], "f16");
  // A decode step of n sequences reads the weights once and each sequence's cached keys and values: its
  // limit is the lower of n × bandwidth ÷ those bytes and the matrix-multiply rate ÷ the test's FLOP per
  // token; prompt processing's is the latter. A decoded token's FLOP: the dense layers and the LM head (2 ×
  // their multiply-adds), plus attention over the positions it sees; a prompt token's: the LM head once per
  // prompt.
  const auto config = nlohmann::json::parse(read_file(testing::test_model("tiny") + "/config.json"));
  const double layers = config["n_layer"].get<double>(), C = config["n_embd"].get<double>(),
               V = config["vocab_size"].get<double>();
  const double dense = 2 * layers * 12 * C * C, lm_head = 2 * V * C;
  EXPECT_NEAR(j["mflop_per_token"].get<double>() * 1e6, dense + lm_head, 1e-9 * (dense + lm_head));
  // One position's keys and values over all layers, in F16 (--kv-cache-dtype f16).
  const double kv_position = layers * 2 * C * 2;
  EXPECT_NEAR(j["kv_cache_mb_per_position"].get<double>() * 1e6, kv_position, 1e-9 * kv_position);
  std::vector<std::string> names;
  for (const auto& f : j["figures"]) {
    const std::string name = f["name"];
    names.push_back(name);
    // Positions [p0, p1) of the test's tokens: pp128's 0..127; the decode tests' after a 16-token prompt.
    const double p0 = name == "pp128" ? 0 : 16, p1 = name == "pp128" ? 128 : name == "tg8" ? 24 : 20;
    const double attention = layers * 4 * C * (p1 * (p1 + 1) - p0 * (p0 + 1)) / 2 / (p1 - p0);
    const double flops = name == "pp128" ? dense + lm_head / 128 + attention : dense + lm_head + attention;
    EXPECT_NEAR(f["mflop_per_token"].get<double>() * 1e6, flops, 1e-9 * flops) << f.dump();
    const int rows = name == "tg8" ? 1 : name.starts_with("batch") ? std::stoi(name.substr(5)) : 0;
    // A batched test's matrix-multiply rate is its own, sgemm products between its steps; the others are
    // set beside the report's.
    const double sgemm = f["limit_sgemm_gflop_s"].get<double>();
    EXPECT_EQ(f["sgemm_between_steps"], rows > 1) << f.dump();
    if (rows > 1)
      EXPECT_GT(sgemm, 0.1) << f.dump();
    else
      EXPECT_EQ(sgemm, j["sgemm_gflop_s"].get<double>()) << f.dump();
    const double compute = sgemm * 1e9 / flops;
    EXPECT_GT(f["tokens_per_second"].get<double>(), 0) << f.dump();
    EXPECT_NEAR(f["fraction_of_limit"].get<double>(),
                f["tokens_per_second"].get<double>() / f["limit_tokens_per_second"].get<double>(), 1e-9);
    // Each decode test's bandwidth is its own, read between its steps; the single-stream test's is the
    // report's. Prompt processing reads nothing between its steps.
    ASSERT_EQ(f.contains("limit_read_bandwidth_gb_s"), rows > 0) << f.dump();
    const double read = rows > 0 ? f["limit_read_bandwidth_gb_s"].get<double>() : 0;
    if (rows > 0) {
      EXPECT_GT(read, 0.1) << f.dump();
      // The share of CPU time stolen by the hypervisor in the steps and between them: a share, or null
      // under half a second of CPU time (tiny's steps take milliseconds; cpu_times_test checks the
      // parsing).
      for (const char* key : {"cpu_steal_in_steps", "cpu_steal_between_steps"}) {
        ASSERT_TRUE(f.contains(key)) << key << " " << f.dump();
        if (!f[key].is_null()) {
          EXPECT_GE(f[key].get<double>(), 0) << f.dump();
          EXPECT_LE(f[key].get<double>(), 1) << f.dump();
        }
      }
      // A cache line's round trip between the run's two threads, after each step (the median).
      ASSERT_TRUE(f.contains("thread_round_trip_ns")) << f.dump();
      EXPECT_GT(f["thread_round_trip_ns"].get<double>(), 1) << f.dump();
      EXPECT_LT(f["thread_round_trip_ns"].get<double>(), 1e8) << f.dump();  // 100 ms: tests run beside
    } else {
      EXPECT_FALSE(f.contains("cpu_steal_in_steps")) << f.dump();
      EXPECT_FALSE(f.contains("thread_round_trip_ns")) << f.dump();
    }
    if (name == "tg8") {
      EXPECT_EQ(read, j["bandwidth_gb_s"].get<double>());
    }
    // Position p attends to p + 1 positions: a decode step's sequence reads the cache at the mean of them.
    const double cache = rows * kv_position * (p0 + p1 + 1) / 2;
    if (rows > 0) {
      EXPECT_NEAR(f["kv_cache_mb_per_step"].get<double>() * 1e6, cache, 1e-9 * cache) << f.dump();
    } else {
      EXPECT_FALSE(f.contains("kv_cache_mb_per_step")) << f.dump();
    }
    const double per_pass = read * 1e9 / (j["weight_mb"].get<double>() * 1e6 + cache);
    const double limit = rows > 0 ? std::min(rows * per_pass, compute) : compute;
    EXPECT_NEAR(f["limit_tokens_per_second"].get<double>(), limit, 1e-6 * limit) << f.dump();
    EXPECT_EQ(f["bound"], rows > 0 && rows * per_pass < compute ? "bandwidth" : "compute") << f.dump();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"pp128", "tg8", "batch8", "batch32"}))
      << "pp512 is skipped: the tiny model has 256 positions";

  // Without a decode test no bandwidth limit bounds anything: nothing is read between steps, and the
  // report's bandwidth is the best one-read pass. With only batched tests, it is the first one's.
  auto prompts = testing::run_command({cortex_binary(), "bench", "--model", testing::test_model("tiny"),
                                       "--decode-tokens", "0", "--batch-sizes", "0", "--prompt-lengths", "16",
                                       "--rounds", "1", "--json"});
  ASSERT_EQ(prompts.exit_code, 0) << prompts.err;
  auto p = nlohmann::json::parse(prompts.out);
  EXPECT_EQ(p["bandwidth_reads_per_round"], 0);
  EXPECT_EQ(p["bandwidth_test"], "");
  EXPECT_GT(p["peak_bandwidth_gb_s"].get<double>(), 0.1);
  EXPECT_EQ(p["bandwidth_gb_s"], p["peak_bandwidth_gb_s"]);
  EXPECT_EQ(p["min_bandwidth_gb_s"], p["peak_bandwidth_gb_s"]);
  // 128 sequences of 19 positions: more than a model's default cache budget (8 × 256 positions for tiny),
  // which the bench sizes for its largest test.
  auto batched = testing::run_command({cortex_binary(), "bench", "--model", testing::test_model("tiny"),
                                       "--decode-tokens", "0", "--batch-sizes", "128", "--batch-steps", "3",
                                       "--prompt-lengths", "0", "--rounds", "1", "--json"});
  ASSERT_EQ(batched.exit_code, 0) << batched.err;
  const auto b = nlohmann::json::parse(batched.out);
  EXPECT_EQ(b["bandwidth_reads_per_round"], 3);
  EXPECT_EQ(b["bandwidth_test"], "batch128");
  EXPECT_GT(b["sgemm_gflop_s"].get<double>(), 0.1) << "measured once per round without prompt tests";
  auto text = testing::run_command({cortex_binary(), "bench", "--model", testing::test_model("tiny"),
                                    "--decode-tokens", "0", "--batch-sizes", "0", "--prompt-lengths", "16",
                                    "--rounds", "1"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("best single read of a weights-sized buffer; no decode test"), std::string::npos)
      << text.out;
  // The text table's `MB/step`: the weights and the F32 cache a tg200 step reads on average (its steps
  // attend to 17..216 positions: ~0.12 MB of tiny's cache, beside ~13 MB of weights).
  auto decode = testing::run_command({cortex_binary(), "bench", "--model", testing::test_model("tiny"),
                                      "--decode-tokens", "200", "--batch-sizes", "0", "--prompt-lengths", "0",
                                      "--rounds", "1"});
  ASSERT_EQ(decode.exit_code, 0) << decode.err;
  std::smatch row;
  ASSERT_TRUE(std::regex_search(
      decode.out, row,
      std::regex(
          R"(\ntg200 +[0-9.]+ +[0-9.]+ +[0-9]+%  bandwidth +([0-9.]+)  [0-9.]+ GB/s; round trip [0-9]+ ns(; stolen [0-9]+% in steps, [0-9]+% between)?\n)")))
      << decode.out;
  EXPECT_NE(decode.out.find("`stolen`: the share of CPU time the hypervisor took"), std::string::npos)
      << decode.out;
  EXPECT_NE(decode.out.find("`round trip`: a cache line from the first thread to the second and back"),
            std::string::npos)
      << decode.out;
  const double step_mb = j["weight_mb"].get<double>() + layers * 2 * C * 4 * (16 + 100.5) / 1e6;
  EXPECT_NEAR(std::stod(row[1]), step_mb, 0.051) << decode.out;
}

// The table rows of compare_builds.sh's output that match `row`: its first two groups, space-separated.
std::set<std::string> table_rows(const std::string& out, const std::regex& row) {
  std::set<std::string> rows;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, row)) rows.insert(m[1].str() + " " + m[2].str());
  }
  return rows;
}

// bench/compare_builds.sh runs each build's `cortex bench` (or `cortex serve` under `cortex bench serve`)
// in turn and prints, per weight type and test, each build's figures (decode tests: the mean of its runs;
// the others: the best) and their ratio (here one binary twice: both columns name the same figures).
TEST(CliTest, CompareBuildsPrintsEachBuildsBestFigureAndTheirRatio) {
  const std::string script = testing::source_dir() + "/bench/compare_builds.sh";
  std::vector<std::string> argv = {"bash", script, "-n", "1", cortex_binary(), cortex_binary(), "--"};
  for (const char* option : {"--dtype", "f32,q8_0", "--rounds", "1", "--prompt-lengths", "0",
                             "--decode-tokens", "4", "--batch-sizes", "2", "--batch-steps", "2"})
    argv.push_back(option);
  argv.push_back("--model");
  argv.push_back(test_model("tiny"));
  auto r = run_command(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("round 1/1"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("build A: " + cortex_binary()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("build B: " + cortex_binary()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 runs each: decode tests, the mean tok/s"), std::string::npos) << r.out;
  // One row per weight type and test: the type, the test, each build's "tok/s (fraction%)", B / A.
  const std::regex engine_row(
      R"((f32|q8_0) +(tg4|batch2) +[0-9.]+ \([0-9]+%\) +[0-9.]+ \([0-9]+%\) +[0-9.]+x)");
  EXPECT_EQ(table_rows(r.out, engine_row),
            (std::set<std::string>{"f32 tg4", "f32 batch2", "q8_0 tg4", "q8_0 batch2"}))
      << r.out;
  // Servers: each build's aggregate tok/s at each client count, and their ratio.
  auto served = run_command(
      {"env", "REQUESTS=1", "MAX_TOKENS=4", "PORT=" + std::to_string(testing::free_port()), "bash", script,
       "-n", "1", "--serve", "2,3", cortex_binary(), cortex_binary(), "--", "--model", test_model("tiny")});
  ASSERT_EQ(served.exit_code, 0) << served.err;
  const std::regex serve_row(R"((serve) +(c2|c3) +[0-9.]+ +[0-9.]+ +[0-9.]+x)");
  EXPECT_EQ(table_rows(served.out, serve_row), (std::set<std::string>{"serve c2", "serve c3"})) << served.out;
  // One build is nothing to compare: a usage error.
  auto one = run_command({"bash", script, cortex_binary()});
  EXPECT_EQ(one.exit_code, 2);
  EXPECT_NE(one.err.find("usage:"), std::string::npos) << one.err;
}

// bench/beside_llama_cpp.sh runs llama.cpp's benchmarks and `cortex bench` in turn on the same GGUF file
// and prints both engines' medians and the median of the rounds' ratios. llama.cpp's tools here are
// stand-ins printing the formats of llama-bench (-o json) and llama-batched-bench (--output-format
// jsonl) with fixed figures, recording the arguments they get; cortex is the real one, on the tiny shape
// (whose 256 positions make the prompt test 128 tokens long).
TEST(CliTest, BesideLlamaCppPrintsBothEnginesAndTheRatioOfEachRound) {
  const std::string script = testing::source_dir() + "/bench/beside_llama_cpp.sh";
  const std::string dir = testing::make_temp_dir("beside-llama-cpp");
  const std::string bin = dir + "/build/bin";
  std::filesystem::create_directories(bin);
  auto tool = [&](const std::string& name, const std::string& output) {
    std::ofstream(bin + "/" + name) << "#!/bin/sh\necho \"$0 $*\" >> " << dir << "/calls\ncat <<'EOF'\n"
                                    << output << "\nEOF\n";
    std::filesystem::permissions(bin + "/" + name, std::filesystem::perms::owner_all);
  };
  tool("llama-bench", R"([{"n_prompt": 128, "n_gen": 0, "avg_ts": 1000.0},
                          {"n_prompt": 0, "n_gen": 128, "avg_ts": 50.0}])");
  tool("llama-batched-bench", R"({"pp": 16, "tg": 64, "pl": 8, "speed_pp": 900.0, "speed_tg": 400.0})");
  tool("llama-server", "");
  auto r = run_command({"env", "LLAMA_CPP_DIR=" + dir, "SHAPE=tiny", "BATCH=8", "bash", script, "-n", "2",
                        "--types", "q8_0", cortex_binary()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("2 rounds, 2 threads, GPT-2 tiny, F16 KV cache"), std::string::npos) << r.out;
  const std::string model = dir + "/models/gpt2-tiny-q8_0.gguf";
  EXPECT_TRUE(std::filesystem::exists(model));
  const std::string calls = read_file(dir + "/calls");
  EXPECT_NE(calls.find("llama-bench -m " + model + " -t 2 -p 128 -n 128 -r 1 -o json"), std::string::npos)
      << calls;
  EXPECT_NE(calls.find("llama-batched-bench -m " + model + " -t 2 "), std::string::npos) << calls;
  EXPECT_NE(calls.find("-npp 16 -ntg 64 -npl 8 --output-format jsonl"), std::string::npos) << calls;
  // Per test: llama.cpp's median, ours, and the median of the rounds' ratios (llama.cpp's figure being
  // the same in both rounds, that is our median over it).
  const std::regex row(
      R"((q8_0) +(pp128|tg128|batch8) +([0-9.]+) +([0-9.]+) +([0-9.]+)x  ([0-9.]+)-([0-9.]+))");
  // test: its type, test, llama.cpp, cortex, the ratio, the lowest and highest round's
  std::map<std::string, std::vector<std::string>> rows;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, row)) rows[m[2].str()] = {m[1], m[2], m[3], m[4], m[5], m[6], m[7]};
  }
  ASSERT_EQ(rows.size(), 3u) << r.out;
  for (const auto& [test, llama] :
       {std::pair<std::string, double>{"pp128", 1000.0}, {"tg128", 50.0}, {"batch8", 400.0}}) {
    const std::vector<std::string>& m = rows[test];
    EXPECT_DOUBLE_EQ(std::stod(m[2]), llama) << test;
    const double ours = std::stod(m[3]);
    EXPECT_GT(ours, 0) << test;
    EXPECT_NEAR(std::stod(m[4]), ours / llama, 0.01 + 0.001 * ours / llama) << test << ": " << r.out;
    EXPECT_LE(std::stod(m[5]), std::stod(m[4])) << test;
    EXPECT_GE(std::stod(m[6]), std::stod(m[4])) << test;
  }
  // No engine: a usage error; so is a type llama.cpp's files do not name.
  EXPECT_EQ(run_command({"bash", script}).exit_code, 2);
  auto bad = run_command({"bash", script, "--types", "bf16", cortex_binary()});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("usage:"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace cortex

namespace cortex {
namespace {

// `cortex cache`: the converted weights that `generate --dtype` wrote are listed with their state, pruned
// once the model changed, and removed by name or by the model's path; bad arguments are clear errors.
TEST(CliTest, CacheListsPrunesAndRemovesConvertedWeights) {
  const std::string dir = std::filesystem::absolute(testing::make_temp_dir("cache-cli")).lexically_normal();
  const std::string home = dir + "/home", model = dir + "/tiny";
  std::filesystem::copy(test_model("tiny"), model, std::filesystem::copy_options::recursive);
  auto cortex = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/env", "CORTEX_HOME=" + home + "/", cortex_binary()});
    return run_command(args);
  };
  auto entries = [&] {
    auto r = cortex({"cache", "ls", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out)["entries"];
  };
  auto empty = cortex({"cache", "ls"});
  EXPECT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_NE(empty.out.find("holds nothing"), std::string::npos) << empty.out;
  auto folders = nlohmann::json::parse(cortex({"cache", "ls", "--json"}).out);
  EXPECT_EQ(folders["downloads"], home + "/cache");  // CORTEX_HOME's trailing '/' dropped
  EXPECT_EQ(folders["converted"], home + "/cache/converted");

  for (const char* dtype : {"f16", "q8_0"}) {
    auto g = cortex({"generate", "--model", model, "--dtype", dtype, "-p", "Hello", "-n", "2"});
    ASSERT_EQ(g.exit_code, 0) << g.err;
  }
  auto listed = entries();
  ASSERT_EQ(listed.size(), 2u) << listed.dump();
  for (const auto& e : listed) {
    EXPECT_EQ(e["kind"], "converted");
    EXPECT_EQ(e["state"], "current");
    EXPECT_TRUE(std::filesystem::exists(e["path"].get<std::string>()));
    EXPECT_GT(e["bytes"].get<uint64_t>(), 1'000'000u);
  }
  auto table = cortex({"cache", "ls"});
  EXPECT_NE(table.out.find("f16 of " + model), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("2 entries"), std::string::npos) << table.out;

  // Nothing stale yet: prune removes nothing. Then the model changes: prune --dry-run names both, removes
  // nothing; prune removes both.
  auto nothing = cortex({"cache", "prune"});
  EXPECT_EQ(nothing.exit_code, 0) << nothing.err;
  EXPECT_EQ(entries().size(), 2u);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const std::string weights = model + "/model.safetensors";
  const std::string bytes = read_file(weights);
  std::ofstream(weights, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_EQ(entries()[0]["state"], "model changed since");
  auto dry = cortex({"cache", "prune", "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("would remove converted"), std::string::npos) << dry.out;
  EXPECT_EQ(entries().size(), 2u);
  auto pruned = cortex({"cache", "prune"});
  EXPECT_EQ(pruned.exit_code, 0) << pruned.err;
  EXPECT_NE(pruned.out.find("(2 entries)"), std::string::npos) << pruned.out;
  EXPECT_TRUE(entries().empty());

  // Written again; removed by name and by the model's path.
  for (const char* dtype : {"f16", "q8_0"})
    ASSERT_EQ(cortex({"generate", "--model", model, "--dtype", dtype, "-p", "Hello", "-n", "2"}).exit_code,
              0);
  listed = entries();
  ASSERT_EQ(listed.size(), 2u);
  const std::string first = listed[0]["name"], second_path = listed[1]["path"];
  auto by_name = cortex({"cache", "rm", first});
  EXPECT_EQ(by_name.exit_code, 0) << by_name.err;
  EXPECT_EQ(entries().size(), 1u);
  // The model's folder names the weights converted from it (a folder above it names nothing), and still
  // does once the model is gone.
  auto parent = cortex({"cache", "rm", dir});
  EXPECT_EQ(parent.exit_code, 1);
  EXPECT_EQ(entries().size(), 1u);
  const std::string moved = dir + "/moved";
  std::filesystem::rename(model, moved);
  auto by_model = cortex({"cache", "rm", model + "/"});
  EXPECT_EQ(by_model.exit_code, 0) << by_model.err;
  EXPECT_FALSE(std::filesystem::exists(second_path));
  EXPECT_TRUE(entries().empty());
  std::filesystem::rename(moved, model);

  // Unused for a while (the last use set back two days): --unused-for 1d removes it, 3d does not.
  ASSERT_EQ(cortex({"generate", "--model", model, "--dtype", "f16", "-p", "Hello", "-n", "2"}).exit_code, 0);
  const std::string path = entries()[0]["path"];
  std::filesystem::last_write_time(path, std::filesystem::last_write_time(path) - std::chrono::hours(48));
  EXPECT_EQ(cortex({"cache", "prune", "--unused-for", "3d"}).exit_code, 0);
  EXPECT_EQ(entries().size(), 1u);
  auto old = cortex({"cache", "prune", "--unused-for", "1d"});
  EXPECT_EQ(old.exit_code, 0) << old.err;
  EXPECT_NE(old.out.find("last used 2d ago"), std::string::npos) << old.out;
  EXPECT_TRUE(entries().empty());

  // A stale file is logged once per load (a load looks for the file twice, without and with the lock).
  ASSERT_EQ(cortex({"generate", "--model", model, "--dtype", "f16", "-p", "Hello", "-n", "2"}).exit_code, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::ofstream(weights, std::ios::binary | std::ios::trunc) << bytes;
  auto reload = cortex(
      {"--log-level", "info", "generate", "--model", model, "--dtype", "f16", "-p", "Hello", "-n", "2"});
  ASSERT_EQ(reload.exit_code, 0) << reload.err;
  const std::string stale = "converted from another version of the model; converting again";
  const size_t at = reload.err.find(stale);
  EXPECT_NE(at, std::string::npos) << reload.err;
  EXPECT_EQ(reload.err.find(stale, at + 1), std::string::npos) << reload.err;

  // A replica this user cannot see (another user's, or in a container) holds the in-use mark of a mapping
  // (a shared flock) that /proc shows nothing of here: listed as in use, kept by --unused-for, and rm says
  // that its space comes back later.
  {
    ASSERT_EQ(entries().size(), 1u);
    const std::string used = entries()[0]["path"];
    std::filesystem::last_write_time(used, std::filesystem::last_write_time(used) - std::chrono::hours(48));
    const int fd = ::open(used.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_SH), 0);
    const auto e = entries()[0];
    EXPECT_TRUE(e["in_use"].get<bool>()) << e.dump();
    EXPECT_TRUE(e["mapped_by"].empty()) << e.dump();
    EXPECT_NE(cortex({"cache", "ls"}).out.find(" in use "), std::string::npos);
    auto kept = cortex({"cache", "prune", "--unused-for", "1d"});
    EXPECT_EQ(kept.exit_code, 0) << kept.err;
    EXPECT_NE(kept.out.find("(0 entries)"), std::string::npos) << kept.out;
    auto removed = cortex({"cache", "rm", e["name"].get<std::string>()});
    EXPECT_EQ(removed.exit_code, 0) << removed.err;
    EXPECT_NE(removed.out.find("this user cannot see"), std::string::npos) << removed.out;
    EXPECT_TRUE(entries().empty());
    ::close(fd);
  }

  // Weights converted into another folder (--converted-cache DIR) are listed and removed with the same
  // option, before or after the subcommand's name.
  const std::string elsewhere = dir + "/elsewhere";
  ASSERT_EQ(cortex({"generate", "--model", model, "--dtype", "q8_0", "--converted-cache", elsewhere, "-p",
                    "Hello", "-n", "2"})
                .exit_code,
            0);
  EXPECT_TRUE(entries().empty());
  auto there = cortex({"cache", "ls", "--json", "--converted-cache", elsewhere + "/"});
  ASSERT_EQ(there.exit_code, 0) << there.err;
  const auto there_json = nlohmann::json::parse(there.out);
  EXPECT_EQ(there_json["converted"], elsewhere);
  ASSERT_EQ(there_json["entries"].size(), 1u) << there.out;
  const std::string there_path = there_json["entries"][0]["path"];
  EXPECT_TRUE(there_path.starts_with(elsewhere + "/")) << there_path;
  EXPECT_NE(cortex({"cache", "ls", "--converted-cache", elsewhere}).out.find(" and " + elsewhere),
            std::string::npos);
  auto rm_there = cortex({"cache", "--converted-cache", elsewhere, "rm", there_json["entries"][0]["name"]});
  EXPECT_EQ(rm_there.exit_code, 0) << rm_there.err;
  EXPECT_FALSE(std::filesystem::exists(there_path));
  EXPECT_EQ(cortex({"cache", "ls", "--converted-cache", "off"}).exit_code, 2);

  auto unknown = cortex({"cache", "rm", "no-such-entry"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no-such-entry"), std::string::npos) << unknown.err;
  for (const char* age : {"soon", "99999999999d", "900000h"}) {
    auto bad_age = cortex({"cache", "prune", "--unused-for", age});
    EXPECT_EQ(bad_age.exit_code, 2) << age;
    EXPECT_NE(bad_age.err.find("7d"), std::string::npos) << bad_age.err;
  }
}

}  // namespace
}  // namespace cortex
