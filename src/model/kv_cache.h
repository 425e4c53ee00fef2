// The key/value cache, allocated in blocks of kBlockTokens tokens on demand (paged): a sequence holds a
// list of block indices, so memory follows the tokens actually held rather than slots × context.
// Block layout: [n_layer][2 (key, value)][kBlockTokens][n_embd] floats.
//
// Threading: reserve/release are called by the model's owner between forward passes (one thread);
// key()/value() may be called concurrently from kernel threads during a forward pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/gpt2_config.h"

namespace cortex::model {

class KvCache;

// One sequence's cache: which blocks it holds and how many positions are filled.
struct KvSequence {
  std::vector<int32_t> blocks;
  int length = 0;  // positions 0..length-1 hold keys and values
};

class KvCache {
 public:
  static constexpr int kBlockTokens = 16;

  // max_tokens bounds the memory the cache may allocate (rounded up to whole blocks).
  KvCache(const Gpt2Config& config, int64_t max_tokens);

  // Makes room for positions up to new_length; false (nothing allocated) when the budget is spent.
  bool reserve(KvSequence& seq, int new_length);
  // Returns every block of seq to the free list and resets it.
  void release(KvSequence& seq);

  float* key(const KvSequence& seq, int layer, int pos) { return slot(seq, layer, 0, pos); }
  float* value(const KvSequence& seq, int layer, int pos) { return slot(seq, layer, 1, pos); }

  int64_t blocks_in_use() const { return static_cast<int64_t>(blocks_.size() - free_.size()); }
  int64_t blocks_allocated() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t max_blocks() const { return max_blocks_; }
  size_t block_bytes() const { return block_floats_ * sizeof(float); }

 private:
  float* slot(const KvSequence& seq, int layer, int kv, int pos) {
    float* block = blocks_[seq.blocks[pos / kBlockTokens]].get();
    return block + ((static_cast<size_t>(layer) * 2 + kv) * kBlockTokens + pos % kBlockTokens) * n_embd_;
  }

  int n_embd_;
  size_t block_floats_;
  int64_t max_blocks_;
  std::vector<std::unique_ptr<float[]>> blocks_;  // allocated lazily, never more than max_blocks_
  std::vector<int32_t> free_;
};

}  // namespace cortex::model
