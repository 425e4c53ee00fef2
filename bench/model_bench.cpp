#include "bench/model_bench.h"

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/cpu_times.h"
#include "bench/machine_limits.h"
#include "model/gpt2_model.h"
#include "model/kernel_table.h"
#include "model/weight_types.h"
#include "util/clock.h"
#include "util/error.h"

namespace cortex::bench {

namespace {
std::vector<int32_t> random_tokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab - 1));
  return t;
}

// Tokens per second of one prefill of n random tokens into a fresh sequence.
double prompt_rate(model::Gpt2Model& model, int n) {
  auto tokens = random_tokens(n, model.config().vocab_size, 1);
  auto seq = model.new_sequence();
  model::BatchEntry e{seq.get(), tokens};
  std::vector<float> logits;
  auto start = SteadyClock::now();
  model.forward(std::span(&e, 1), &logits);
  return n / seconds_since(start);
}

// `steps` decode steps of `rows` sequences at once, each after a `depth`-token prompt: the tokens
// decoded, the steps' seconds, and the seconds of one read of `probe`'s weights-sized buffer after every
// step, on the model's own threads (so that the steps and the reads share the machine's moments); with
// several sequences, which arithmetic may bound, also the seconds of one of its sgemm products after
// every step.
// The CPU time the machine's CPUs spent during the steps and between them (the reads and products), read
// from /proc/stat around each (outside the timed spans): how much of it the hypervisor stole in each.
// cpu_times is false where /proc/stat could not be read.
// The reads go each way in turn (ReadWay: step by step, prefetched first), totalled per way. With
// several threads, each read is followed by kRoundTrips round trips of a cache line between the first two
// (MachineLimits::timed_round_trip), one figure per step.
constexpr int kRoundTrips = 32;
struct DecodeRun {
  double tokens = 0, seconds = 0, sgemm_seconds = 0;
  double read_seconds[2] = {0, 0};
  int reads[2] = {0, 0};
  std::vector<double> round_trips;  // seconds per round trip, after each step
  CpuTimes step_cpu, between_cpu;
  bool cpu_times = true;
  // Bytes per second of way w's reads of a buffer of `bytes` (0 without any).
  double way_bandwidth(double bytes, int w) const {
    return reads[w] > 0 ? bytes * reads[w] / read_seconds[w] : 0;
  }
  // The way whose reads were the faster.
  int faster_way(double bytes) const { return way_bandwidth(bytes, 1) > way_bandwidth(bytes, 0) ? 1 : 0; }
  // Bytes per second of the faster way's reads.
  double read_bandwidth(double bytes) const { return way_bandwidth(bytes, faster_way(bytes)); }
  DecodeRun& operator+=(const DecodeRun& r) {
    tokens += r.tokens, seconds += r.seconds, sgemm_seconds += r.sgemm_seconds;
    for (int w = 0; w < 2; ++w) read_seconds[w] += r.read_seconds[w], reads[w] += r.reads[w];
    step_cpu += r.step_cpu, between_cpu += r.between_cpu, cpu_times = cpu_times && r.cpu_times;
    round_trips.insert(round_trips.end(), r.round_trips.begin(), r.round_trips.end());
    return *this;
  }
};
DecodeRun decode_run(model::Gpt2Model& model, int rows, int steps, int depth, MachineLimits& probe) {
  const auto& c = model.config();
  std::vector<std::unique_ptr<model::Sequence>> seqs;
  std::vector<model::BatchEntry> batch;
  std::vector<int32_t> tokens(static_cast<size_t>(rows));
  std::vector<float> logits;
  for (int i = 0; i < rows; ++i) {
    seqs.push_back(model.new_sequence());
    auto prompt = random_tokens(depth, c.vocab_size, 3 + static_cast<uint32_t>(i));
    model::BatchEntry e{seqs.back().get(), prompt};
    logits.clear();
    model.forward(std::span(&e, 1), &logits);
    batch.push_back({seqs.back().get(), std::span(&tokens[static_cast<size_t>(i)], 1)});
  }
  DecodeRun run;
  auto before = read_cpu_times();  // then each step's reading after its reads: one /proc/stat read less
  for (int s = 0; s < steps; ++s) {
    for (int i = 0; i < rows; ++i) tokens[static_cast<size_t>(i)] = (s * 31 + i * 7 + 1) % c.vocab_size;
    logits.clear();
    const auto start = SteadyClock::now();
    model.forward(batch, &logits);
    run.seconds += seconds_since(start);
    const auto stepped = read_cpu_times();
    run.read_seconds[s % 2] += probe.timed_read(model.pool(), kReadWays[s % 2]);
    ++run.reads[s % 2];
    if (model.pool().size() > 1)
      run.round_trips.push_back(MachineLimits::timed_round_trip(model.pool(), kRoundTrips));
    if (rows > 1) run.sgemm_seconds += probe.timed_sgemm(model.pool());
    const auto after = read_cpu_times();
    if (before && stepped && after) {
      run.step_cpu += *stepped - *before;
      run.between_cpu += *after - *stepped;
    } else {
      run.cpu_times = false;
    }
    before = after;
  }
  run.tokens = static_cast<double>(rows) * steps;
  return run;
}
}  // namespace

