// The key/value cache, allocated in blocks of kBlockTokens tokens on demand (paged): a sequence holds a
// list of block indices, so memory follows the tokens actually held rather than slots × context.
// Block layout: [n_layer][2 (key, value)][kBlockTokens][n_embd] values, stored as F32 or, to halve the
// cache's memory and the attention's reads, as F16 (keys and values rounded to IEEE half).
//
// Threading: reserve/release are called by the model's owner between forward passes (one thread);
// key()/value() may be called concurrently from kernel threads during a forward pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "model/gpt2_config.h"
#include "model/tensor.h"
#include "util/page_arena.h"

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

  // max_tokens bounds the memory the cache may allocate (rounded up to whole blocks). dtype: F32 or
  // F16 (throws invalid_argument for any other).
  KvCache(const Gpt2Config& config, int64_t max_tokens, DType dtype = DType::kF32);

  // Makes room for positions up to new_length; false (nothing allocated) when the budget is spent.
  bool reserve(KvSequence& seq, int new_length);
  // Returns every block of seq to the free list and resets it.
  void release(KvSequence& seq);
  // Allocates blocks until those of `tokens` positions exist (at most the budget) and writes every page of
  // them, so that sequences started later do not wait for the system to fault their pages in (on a VM,
  // first writes ran at a few hundred MB/s: ~0.7 s for 32 sequences of 81 positions of 124M). Returns the
  // blocks allocated now. A benchmark calls it before timing steps; a server may, to take that time at start.
  int64_t preallocate(int64_t tokens);

  DType dtype() const { return dtype_; }
  // Writes one position's key and value rows (n_embd floats each), converted to dtype(): columns [first,
  // first + count) of them (count < 0: to the end), so that threads may each store their heads' part.
  // Throws invalid_argument for columns outside the row or a position outside the reserved blocks.
  void store(const KvSequence& seq, int layer, int pos, const float* key, const float* value, int first = 0,
             int count = -1);
  // The key (value) row of one position as stored: n_embd floats (F32) or uint16_t halves (F16).
  const void* key(const KvSequence& seq, int layer, int pos) const { return slot(seq, layer, 0, pos); }
  const void* value(const KvSequence& seq, int layer, int pos) const { return slot(seq, layer, 1, pos); }

  int64_t blocks_in_use() const { return static_cast<int64_t>(blocks_.size() - free_.size()); }
  int64_t blocks_allocated() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t max_blocks() const { return max_blocks_; }
  size_t block_bytes() const { return block_values_ * value_bytes_; }

 private:
  // Allocates a block from the arena (its pages not yet written) into the free list; returns it.
  std::byte* add_free_block();
  std::byte* slot(const KvSequence& seq, int layer, int kv, int pos) const {
    std::byte* block = blocks_[static_cast<size_t>(seq.blocks[static_cast<size_t>(pos / kBlockTokens)])];
    return block + ((static_cast<size_t>(layer) * 2 + kv) * kBlockTokens + pos % kBlockTokens) * n_embd_ *
                       value_bytes_;
  }

  int n_embd_;
  DType dtype_;
  size_t value_bytes_;  // 4 (F32) or 2 (F16)
  size_t block_values_;
  int64_t max_blocks_;
  // Blocks come from an arena (2 MiB pages where the system allows, cache-line aligned rows: attention
  // reads every cached row of a sequence each step), allocated lazily, never more than max_blocks_; a
  // released block goes to free_ for the next sequence and is never returned to the system.
  PageArena arena_;
  std::vector<std::byte*> blocks_;
  std::vector<int32_t> free_;
};

}  // namespace cortex::model
