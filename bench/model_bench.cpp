#include "bench/model_bench.h"

#include <random>

#include "bench/machine_limits.h"
#include "model/gpt2_model.h"
#include "model/weight_types.h"
#include "util/clock.h"

namespace cortex::bench {

namespace {
std::vector<int32_t> random_tokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab - 1));
  return t;
}
}  // namespace

ModelBenchReport run_model_bench(const ModelBenchOptions& options) {
  ModelBenchReport report;
  model::ModelOptions mo;
  mo.threads = options.threads;
  mo.dtype = options.dtype;
  int max_batch = 1;
  for (int b : options.batch_sizes) max_batch = std::max(max_batch, b);
  auto model = model::Gpt2Model::load(options.model, mo);
  const auto& c = model->config();
  const double C = c.n_embd;
  const double dense = c.n_layer * (12.0 * C * C) + static_cast<double>(c.vocab_size) * C;
  report.flops_per_token = 2.0 * dense;
  report.dtype = model::dtype_flag_name(model->weights().dtype());
  report.weight_bytes = static_cast<double>(model->weights().decode_bytes());  // matrices, biases, norms
  report.bandwidth_bytes_per_s =
      measure_read_bandwidth(options.threads, static_cast<size_t>(report.weight_bytes));
  report.dram_bandwidth_bytes_per_s = measure_read_bandwidth(options.threads, size_t{2} << 30);
  report.sgemm_flops = measure_sgemm_flops(options.threads);
  const double bw_limit = report.bandwidth_bytes_per_s / report.weight_bytes;
  const double flop_limit = report.sgemm_flops / report.flops_per_token;

  std::vector<float> logits;
  for (int n : options.prompt_lengths) {
    if (n > c.n_ctx) continue;
    auto tokens = random_tokens(n, c.vocab_size, 1);
    double best = 1e30;
    for (int rep = 0; rep < 2; ++rep) {
      auto seq = model->new_sequence();
      model::BatchEntry e{seq.get(), tokens};
      logits.clear();
      auto start = SteadyClock::now();
      model->forward(std::span(&e, 1), &logits);
      best = std::min(best, seconds_since(start));
    }
    report.figures.push_back({"pp" + std::to_string(n), n / best, flop_limit, "compute"});
  }
  {
    auto seq = model->new_sequence();
    auto prompt = random_tokens(16, c.vocab_size, 2);
    model::BatchEntry e{seq.get(), prompt};
    model->forward(std::span(&e, 1), &logits);
    int32_t token = 0;
    const int steps = std::min(options.decode_tokens, c.n_ctx - 17);
    auto start = SteadyClock::now();
    for (int i = 0; i < steps; ++i) {
      logits.clear();
      e.tokens = std::span(&token, 1);
      model->forward(std::span(&e, 1), &logits);
      token = (token + 7919) % c.vocab_size;
    }
    report.figures.push_back(
        {"tg" + std::to_string(steps), steps / seconds_since(start), bw_limit, "bandwidth"});
  }
  for (int b : options.batch_sizes) {
    std::vector<std::unique_ptr<model::Sequence>> seqs;
    std::vector<model::BatchEntry> batch;
    std::vector<int32_t> tokens(static_cast<size_t>(b));
    for (int i = 0; i < b; ++i) {
      seqs.push_back(model->new_sequence());
      auto prompt = random_tokens(16, c.vocab_size, 3 + static_cast<uint32_t>(i));
      model::BatchEntry e{seqs.back().get(), prompt};
      logits.clear();
      model->forward(std::span(&e, 1), &logits);
      batch.push_back({seqs.back().get(), std::span(&tokens[static_cast<size_t>(i)], 1)});
    }
    const int steps = std::min(options.batch_steps, c.n_ctx - 17);
    auto start = SteadyClock::now();
    for (int s = 0; s < steps; ++s) {
      for (int i = 0; i < b; ++i) tokens[static_cast<size_t>(i)] = (s * 31 + i * 7) % c.vocab_size;
      logits.clear();
      model->forward(batch, &logits);
    }
    const double tps = static_cast<double>(b) * steps / seconds_since(start);
    report.figures.push_back({"batch" + std::to_string(b), tps, flop_limit, "compute"});
  }
  return report;
}

}  // namespace cortex::bench
