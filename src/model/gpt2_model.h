// GPT-2 inference on the CPU: a forward pass over a batch of sequences, each at its own position, with
// a paged key/value cache. One call can mix prompt prefill (many tokens of one sequence) with decode
// steps (one token of many sequences): what continuous batching needs.
//
// Threading: forward() and sequence creation/destruction must come from one thread at a time (the
// owner, e.g. the scheduler's loop); the model parallelises each forward internally over its pool.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/gpt2_weights.h"
#include "model/kv_cache.h"
#include "util/aligned_vector.h"
#include "util/thread_pool.h"

namespace cortex::model {

struct ModelOptions {
  int threads = 2;              // compute threads, the caller included
  int64_t kv_cache_tokens = 0;  // cache budget in tokens across all sequences; 0 = 8 × context
  // Type of the weight matrices (parse_dtype() reads "f32|f16|q8_0"); nullopt keeps the file's type
  // (BF16 becomes F16).
  std::optional<DType> dtype;
  // Type of the KV cache's values: F32, or F16 for half the cache's memory and the attention's reads
  // (keys and values rounded to IEEE half); nullopt follows the weights (default_kv_cache_dtype).
  std::optional<DType> kv_cache_dtype = std::nullopt;
  // A single sequence's one-token steps (single-stream decode) run as one fork of the pool with its
  // threads meeting at a barrier between products (forward_one_token); true runs them as every other
  // step runs, a fork per product and per attention, to compare the two.
  bool fork_per_product = false;
  // Where weights converted on load (dtype other than the file's) are kept, to be mapped by every process
  // that loads the model in that type (Gpt2Weights::load); empty: converted in memory.
  std::string converted_cache_dir = {};
};

class Gpt2Model;

// The KV cache's type where none is asked for: F16 when the weights' matrices run in F16 or Q8_0
// (Gpt2Weights::dtype), whose rounding is already at least a half's (GGUF files of those types included),
// F32 when they run in F32. An F16 cache halves the memory a sequence's positions take and what attention
// reads per step; its logits stay within 1e-3 of an F32 cache's (relative to the largest).
DType default_kv_cache_dtype(const Gpt2Weights& weights);

// A sequence's state in the model (its KV cache). Releases its cache blocks when destroyed; must not
// outlive the model that created it.
class Sequence {
 public:
  ~Sequence();
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;
  int length() const { return kv_.length; }  // tokens processed so far

 private:
  friend class Gpt2Model;
  explicit Sequence(Gpt2Model* model) : model_(model) {}
  Gpt2Model* model_;
  KvSequence kv_;
};

// One sequence's part of a forward pass: tokens appended after its current length.
struct BatchEntry {
  Sequence* sequence = nullptr;
  std::span<const int32_t> tokens;
  bool all_logits = false;  // logits for every token (tests); otherwise only for the last one
};

class Gpt2Model {
 public:
  // Loads weights from a Hugging Face folder or GGUF file; throws Error naming the file.
  static std::unique_ptr<Gpt2Model> load(const std::string& path, const ModelOptions& options = {});
  static std::unique_ptr<Gpt2Model> create(std::unique_ptr<Gpt2Weights> weights, const ModelOptions& options);

  const Gpt2Config& config() const { return weights_->config(); }
  const Gpt2Weights& weights() const { return *weights_; }
  KvCache& kv_cache() { return kv_cache_; }
  // The threads the forward pass runs on. For a benchmark that interleaves its own work with every
  // forward pass: on a second pool, each switch would leave one pool's threads spinning (for up to a
  // quarter of a millisecond) against the other's.
  ThreadPool& pool() { return pool_; }

  std::unique_ptr<Sequence> new_sequence();

  // Runs the batch and appends logits rows to `logits` ([rows, vocab]): one row per entry (its last
  // token), or one per token for entries with all_logits. Throws invalid_argument when a token id is
  // out of range, a sequence would pass the context length, or a sequence appears twice; throws
  // Error(kResourceExhausted) when the KV cache budget is spent. On error no sequence changes.
  void forward(std::span<const BatchEntry> batch, std::vector<float>* logits);

 private:
  friend class Sequence;
  Gpt2Model(std::unique_ptr<Gpt2Weights> weights, const ModelOptions& options);
  void attention(float* out, const float* qkv, std::span<const BatchEntry> batch, int layer);
  // The layers and the LM head for one sequence's one new token (x_'s first row holds its embedding),
  // its logits into `logits`: one fork of the pool for the whole step, see the definition.
  void forward_one_token(KvSequence& kv, float* logits);
  // What one thread read in a step's products, and how long they took it.
  struct alignas(64) ThreadReading {
    double bytes = 0, seconds = 0;
  };
  // Moves step_split_ toward the threads' speeds in the step just run.
  void update_step_split(const std::vector<ThreadReading>& reading);
  void layernorm(float* out, const float* in, const float* weight, const float* bias, int rows);

  std::unique_ptr<Gpt2Weights> weights_;
  ThreadPool pool_;
  KvCache kv_cache_;
  // Scratch activations, resized per forward: x, xn [T, C]; qkv [T, 3C]; att [T, C]; hidden [T, 4C]; on
  // cache lines for the kernels' vector loads.
  AlignedVector<float> x_, xn_, qkv_, att_, hidden_;
  std::vector<AlignedVector<float>>
      scores_;  // per thread, [max(kMaxAttentionGroup, kAttentionTileRows), n_ctx]
  // forward_one_token's: one Shares per product of a step, the barrier between them, and per thread its
  // own LayerNorm output [C] and the cache blocks its attention reads.
  bool one_token_steps_ = false;  // whether one-token steps of one sequence go through forward_one_token
  std::vector<ThreadPool::Shares> step_shares_;
  SpinBarrier step_barrier_;
  std::vector<AlignedVector<float>> step_xn_;
  // Each thread's share of every product's rows, in proportion to how fast it read in the steps so far
  // (a moving average of fractions summing to 1): one of this machine's cores often reads ~15 % slower
  // than the other for seconds at a time, and the other then waited for it at every barrier.
  std::vector<float> step_split_;
  std::vector<ThreadReading> step_reading_;  // the step's, for step_split_
  struct CacheBlocks {  // where each block of positions starts, keys then values, as the cache holds them
    std::vector<const float*> f32;
    std::vector<const uint16_t*> f16;
  };
  std::vector<CacheBlocks> step_blocks_;
};

}  // namespace cortex::model