std::vector<int> sorted_decode_depths(std::vector<int> depths) {
  if (depths.empty()) throw invalid_argument("no decode depth given");
  std::sort(depths.begin(), depths.end());
  if (depths.front() < 1)
    throw invalid_argument("a decode depth must be at least 1 token (got " + std::to_string(depths.front()) +
                           ")");
  if (auto twice = std::adjacent_find(depths.begin(), depths.end()); twice != depths.end())
    throw invalid_argument("decode depth " + std::to_string(*twice) + " is given twice");
  return depths;
}

ModelBenchReport run_model_bench(const ModelBenchOptions& options, MachineLimits& limits) {
  if (options.rounds < 1) throw invalid_argument("rounds must be at least 1");
  if (limits.threads() != options.threads)
    throw invalid_argument("the machine's limits are read on " + std::to_string(limits.threads()) +
                           " threads, the run's on " + std::to_string(options.threads));
  ModelBenchReport report;
  model::ModelOptions mo;
  mo.threads = options.threads;
  mo.dtype = options.dtype;
  mo.kv_cache_dtype = options.kv_cache_dtype;
  mo.converted_cache_dir = options.converted_cache_dir;
  // Cache positions a decode test's `rows` sequences hold at most (whole blocks each).
  auto decode_tokens = [](int rows, int depth, int steps) {
    return int64_t{rows} * (int64_t{depth} + steps + model::KvCache::kBlockTokens);
  };
  // The shallowest first: the report's bandwidth is its tests'.
  const std::vector<int> depths = sorted_decode_depths(options.decode_depths);
  const int max_depth = depths.back();
  // A cache budget for the largest test (one test's sequences at a time; blocks are allocated as used):
  // the default, 8 contexts' worth, is smaller than 32 sequences of a long decode test on a short model.
  mo.kv_cache_tokens = decode_tokens(1, max_depth, options.decode_tokens);
  for (int n : options.prompt_lengths) mo.kv_cache_tokens = std::max<int64_t>(mo.kv_cache_tokens, n);
  for (int b : options.batch_sizes)
    mo.kv_cache_tokens = std::max(mo.kv_cache_tokens, decode_tokens(b, max_depth, options.batch_steps));
  auto model = model::Gpt2Model::load(options.model, mo);
  const auto& c = model->config();
  const bool decode_tests =
      options.decode_tokens > 0 || std::any_of(options.batch_sizes.begin(), options.batch_sizes.end(),
                                               [&](int b) { return b > 0 && options.batch_steps > 0; });
  if (decode_tests && max_depth >= c.n_ctx)
    throw invalid_argument("decode depth " + std::to_string(max_depth) +
                           " leaves no room for a step in the model's " + std::to_string(c.n_ctx) +
                           " positions");
  const double C = c.n_embd;
  const double layers = 2.0 * c.n_layer * (12.0 * C * C), lm_head = 2.0 * c.vocab_size * C;
  report.flops_per_token = layers + lm_head;
  // Attention's FLOP for tokens at positions [p0, p1) (position p attends to p + 1 positions, each a
  // query-key and a weight-value product of C multiply-adds), per token.
  auto attention = [&](int p0, int p1) {
    const double positions = (static_cast<double>(p1) * (p1 + 1) - static_cast<double>(p0) * (p0 + 1)) / 2;
    return c.n_layer * 4.0 * C * positions / (p1 - p0);
  };
  report.dtype = model::dtype_flag_name(model->weights().dtype());
  report.kv_cache_dtype = model::dtype_flag_name(model->kv_cache().dtype());
  report.weight_bytes = static_cast<double>(model->weights().decode_bytes());  // matrices, biases, norms
  // Bytes of one cached position's keys and values over all layers, in the cache's type: what attention
  // reads per position a token attends to.
  report.kv_cache_bytes_per_position =
      static_cast<double>(model->kv_cache().block_bytes()) / model::KvCache::kBlockTokens;
  report.rounds = options.rounds;
  report.isa = model::isa_name(model::kernels().isa);
  limits.set_read_bytes(size_t{2} << 30);
  report.dram_bandwidth_bytes_per_s = limits.read_bandwidth(3);
  limits.set_read_bytes(static_cast<size_t>(report.weight_bytes));

  // Each figure's test, in the order they are reported; a round runs each once. A test's limit is the
  // lower of its two: `rows` tokens per step at the read bandwidth, a step reading the weights once and
  // each of its `rows` sequences' cached keys and values (decode; 0 for prompt processing, which reads the
  // weights once for hundreds of tokens), and the matrix-multiply rate over the FLOP per token.
  //
  // A decode test's bandwidth is its own: the weights-sized buffer read once after each of its steps, on
  // the model's threads, timed apart from the steps; its figure and that bandwidth are the totals of all
  // rounds (tokens over the steps' seconds, bytes over the reads' seconds). On this shared machine the
  // bandwidth given moves between ~35 and ~75 GB/s within seconds, and a limit measured in other moments
  // than its test is off by as much: a best over passes of one read (a few milliseconds, what cortex bench
  // first used) is above what any test of hundreds of milliseconds averages, and passes as long as the
  // test, run before it, still set it beside other seconds than its own (single-stream fractions of 65 to
  // 134 % in runs minutes apart). Read between the steps, the buffer is read in the test's own moments,
  // and totals over the rounds do not pick the one in which the test (or the reads) got lucky: each
  // round's own fraction still moved by ±10 %. The reads (and products) leave the caches cold for every
  // step: for 124M that costs little, its weights being far beyond the last-level cache anyway, but a
  // model whose weights fit there is measured as if they did not. A batched decode test's
  // matrix-multiply rate is its own too, an sgemm product after each step (set against the best of the
  // rounds' products, the totals of batch32 read 53-63 % where the best of its rounds had read 62-74 %).
  // Prompt tests (a few hundred milliseconds each, no steps to interleave) and the matrix-multiply rate
  // beside them are the best of the rounds.
  struct Test {
    std::string name;
    int rows = 0;   // sequences per decode step; 0 for prompt processing
    int depth = 0;  // decode: the prompt's tokens before the first step
    double flops_per_token = 0;
    std::function<double()> prompt;  // prompt processing's tok/s
    int steps = 0;                   // decode steps per round
    double cache_bytes = 0;          // decode: KV cache bytes a sequence's step reads, on average
    double best = 0;                 // prompt processing: the best round's tok/s
    DecodeRun total;                 // decode: all rounds together
    std::vector<DecodeRun> rounds;   // decode: each round's
  };
  std::vector<Test> tests;
  int64_t cache_tokens = 0;  // positions the tests hold at most (their steps fitted to the context)
  auto add = [&](std::string name, int rows, double flops_per_token, std::function<double()> prompt,
                 int steps, int depth) {
    Test t;
    t.name = std::move(name);
    t.rows = rows;
    t.depth = depth;
    t.flops_per_token = flops_per_token;
    t.prompt = std::move(prompt);
    t.steps = steps;
    // A decode step at position p attends to p + 1 positions; the steps' positions run from the prompt's
    // end, depth, to depth + steps - 1: depth + (steps + 1) / 2 on average.
    if (rows > 0) {
      t.cache_bytes = report.kv_cache_bytes_per_position * (depth + (steps + 1) / 2.0);
      cache_tokens = std::max(cache_tokens, decode_tokens(rows, depth, steps));
    }
    tests.push_back(std::move(t));
  };
  for (int n : options.prompt_lengths)
    if (n > 0 && n <= c.n_ctx) {
      cache_tokens = std::max<int64_t>(cache_tokens, n);
      add(
          "pp" + std::to_string(n), 0, layers + lm_head / n + attention(0, n),
          [&, n] { return prompt_rate(*model, n); }, 0, 0);
    }
  // Per depth, the single-stream test and then the batched ones, their steps fitted to the context.
  // A sequence holds n_ctx positions: after a prompt of `depth` tokens, n_ctx - depth steps at most.
  for (int depth : depths) {
    const std::string suffix =
        depth == ModelBenchOptions::kDefaultDecodeDepth ? "" : "@d" + std::to_string(depth);
    const int decode_steps = std::min(options.decode_tokens, c.n_ctx - depth);
    if (decode_steps > 0)
      add("tg" + std::to_string(decode_steps) + suffix, 1,
          report.flops_per_token + attention(depth, depth + decode_steps), nullptr, decode_steps, depth);
    const int batch_steps = std::min(options.batch_steps, c.n_ctx - depth);
    for (int b : options.batch_sizes)
      if (b > 0 && batch_steps > 0)
        add("batch" + std::to_string(b) + suffix, b,
            report.flops_per_token + attention(depth, depth + batch_steps), nullptr, batch_steps, depth);
  }

  // The cache's pages written once now: a decode test's first round would otherwise also time the system
  // faulting in each new block's pages (on this VM, batch32's first round of F32 took ~1.9× as long as
  // the next ones).
  model->kv_cache().preallocate(cache_tokens);

  const bool prompt_tests =
      std::any_of(tests.begin(), tests.end(), [](const Test& t) { return t.rows == 0; });
  const double buffer = static_cast<double>(limits.buffer_bytes());
  for (int round = 0; round < options.rounds; ++round) {
    // The best single read, at the start and end of each round: reported beside the decode tests'
    // bandwidth, and the bandwidth figure of a run without decode tests (which no bandwidth limit bounds).
    report.peak_bandwidth_bytes_per_s = std::max(report.peak_bandwidth_bytes_per_s, limits.read_bandwidth(3));
    for (Test& t : tests) {
      if (t.rows == 0) {
        t.best = std::max(t.best, t.prompt());
        report.sgemm_flops = std::max(report.sgemm_flops, limits.sgemm_flops(3));
      } else {
        const DecodeRun r = decode_run(*model, t.rows, t.steps, t.depth, limits);
        t.rounds.push_back(r);
        t.total += r;
      }
    }
    // Without prompt tests, once per round: the single-stream test's compute limit (far above its
    // bandwidth limit).
    if (!prompt_tests) report.sgemm_flops = std::max(report.sgemm_flops, limits.sgemm_flops(3));
    report.peak_bandwidth_bytes_per_s = std::max(report.peak_bandwidth_bytes_per_s, limits.read_bandwidth(3));
  }
  // A decode test's bandwidth: the reads between its steps, all rounds together, the faster way's.
  auto read_bandwidth = [&](const Test& t) { return t.total.read_bandwidth(buffer); };
  // Its lowest round: each round's reads the way that was faster over all of them, as the test's
  // bandwidth is; a round's faster way could read faster than that bandwidth (each way fast in another
  // round), and the lowest round above the whole.
  auto min_read_bandwidth = [&](const Test& t) {
    const int way = t.total.faster_way(buffer);
    double lowest = 0;
    for (const DecodeRun& r : t.rounds)
      if (r.reads[way] > 0) {
        const double b = r.way_bandwidth(buffer, way);
        lowest = lowest == 0 ? b : std::min(lowest, b);
      }
    return lowest;
  };
  // The report's bandwidth: the first decode test's (the single-stream test's, else the first batched
  // one's); without decode tests, the best single read.
  report.bandwidth_bytes_per_s = report.min_bandwidth_bytes_per_s = report.peak_bandwidth_bytes_per_s;
  report.bandwidth_reads = 0;
  for (const Test& t : tests)
    if (t.rows > 0) {
      report.bandwidth_bytes_per_s = read_bandwidth(t);
      report.min_bandwidth_bytes_per_s = min_read_bandwidth(t);
      report.bandwidth_reads = t.steps;
      report.bandwidth_test = t.name;
      break;
    }
  for (const Test& t : tests) {
    const double flop_limit = report.sgemm_flops / t.flops_per_token;
    if (t.rows == 0) {
      report.figures.push_back(
          {t.name, 0, t.best, flop_limit, "compute", t.flops_per_token, 0, report.sgemm_flops});
      continue;
    }
    const double bandwidth = read_bandwidth(t);
    // A step reads the weights once and each sequence's cached keys and values.
    const double step_bytes = report.weight_bytes + t.rows * t.cache_bytes;
    const double bw_limit = t.rows * bandwidth / step_bytes;
    // Several sequences: the sgemm products between the steps; one: the best of the rounds' (a single
    // stream's arithmetic is a tenth of what the bandwidth allows).
    const double flops = t.rows > 1
                             ? MachineLimits::sgemm_flop() * t.steps * options.rounds / t.total.sgemm_seconds
                             : report.sgemm_flops;
    const double step_flop_limit = flops / t.flops_per_token;
    const bool by_bandwidth = bw_limit < step_flop_limit;
    report.figures.push_back({t.name, t.depth, t.total.tokens / t.total.seconds,
                              by_bandwidth ? bw_limit : step_flop_limit,
                              by_bandwidth ? "bandwidth" : "compute", t.flops_per_token, bandwidth, flops,
                              t.rows > 1, t.rows * t.cache_bytes});
    if (!t.total.round_trips.empty()) {  // the median: a vCPU descheduled for a while lengthens a few
      std::vector<double> trips = t.total.round_trips;
      std::nth_element(trips.begin(), trips.begin() + static_cast<std::ptrdiff_t>(trips.size() / 2),
                       trips.end());
      report.figures.back().round_trip_seconds = trips[trips.size() / 2];
    }
    if (t.total.cpu_times) {
      report.figures.back().steal_in_steps = t.total.step_cpu.steal_share();
      report.figures.back().steal_between_steps = t.total.between_cpu.steal_share();
    }
  }
  const model::Gpt2Weights::InPlace in_place = model->weights().in_place();
  report.in_place_bytes = static_cast<double>(in_place.bytes);
  report.in_place_huge_page_bytes = static_cast<double>(in_place.huge_page_bytes);
  report.in_place_on_huge_pages = static_cast<double>(in_place.on_huge_pages);
  report.converted_bytes = static_cast<double>(model->weights().converted().bytes);
  report.converted_cache_file = model->weights().converted().cache_file;
  return report;
}

}  // namespace cortex::bench
