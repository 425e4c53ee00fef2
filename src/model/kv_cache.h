// The key/value cache, allocated in blocks of kBlockTokens tokens on demand (paged): a sequence holds a
// list of block indices, so memory follows the tokens actually held rather than slots × context.
// Block layout: [n_layer][2 (key, value)][n_head][kBlockTokens][head_dim] values, stored as F32 or, to halve
// the cache's memory and the attention's reads, as F16 (keys and values rounded to IEEE half). A head's rows
// for the block's positions lie together, so that a thread attending with some of the heads reads one run
// of memory per block (a position's whole row, all heads, lay together until 2026-12-05:
// docs/performance.md says what the change did).
//
// Threading: reserve/release are called by the model's owner between forward passes (one thread);
// rows(), key_at()/value_at() and store() of distinct columns may be called concurrently from kernel
// threads during a forward pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "model/gpt2_config.h"
#include "model/kernel_table.h"
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
  // Positions per block. With 64 (16 until 2026-12-05), a thread attending with six heads of GPT-2 124M
  // reads runs of 6 × 64 × 64 values per block, which the hardware prefetchers follow: a Q8_0 decode
  // step at 880 positions took 0.92× the time of 16-token blocks (docs/performance.md). A sequence's
  // cache grows a block at a time: 2.4 MB of an F16 cache of 124M, 4.7 MB of an F32 one.
  static constexpr int kBlockTokens = 64;

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
  // Writes one position's key and value rows (n_embd floats each, head after head), converted to dtype():
  // columns [first, first + count) of them (count < 0: to the end), so that threads may each store their
  // heads' part. Throws invalid_argument for columns outside the row or a position outside the reserved
  // blocks.
  void store(const KvSequence& seq, int layer, int pos, const float* key, const float* value, int first = 0,
             int count = -1);
  // One layer of seq's cached rows as attention reads them (kernel_table.h), positions 0 .. n - 1 (n at
  // most the reserved positions), T float for an F32 cache and uint16_t for an F16 one (another T throws
  // invalid_argument). `blocks` receives the block pointers the result points into (keys, then values);
  // it must outlive the result's use.
  template <class T>
  CachedRows<T> rows(const KvSequence& seq, int layer, int n, std::vector<const T*>& blocks) const {
    blocks.clear();
    append_blocks(seq, layer, n, blocks);
    return rows_in(blocks.data(), n);
  }
  // Appends the block pointers of rows(seq, layer, n, ...) to `blocks` (to gather several sequences'
  // pointers in one vector); rows_in(p, n) is then the layer's rows for p pointing at the first appended.
  template <class T>
  void append_blocks(const KvSequence& seq, int layer, int n, std::vector<const T*>& blocks) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, uint16_t>);
    if (sizeof(T) != value_bytes_) throw_wrong_value_type();
    for (int kv = 0; kv < 2; ++kv)
      for (int p = 0; p < n; p += kBlockTokens)
        blocks.push_back(reinterpret_cast<const T*>(part(seq, layer, kv, p)));
  }
  template <class T>
  CachedRows<T> rows_in(const T* const* blocks, int n) const {
    return {blocks, blocks + (n + kBlockTokens - 1) / kBlockTokens, kBlockTokens,
            static_cast<size_t>(head_dim_), static_cast<size_t>(kBlockTokens) * head_dim_};
  }
  // Column `column` of position pos's key (value) row as stored, widened to float: what store() wrote
  // there, rounded to dtype().
  float key_at(const KvSequence& seq, int layer, int pos, int column) const {
    return stored(seq, layer, 0, pos, column);
  }
  float value_at(const KvSequence& seq, int layer, int pos, int column) const {
    return stored(seq, layer, 1, pos, column);
  }

  int64_t blocks_in_use() const { return static_cast<int64_t>(blocks_.size() - free_.size()); }
  int64_t blocks_allocated() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t max_blocks() const { return max_blocks_; }
  size_t block_bytes() const { return block_values_ * value_bytes_; }

 private:
  // Allocates a block from the arena (its pages not yet written) into the free list; returns it.
  std::byte* add_free_block();
  // The part of pos's block that holds layer's keys (kv 0) or values (kv 1):
  // [n_head][kBlockTokens][head_dim].
  std::byte* part(const KvSequence& seq, int layer, int kv, int pos) const {
    std::byte* block = blocks_[static_cast<size_t>(seq.blocks[static_cast<size_t>(pos / kBlockTokens)])];
    return block + (static_cast<size_t>(layer) * 2 + kv) * kBlockTokens * n_embd_ * value_bytes_;
  }
  // Where column c of pos's row lies in its part: head c / head_dim's row at pos, value c % head_dim.
  size_t value_index(int pos, int c) const {
    return (static_cast<size_t>(c / head_dim_) * kBlockTokens + pos % kBlockTokens) * head_dim_ +
           c % head_dim_;
  }
  float stored(const KvSequence& seq, int layer, int kv, int pos, int column) const;
  [[noreturn]] void throw_wrong_value_type() const;

  int n_embd_;
  int head_dim_;
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
