#include "model/kv_cache.h"

#include <algorithm>
#include <string>

#include "model/half.h"
#include "model/kernel_table.h"
#include "util/error.h"

namespace cortex::model {

namespace {
DType checked(DType t) {
  if (t != DType::kF32 && t != DType::kF16)
    throw invalid_argument(std::string("the KV cache holds f32 or f16 values, not ") + dtype_name(t));
  return t;
}
}  // namespace

KvCache::KvCache(const Gpt2Config& config, int64_t max_tokens, DType dtype)
    : n_embd_(config.n_embd),
      head_dim_(config.head_dim()),
      dtype_(checked(dtype)),
      value_bytes_(dtype == DType::kF16 ? 2 : 4),
      block_values_(static_cast<size_t>(config.n_layer) * 2 * kBlockTokens * config.n_embd),
      max_blocks_((max_tokens + kBlockTokens - 1) / kBlockTokens) {}

void KvCache::store(const KvSequence& seq, int layer, int pos, const float* key, const float* value,
                    int first, int count) {
  if (count < 0) count = n_embd_ - first;
  if (first < 0 || count < 0 || first > n_embd_ - count)
    throw invalid_argument("KV cache: columns [" + std::to_string(first) + ", " + std::to_string(first) +
                           " + " + std::to_string(count) + ") are not within a row of " +
                           std::to_string(n_embd_));
  if (pos < 0 || static_cast<size_t>(pos / kBlockTokens) >= seq.blocks.size())
    throw invalid_argument("KV cache: position " + std::to_string(pos) + " is not reserved (" +
                           std::to_string(seq.blocks.size() * kBlockTokens) + " positions are)");
  std::byte* const parts[2] = {part(seq, layer, 0, pos), part(seq, layer, 1, pos)};
  const float* const rows[2] = {key, value};
  const KernelTable& kt = kernels();
  // Head by head: each head's columns in [first, first + count) lie together in its row at pos.
  for (int c = first, end = first + count; c < end;) {
    const int run = std::min(end, (c / head_dim_ + 1) * head_dim_) - c;
    for (int kv = 0; kv < 2; ++kv) {
      std::byte* to = parts[kv] + value_index(pos, c) * value_bytes_;
      if (dtype_ == DType::kF16)
        kt.narrow_to_f16(reinterpret_cast<uint16_t*>(to), rows[kv] + c, run);
      else
        std::memcpy(to, rows[kv] + c, static_cast<size_t>(run) * sizeof(float));
    }
    c += run;
  }
}

float KvCache::stored(const KvSequence& seq, int layer, int kv, int pos, int column) const {
  if (column < 0 || column >= n_embd_ || pos < 0 ||
      static_cast<size_t>(pos / kBlockTokens) >= seq.blocks.size())
    throw invalid_argument("KV cache: no column " + std::to_string(column) + " at position " +
                           std::to_string(pos));
  const std::byte* at = part(seq, layer, kv, pos) + value_index(pos, column) * value_bytes_;
  if (dtype_ == DType::kF32) {
    float f;
    std::memcpy(&f, at, sizeof f);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, at, sizeof h);
  return fp16_to_fp32(h);
}

void KvCache::throw_wrong_value_type() const {
  throw invalid_argument(std::string("KV cache: its rows are ") + dtype_name(dtype_) +
                         ", read as another type");
}

bool KvCache::reserve(KvSequence& seq, int new_length) {
  const size_t needed = static_cast<size_t>((new_length + kBlockTokens - 1) / kBlockTokens);
  if (needed <= seq.blocks.size()) return true;
  const size_t extra = needed - seq.blocks.size();
  const int64_t fresh = static_cast<int64_t>(extra) - static_cast<int64_t>(free_.size());
  if (fresh > 0 && blocks_allocated() + fresh > max_blocks_) return false;
  while (seq.blocks.size() < needed) {
    if (free_.empty()) add_free_block();
    seq.blocks.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

int64_t KvCache::preallocate(int64_t tokens) {
  const int64_t target = std::min(max_blocks_, (tokens + kBlockTokens - 1) / kBlockTokens);
  int64_t added = 0;
  for (; blocks_allocated() < target; ++added) std::memset(add_free_block(), 0, block_bytes());
  return added;
}

std::byte* KvCache::add_free_block() {
  blocks_.push_back(static_cast<std::byte*>(arena_.allocate(block_bytes())));
  free_.push_back(static_cast<int32_t>(blocks_.size() - 1));
  return blocks_.back();
}

void KvCache::release(KvSequence& seq) {
  for (int32_t b : seq.blocks) free_.push_back(b);
  seq.blocks.clear();
  seq.length = 0;
}

}  // namespace cortex::model
