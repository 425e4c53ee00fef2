// cortex bench: engine throughput beside the machine's limits, measured in the same run.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "bench/model_bench.h"
#include "bench/serve_bench.h"
#include "bench/tokenizer_bench.h"
#include "cli/commands/commands.h"
#include "cli/progress_bar.h"
#include "model/blas_cores.h"
#include "model/random_model.h"
#include "model/weight_types.h"
#include "util/file_util.h"

namespace cortex::cli {

namespace {
// The random 124M model the benchmark runs on when no --model is given (written once, then reused).
std::string default_bench_model() {
  std::string dir = cortex_home() + "/models/random-gpt2-124M";
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    std::fprintf(stderr, "writing a random GPT-2 124M to %s (once)...\n", dir.c_str());
    model::RandomModelOptions ro;
    ro.config = model::Gpt2Config::from_shape_name("124M");
    ro.vocab_dir = default_vocab_dir();
    ro.out = dir;
    model::write_random_model(ro);
  }
  return dir;
}
}  // namespace

void add_bench_command(CLI::App& app) {
  struct Options {
    bench::ModelBenchOptions model;
    std::vector<std::string> dtypes;
    std::string kv_cache_dtype;
    std::string converted_cache = "off";
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  o->model.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto* cmd = app.add_subcommand("bench", "Measure the engine's speed beside this machine's limits");
  cmd->add_option(
      "--model", o->model.model,
      "Model folder or .gguf, or a URI: file://, s3://, https://, hf:// (default: a random GPT-2 124M)");
  cmd->add_option("--threads", o->model.threads, "Compute threads")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--decode-tokens", o->model.decode_tokens, "Single-stream decode steps (0 for none)")
      ->capture_default_str();
  cmd->add_option("--batch-steps", o->model.batch_steps, "Steps of batched decode")->capture_default_str();
  cmd->add_option("--decode-depths", o->model.decode_depths,
                  "Prompt tokens before the decode tests' first step (comma-separated: the decode tests run "
                  "at each, shallowest first; tests at another depth than 16 are named with it, as "
                  "tg128@d880). Every round prefills each test's sequences again, untimed: with large "
                  "depths, --batch-sizes 0 keeps to the single stream")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--prompt-lengths", o->model.prompt_lengths,
                  "Prompt-processing tests: tokens per prompt (comma-separated; 0 for none)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--batch-sizes", o->model.batch_sizes,
                  "Batched-decode tests: sequences per step (comma-separated; 0 for none)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--rounds", o->model.rounds,
                  "Rounds: every test and its limits are measured once per round; decode tests report all "
                  "rounds together beside limits measured between their steps, prompt tests the best round")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtypes,
                  "Weight type(s) to run in, one run each: f32, f16, q8_0 (comma-separated; default: as "
                  "stored)")
      ->delimiter(',');
  cmd->add_option("--kv-cache-dtype", o->kv_cache_dtype,
                  "KV cache type: f32 or f16 (default: f16 for f16 and q8_0 weights, f32 for f32)");
  add_converted_cache_option(*cmd, o->converted_cache);
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  cmd->callback([o, cmd] {
    if (cmd->got_subcommand("tokenizer") || cmd->got_subcommand("serve")) return;  // they run only their own
    bench::sorted_decode_depths(o->model.decode_depths);  // checked before a model is fetched or written
    o->model.model = o->model.model.empty() ? default_bench_model() : local_model_path(o->model.model);
    std::vector<std::optional<model::DType>> dtypes;
    for (const auto& d : o->dtypes) dtypes.push_back(model::parse_dtype(d));  // all checked before any run
    if (dtypes.empty()) dtypes.push_back(std::nullopt);
    if (!o->kv_cache_dtype.empty()) o->model.kv_cache_dtype = model::parse_kv_cache_dtype(o->kv_cache_dtype);
    o->model.converted_cache_dir = converted_cache_dir(o->converted_cache);
    bench::MachineLimits limits(o->model.threads);  // one buffer for all the runs
    nlohmann::json runs = nlohmann::json::array();
    for (const auto& dtype : dtypes) {
      o->model.dtype = dtype;
      auto r = bench::run_model_bench(o->model, limits);
      if (o->json) {
        nlohmann::json j = {
            {"dtype", r.dtype},
            {"kv_cache_dtype", r.kv_cache_dtype},
            {"rounds", r.rounds},
            {"isa", r.isa},
            {"bandwidth_gb_s", r.bandwidth_bytes_per_s / 1e9},
            {"min_bandwidth_gb_s", r.min_bandwidth_bytes_per_s / 1e9},
            {"bandwidth_test", r.bandwidth_test},
            {"bandwidth_reads_per_round", r.bandwidth_reads},
            {"peak_bandwidth_gb_s", r.peak_bandwidth_bytes_per_s / 1e9},
            {"dram_bandwidth_gb_s", r.dram_bandwidth_bytes_per_s / 1e9},
            {"sgemm_gflop_s", r.sgemm_flops / 1e9},
            {"blas_core", model::blas_core_name()},
            {"blas_core_warning", model::blas_core_warning()},
            {"weight_mb", r.weight_bytes / 1e6},
            {"kv_cache_mb_per_position", r.kv_cache_bytes_per_position / 1e6},
            {"weights_in_place_mb", r.in_place_bytes / 1e6},
            {"weights_in_place_huge_page_mb", r.in_place_huge_page_bytes / 1e6},
            {"weights_in_place_on_huge_pages_mb", r.in_place_on_huge_pages / 1e6},
            {"weights_converted_mb", r.converted_bytes / 1e6},
            {"converted_cache_file",
             r.converted_cache_file.empty() ? nlohmann::json() : nlohmann::json(r.converted_cache_file)},
            {"mflop_per_token", r.flops_per_token / 1e6}};
        for (const auto& f : r.figures) {
          j["figures"].push_back({{"name", f.name},
                                  {"tokens_per_second", f.tokens_per_second},
                                  {"limit_tokens_per_second", f.limit_tokens_per_second},
                                  {"fraction_of_limit", f.tokens_per_second / f.limit_tokens_per_second},
                                  {"bound", f.bound},
                                  {"mflop_per_token", f.flops_per_token / 1e6},
                                  {"limit_sgemm_gflop_s", f.sgemm_flops / 1e9},
                                  {"sgemm_between_steps", f.sgemm_between_steps}});
          // Decode tests only: prompt processing has no bandwidth limit.
          if (f.bandwidth_bytes_per_s > 0) {
            j["figures"].back()["decode_depth"] = f.decode_depth;
            j["figures"].back()["limit_read_bandwidth_gb_s"] = f.bandwidth_bytes_per_s / 1e9;
            j["figures"].back()["kv_cache_mb_per_step"] = f.kv_cache_bytes_per_step / 1e6;
            auto share = [](const std::optional<double>& v) {
              return v ? nlohmann::json(*v) : nlohmann::json();
            };
            j["figures"].back()["cpu_steal_in_steps"] = share(f.steal_in_steps);
            j["figures"].back()["cpu_steal_between_steps"] = share(f.steal_between_steps);
            if (f.round_trip_seconds)
              j["figures"].back()["thread_round_trip_ns"] = *f.round_trip_seconds * 1e9;
          }
        }
        runs.push_back(std::move(j));
        continue;
      }
      const char* rounds_plural = r.rounds == 1 ? "" : "s";
      std::printf("machine (%d threads): read bandwidth %.1f GB/s (", o->model.threads,
                  r.bandwidth_bytes_per_s / 1e9);
      if (r.bandwidth_reads > 0)
        std::printf(
            "a weights-sized buffer read after each of the %s test's steps, %d reads per round, over %d "
            "round%s, prefetched and left to the hardware in turn, the faster way's; lowest round %.1f GB/s; "
            "best single read %.1f GB/s",
            r.bandwidth_test.c_str(), r.bandwidth_reads, r.rounds, rounds_plural,
            r.min_bandwidth_bytes_per_s / 1e9, r.peak_bandwidth_bytes_per_s / 1e9);
      else
        std::printf("best single read of a weights-sized buffer; no decode test");
      std::printf("; 2 GiB buffer %.1f GB/s), sgemm %.1f GFLOP/s (OpenBLAS, %s kernels)\n",
                  r.dram_bandwidth_bytes_per_s / 1e9, r.sgemm_flops / 1e9, model::blas_core_name().c_str());
      if (const std::string warning = model::blas_core_warning(); !warning.empty())
        std::printf("note: %s\n", warning.c_str());
      std::printf(
          "decode tests: %d round%s together, each beside its own reads of the buffer (and, batched, sgemm "
          "products) between its steps, which leave the caches cold for every step; prompt tests and the "
          "sgemm above: the best of %d round%s\n",
          r.rounds, rounds_plural, r.rounds, rounds_plural);
      std::printf(
          "model (%s weights, %s KV cache, %s kernels): %.0f MB of weights read per decode step, %.0f MFLOP "
          "per decoded token (the dense layers and the LM head; a test's compute limit adds attention at its "
          "positions, and prompt processing computes the LM head once per prompt)\n",
          r.dtype.c_str(), r.kv_cache_dtype.c_str(), r.isa.c_str(), r.weight_bytes / 1e6,
          r.flops_per_token / 1e6);
      if (r.in_place_huge_page_bytes > 0)
        std::printf(
            "weights used in place from the file: %.0f MB, of whose whole 2 MiB pages %.0f of %.0f MiB are "
            "mapped as such (on 4 KiB pages a step reads slower at fast moments)\n",
            r.in_place_bytes / 1e6, r.in_place_on_huge_pages / 1048576, r.in_place_huge_page_bytes / 1048576);
      if (r.converted_bytes > 0)
        std::printf("weights converted on load: %.0f MB, %s%s\n", r.converted_bytes / 1e6,
                    r.converted_cache_file.empty() ? "in the process's own memory"
                                                   : "mapped from the converted-weights file ",
                    r.converted_cache_file.c_str());
      std::printf(
          "a decode step reads the weights once and each sequence's KV cache, %.1f KB per position it "
          "attends to: `MB/step`, averaged over the test's steps, sets its bandwidth limit; `round trip`: a "
          "cache line from the first thread to the second and back, the median after each step (every "
          "exchange between a step's threads waits about as long: tens of ns where they share a cache, "
          "hundreds across chiplets); `stolen`: the share of CPU time the hypervisor took, during the steps "
          "and between them\n\n",
          r.kv_cache_bytes_per_position / 1e3);
      int width = 10;  // the names' column: "batch32@d880" is wider
      for (const auto& f : r.figures) width = std::max(width, static_cast<int>(f.name.size()));
      std::printf("%-*s %12s %12s %10s  %-9s %9s  %s\n", width, "test", "tok/s", "limit tok/s", "fraction",
                  "bound by", "MB/step", "measured between steps");
      for (const auto& f : r.figures) {
        std::printf("%-*s %12.1f %12.1f %9.0f%%  ", width, f.name.c_str(), f.tokens_per_second,
                    f.limit_tokens_per_second, 100.0 * f.tokens_per_second / f.limit_tokens_per_second);
        if (f.bandwidth_bytes_per_s == 0) {  // prompt processing: no bandwidth limit, nothing between steps
          std::printf("%s\n", f.bound.c_str());
          continue;
        }
        std::printf("%-9s %9.1f  %.1f GB/s", f.bound.c_str(),
                    (r.weight_bytes + f.kv_cache_bytes_per_step) / 1e6, f.bandwidth_bytes_per_s / 1e9);
        if (f.sgemm_between_steps) std::printf(", sgemm %.1f GFLOP/s", f.sgemm_flops / 1e9);
        if (f.round_trip_seconds) std::printf("; round trip %.0f ns", *f.round_trip_seconds * 1e9);
        if (f.steal_in_steps && f.steal_between_steps)
          std::printf("; stolen %.0f%% in steps, %.0f%% between", 100 * *f.steal_in_steps,
                      100 * *f.steal_between_steps);
        std::printf("\n");
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    // One run prints one object (as before --dtype); several, an array of them.
    if (o->json) std::cout << (runs.size() == 1 ? runs[0] : runs).dump(2) << "\n";
  });

  auto so = std::make_shared<bench::ServeBenchOptions>();
  auto serve_json = std::make_shared<bool>(false);
  auto* serve = cmd->add_subcommand("serve", "Closed-loop streaming clients against a running server");
  serve->add_option("--url", so->url, "Server base URL")->capture_default_str();
  serve
      ->add_option("--api", so->api,
                   "openai (/v1/completions), llama (llama.cpp's /completion) or predict (the seed's "
                   "/predict, not streamed; a --url with a path is used as it is)")
      ->check(CLI::IsMember({"openai", "llama", "predict"}))
      ->capture_default_str();
  serve->add_option("--model", so->model, "Model name for openai requests")->capture_default_str();
  serve->add_option("--clients", so->clients, "Concurrent clients")->capture_default_str();
  serve->add_option("--requests", so->requests_per_client, "Requests per client")->capture_default_str();
  serve->add_option("--max-tokens", so->max_tokens, "Tokens per request")->capture_default_str();
  serve->add_option("--prompt", so->prompt, "Prompt")->capture_default_str();
  serve->add_flag("--json", *serve_json, "Print the report as JSON");
  serve->callback([so, serve_json] {
    auto r = bench::run_serve_bench(*so);
    if (*serve_json) {
      std::cout << nlohmann::json({{"clients", so->clients},
                                   {"requests", r.requests},
                                   {"failed", r.failed},
                                   {"tokens", r.tokens},
                                   {"seconds", r.seconds},
                                   {"tokens_per_second", r.tokens_per_second},
                                   {"requests_per_second", r.requests_per_second},
                                   {"ttft_p50_s", r.ttft_p50},
                                   {"ttft_p99_s", r.ttft_p99},
                                   {"latency_p50_s", r.latency_p50},
                                   {"latency_p99_s", r.latency_p99}})
                       .dump(2)
                << "\n";
      return;
    }
    std::printf("%d clients, %d requests (%d failed), %ld tokens in %.2f s\n", so->clients, r.requests,
                r.failed, r.tokens, r.seconds);
    std::printf(
        "aggregate %.1f tok/s, %.2f req/s | TTFT p50 %.3f s p99 %.3f s | latency p50 %.3f s p99 %.3f s\n",
        r.tokens_per_second, r.requests_per_second, r.ttft_p50, r.ttft_p99, r.latency_p50, r.latency_p99);
  });

  struct TokenizerOptions {
    std::string corpus = CORTEX_TOKENIZER_BENCH_CORPUS, script = CORTEX_TOKENIZER_BENCH_SCRIPT;
  };
  auto t = std::make_shared<TokenizerOptions>();
  auto* tok =
      cmd->add_subcommand("tokenizer", "Encode throughput beside the npm gpt-3-encoder on the same text");
  tok->add_option("--corpus", t->corpus, "A text file or a folder of them")->capture_default_str();
  tok->callback([t] {
    auto r = bench::run_tokenizer_bench(default_vocab_dir(), t->corpus, t->script);
    std::printf("encoded %zu bytes into %zu tokens per trial (outputs %s)\n", r.bytes, r.tokens,
                r.outputs_match ? "match" : "DIFFER");
    std::printf("cortex          %8.2f MB/s\ngpt-3-encoder   %8.2f MB/s\nratio           %8.1fx\n",
                r.ours_mb_per_s, r.reference_mb_per_s, r.ours_mb_per_s / r.reference_mb_per_s);
  });
}

}  // namespace cortex::cli
