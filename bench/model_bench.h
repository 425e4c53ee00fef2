// The GPT-2 engine benchmark behind `cortex bench`: prompt processing, single-stream decode and batched
// decode, each beside the limit it is bound by (memory bandwidth or matrix-multiply rate).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bench/machine_limits.h"
#include "model/tensor.h"

namespace cortex::bench {

struct ModelBenchOptions {
  std::string model;                           // folder or .gguf
  std::optional<model::DType> dtype;           // weight type to run in; nullopt = as stored
  std::optional<model::DType> kv_cache_dtype;  // nullopt = the model's default (follows the weights)
  std::string converted_cache_dir;             // ModelOptions::converted_cache_dir (empty: in memory)
  int threads = 2;
  std::vector<int> prompt_lengths = {128, 512};
  int decode_tokens = 128;
  std::vector<int> batch_sizes = {8, 32};
  int batch_steps = 64;
  // Decode tests run at each depth, shallowest first: their sequences' first step follows a prompt of
  // that many tokens (llama-bench's "tg128 @ d512"). Tests at another depth than kDefaultDecodeDepth are
  // named with it ("tg128@d880"); their limits count the cache their steps read at those positions. Each
  // round prefills every sequence of every decode test again, untimed: 32 sequences at depth 880 are 28K
  // prompt tokens a round (~15 s at 1,900 tok/s).
  static constexpr int kDefaultDecodeDepth = 16;
  std::vector<int> decode_depths = {kDefaultDecodeDepth};
  // Every test and its limits are measured once per round: decode tests report the totals of all rounds
  // beside the reads (and, batched, the sgemm products) between their steps, prompt tests and the compute
  // limit beside them the best round (see run_model_bench and bench/machine_limits.h).
  int rounds = 3;
};

struct BenchFigure {
  std::string name;      // "pp512", "tg128", "batch32", "tg128@d880"
  int decode_depth = 0;  // decode tests: the prompt's tokens before the first step (0 for prompt processing)
  double tokens_per_second = 0;
  double limit_tokens_per_second = 0;  // what the machine's bandwidth or FLOP rate allows
  std::string bound;                   // "bandwidth" or "compute"
  double flops_per_token = 0;          // this test's: see ModelBenchReport::flops_per_token
  // A decode test's own read bandwidth: the weights-sized buffer read between its steps (0 for prompt
  // processing, which no bandwidth limit bounds).
  double bandwidth_bytes_per_s = 0;
  // The matrix-multiply rate its compute limit is set with: a batched decode test's own, sgemm products
  // between its steps (sgemm_between_steps); otherwise the report's sgemm_flops.
  double sgemm_flops = 0;
  bool sgemm_between_steps = false;
  // A decode step's reads of the KV cache, all its sequences', averaged over the test's steps (0 for prompt
  // processing): its bandwidth limit is set by these bytes and the weights'.
  double kv_cache_bytes_per_step = 0;
  // Decode tests: the share of all CPUs' time the hypervisor stole during the steps and between them
  // (/proc/stat's steal; nullopt where it cannot be read). A fraction of the limit is taken in the steps'
  // moments and the reads': where more was stolen in the steps, it reads low for reasons of the machine.
  std::optional<double> steal_in_steps = std::nullopt, steal_between_steps = std::nullopt;
  // Decode tests on two threads or more: seconds a cache line takes from the first thread to the second
  // and back (MachineLimits::timed_round_trip), the median of one figure after each step. Where it is
  // several hundred ns, the step's exchanges between its threads cost that much each.
  std::optional<double> round_trip_seconds = std::nullopt;
};

struct ModelBenchReport {
  std::string dtype;           // the weights' type in this run ("f32", "f16", "q8_0")
  std::string kv_cache_dtype;  // the KV cache's ("f32", "f16")
  std::string isa;             // the kernels' instruction set ("avx512", "avx2", "portable")
  int rounds = 0;
  // Reading a buffer the size of the weights once after each step of the first decode test (the
  // single-stream test, else the first batched one; bandwidth_reads steps per round): over all rounds
  // (that test's bandwidth limit), and the lowest round (its reads of the same way). For comparison, the best
  // single read (a few milliseconds each, at the start and end of each round), which on a shared machine
  // catches moments no longer test can average. Without decode tests, bandwidth_reads is 0 and all three are
  // that best.
  double bandwidth_bytes_per_s = 0;
  double min_bandwidth_bytes_per_s = 0;
  int bandwidth_reads = 0;
  std::string bandwidth_test;  // that test's name ("tg128"); empty without decode tests
  double peak_bandwidth_bytes_per_s = 0;
  double dram_bandwidth_bytes_per_s = 0;   // streaming 2 GiB (beyond any cache), passes of one read
  double sgemm_flops = 0;                  // best of the rounds (once per round, or after each prompt test)
  double weight_bytes = 0;                 // read once per decode step (in the run's type)
  double kv_cache_bytes_per_position = 0;  // one cached position's keys and values, all layers
  // The weights used in place from the model's file, the whole 2 MiB pages inside them, and of those the
  // bytes mapped on 2 MiB pages (Gpt2Weights::in_place), after the last test: a file the system holds
  // on 4 KiB pages reads slower at the machine's fast moments.
  double in_place_bytes = 0, in_place_huge_page_bytes = 0, in_place_on_huge_pages = 0;
  // The weights converted on load, and the converted-weights file they are mapped from (empty: in the
  // process's own memory; Gpt2Weights::converted).
  double converted_bytes = 0;
  std::string converted_cache_file;
  // A decode token's FLOP, 2 × the multiply-adds of the dense layers and the LM head. A test's own (in its
  // figure) also counts attention at the test's positions, and prompt processing the LM head once per
  // prompt: only the last position's logits are computed.
  double flops_per_token = 0;
  std::vector<BenchFigure> figures;
};

// The depths in ascending order; throws invalid_argument unless every one is at least 1 and given once
// (run_model_bench checks them too; a caller may check before it fetches a model). Whether a depth leaves
// room for a step depends on the model's context, which run_model_bench checks once the model has loaded.
std::vector<int> sorted_decode_depths(std::vector<int> depths);

// `limits` (of options.threads threads) reads its buffer for the run's limits: 2 GiB for the reference
// figure (dram_bandwidth_bytes_per_s), then the weights' size for the tests'. The runs of one process
// share one, so that they read the pages of one allocation of 2 GiB (more for weights beyond that)
// rather than each clearing its own (MachineLimits::set_read_bytes).
ModelBenchReport run_model_bench(const ModelBenchOptions& options, MachineLimits& limits);

}  // namespace cortex::bench
