#include "model/warm_up.h"

#include <algorithm>
#include <vector>

#include "model/kernel_table.h"
#include "model/kv_cache.h"
#include "util/clock.h"

namespace cortex::model {

WarmUpReport warm_up(Gpt2Model& model, int batch) {
  const auto start = SteadyClock::now();
  const Gpt2Config& cfg = model.config();
  const KvCache& cache = model.kv_cache();
  constexpr int kBlock = KvCache::kBlockTokens;
  const auto free_tokens = [&] { return (cache.max_blocks() - cache.blocks_in_use()) * kBlock; };
  WarmUpReport report;
  std::vector<float> logits;
  const auto tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(i % cfg.vocab_size);
    return t;
  };
  // One sequence: a prompt past the rows the small-batch kernels take (so that sgemm runs), then two
  // one-token steps.
  constexpr int kSteps = 2;
  const int64_t prompt =
      std::min<int64_t>({kernels().small_batch_prompt_rows + 1, cfg.n_ctx - kSteps, free_tokens() - kSteps});
  if (prompt > 0) {
    auto sequence = model.new_sequence();
    const std::vector<int32_t> ids = tokens(static_cast<int>(prompt) + kSteps);
    BatchEntry entry{sequence.get(), std::span<const int32_t>(ids.data(), static_cast<size_t>(prompt)),
                     false};
    model.forward({&entry, 1}, &logits);
    for (int s = 0; s < kSteps; ++s) {
      entry.tokens = std::span<const int32_t>(ids.data() + prompt + s, 1);
      logits.clear();
      model.forward({&entry, 1}, &logits);
    }
    report.prompt_tokens = static_cast<int>(prompt);
  }
  // Batches of 2, 4, 8, ... and then `batch` sequences (the products take other kernels at other row
  // counts): each sequence takes one token (a block of the cache apiece), then a step of them all.
  const int most = static_cast<int>(std::min<int64_t>(batch, free_tokens() / kBlock));
  for (int n = 2; n <= most && cfg.n_ctx > 1; n = n == most ? most + 1 : std::min(2 * n, most)) {
    std::vector<std::unique_ptr<Sequence>> sequences;
    std::vector<BatchEntry> entries;
    const std::vector<int32_t> ids = tokens(2 * n);
    for (int i = 0; i < n; ++i) {
      sequences.push_back(model.new_sequence());
      entries.push_back({sequences.back().get(), {}, false});
    }
    for (int s = 0; s < 2; ++s) {
      for (int i = 0; i < n; ++i)
        entries[static_cast<size_t>(i)].tokens = std::span<const int32_t>(ids.data() + 2 * i + s, 1);
      logits.clear();
      model.forward(entries, &logits);
    }
    report.batch_sequences = n;
  }
  report.seconds = seconds_since(start);
  return report;
}

}  // namespace cortex::model
