#include "model/kv_cache.h"

namespace cortex::model {

KvCache::KvCache(const Gpt2Config& config, int64_t max_tokens)
    : n_embd_(config.n_embd),
      block_floats_(static_cast<size_t>(config.n_layer) * 2 * kBlockTokens * config.n_embd),
      max_blocks_((max_tokens + kBlockTokens - 1) / kBlockTokens) {}

bool KvCache::reserve(KvSequence& seq, int new_length) {
  const size_t needed = static_cast<size_t>((new_length + kBlockTokens - 1) / kBlockTokens);
  if (needed <= seq.blocks.size()) return true;
  const size_t extra = needed - seq.blocks.size();
  const int64_t fresh = static_cast<int64_t>(extra) - static_cast<int64_t>(free_.size());
  if (fresh > 0 && blocks_allocated() + fresh > max_blocks_) return false;
  while (seq.blocks.size() < needed) {
    if (free_.empty()) {
      blocks_.push_back(std::make_unique<float[]>(block_floats_));
      free_.push_back(static_cast<int32_t>(blocks_.size() - 1));
    }
    seq.blocks.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void KvCache::release(KvSequence& seq) {
  for (int32_t b : seq.blocks) free_.push_back(b);
  seq.blocks.clear();
  seq.length = 0;
}

}  // namespace cortex::model
