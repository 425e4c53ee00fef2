#include "model/gpt2_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <unordered_set>

#include "model/kernels.h"
#include "util/error.h"

namespace cortex::model {

Sequence::~Sequence() {
  model_->kv_cache_.release(kv_);
}

std::unique_ptr<Gpt2Model> Gpt2Model::load(const std::string& path, const ModelOptions& options) {
  return create(Gpt2Weights::load(path, options.dtype, options.converted_cache_dir), options);
}

DType default_kv_cache_dtype(const Gpt2Weights& weights) {
  return weights.dtype() == DType::kF32 ? DType::kF32 : DType::kF16;
}

std::unique_ptr<Gpt2Model> Gpt2Model::create(std::unique_ptr<Gpt2Weights> weights,
                                             const ModelOptions& options) {
  if (options.threads < 1) throw invalid_argument("threads must be at least 1");
  kernels();  // chooses the instruction set now: an unsupported CORTEX_ISA fails here, not mid-request
  return std::unique_ptr<Gpt2Model>(new Gpt2Model(std::move(weights), options));
}

Gpt2Model::Gpt2Model(std::unique_ptr<Gpt2Weights> weights, const ModelOptions& options)
    : weights_(std::move(weights)),
      pool_(options.threads),
      kv_cache_(weights_->config(),
                options.kv_cache_tokens > 0 ? options.kv_cache_tokens : int64_t{8} * weights_->config().n_ctx,
                options.kv_cache_dtype.value_or(default_kv_cache_dtype(*weights_))),
      step_barrier_(pool_.size()) {
  configure_blas_threads();
  // One-token steps as one fork (forward_one_token) where every matrix is stored [out, in].
  one_token_steps_ = !options.fork_per_product && pool_.size() > 1 && !weights_->lm_head.in_major;
  for (const LayerWeights& w : weights_->layers)
    for (const Linear* L : {&w.attn_qkv, &w.attn_proj, &w.mlp_fc, &w.mlp_proj})
      one_token_steps_ = one_token_steps_ && !L->in_major;
  const size_t threads = static_cast<size_t>(pool_.size());
  step_xn_.assign(threads, AlignedVector<float>(static_cast<size_t>(config().n_embd)));
  step_blocks_.resize(threads);
  step_split_.assign(threads, 1.f / static_cast<float>(threads));
  for (int i = 0; i < 4 * config().n_layer + 1; ++i) step_shares_.emplace_back(pool_.size());
  scores_.resize(static_cast<size_t>(pool_.size()),
                 AlignedVector<float>(static_cast<size_t>(std::max(kMaxAttentionGroup, kAttentionTileRows)) *
                                      config().n_ctx));
}

std::unique_ptr<Sequence> Gpt2Model::new_sequence() {
  return std::unique_ptr<Sequence>(new Sequence(this));
}

void Gpt2Model::forward(std::span<const BatchEntry> batch, std::vector<float>* logits) {
  const Gpt2Config& cfg = config();
  const int C = cfg.n_embd;
  // Validate everything before touching any state.
  int T = 0;
  int out_rows = 0;
  std::unordered_set<const Sequence*> seen;
  for (const BatchEntry& e : batch) {
    if (e.sequence == nullptr || e.sequence->model_ != this)
      throw invalid_argument("batch entry without a sequence of this model");
    if (!seen.insert(e.sequence).second) throw invalid_argument("a sequence appears twice in one batch");
    if (e.tokens.empty()) throw invalid_argument("a batch entry has no tokens");
    const int64_t end = int64_t{e.sequence->length()} + static_cast<int64_t>(e.tokens.size());
    if (end > cfg.n_ctx)
      throw invalid_argument("sequence of " + std::to_string(end) + " tokens exceeds the context length " +
                             std::to_string(cfg.n_ctx));
    for (int32_t t : e.tokens)
      if (t < 0 || t >= cfg.vocab_size)
        throw invalid_argument("token id " + std::to_string(t) + " is outside the vocabulary [0, " +
                               std::to_string(cfg.vocab_size) + ")");
    T += static_cast<int>(e.tokens.size());
    out_rows += e.all_logits ? static_cast<int>(e.tokens.size()) : 1;
  }
  if (T == 0) return;
  // Reserve cache blocks; roll back on failure so that no sequence changes.
  std::vector<size_t> old_blocks;
  for (const BatchEntry& e : batch) old_blocks.push_back(e.sequence->kv_.blocks.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    Sequence& s = *batch[i].sequence;
    if (!kv_cache_.reserve(s.kv_, s.length() + static_cast<int>(batch[i].tokens.size()))) {
      for (size_t j = 0; j <= i; ++j) {
        KvSequence& kv = batch[j].sequence->kv_;
        KvSequence extra;
        extra.blocks.assign(kv.blocks.begin() + static_cast<std::ptrdiff_t>(old_blocks[j]), kv.blocks.end());
        kv.blocks.resize(old_blocks[j]);
        kv_cache_.release(extra);
      }
      throw Error(ErrorCode::kResourceExhausted, "KV cache is full (" +
                                                     std::to_string(kv_cache_.max_blocks()) + " blocks of " +
                                                     std::to_string(KvCache::kBlockTokens) + " tokens)");
    }
  }

  const size_t TC = static_cast<size_t>(T) * C;
  x_.resize(TC), xn_.resize(TC), att_.resize(TC), qkv_.resize(3 * TC), hidden_.resize(4 * TC);
  // x[T, C] = wte[token] + wpe[position]
  {
    int row = 0;
    for (const BatchEntry& e : batch) {
      int pos = e.sequence->length();
      for (int32_t tok : e.tokens) {
        const float* pe = weights_->wpe + static_cast<size_t>(pos) * C;
        float* x = x_.data() + static_cast<size_t>(row) * C;
        weights_->token_embedding(tok, x);
        for (int i = 0; i < C; ++i) x[i] += pe[i];
        ++row, ++pos;
      }
    }
  }
  if (one_token_steps_ && T == 1) {
    const size_t offset = logits->size();
    logits->resize(offset + static_cast<size_t>(cfg.vocab_size));
    forward_one_token(batch[0].sequence->kv_, logits->data() + offset);
    batch[0].sequence->kv_.length += 1;
    return;
  }
  for (int l = 0; l < cfg.n_layer; ++l) {
    const LayerWeights& w = weights_->layers[static_cast<size_t>(l)];
    layernorm(xn_.data(), x_.data(), w.ln_1_weight, w.ln_1_bias, T);
    linear_forward(qkv_.data(), xn_.data(), w.attn_qkv, T, false, pool_);  // [T, 3C]
    attention(att_.data(), qkv_.data(), batch, l);                         // [T, C]
    linear_forward(x_.data(), att_.data(), w.attn_proj, T, true, pool_);   // x += proj(att)
    layernorm(xn_.data(), x_.data(), w.ln_2_weight, w.ln_2_bias, T);
    linear_forward(hidden_.data(), xn_.data(), w.mlp_fc, T, false, pool_, Activation::kGelu);  // [T, 4C]
    linear_forward(x_.data(), hidden_.data(), w.mlp_proj, T, true, pool_);  // x += proj(gelu(fc))
  }
  // Gather the rows that need logits, normalise them, project on the vocabulary.
  int gathered = 0;
  {
    int row = 0;
    for (const BatchEntry& e : batch) {
      const int n = static_cast<int>(e.tokens.size());
      const int first = e.all_logits ? row : row + n - 1;
      for (int r = first; r < row + n; ++r)
        std::memcpy(xn_.data() + static_cast<size_t>(gathered++) * C, x_.data() + static_cast<size_t>(r) * C,
                    C * sizeof(float));
      row += n;
    }
  }
  layernorm(xn_.data(), xn_.data(), weights_->ln_f_weight, weights_->ln_f_bias, gathered);
  const size_t offset = logits->size();
  logits->resize(offset + static_cast<size_t>(out_rows) * cfg.vocab_size);
  linear_forward(logits->data() + offset, xn_.data(), weights_->lm_head, out_rows, false, pool_);
  for (const BatchEntry& e : batch) e.sequence->kv_.length += static_cast<int>(e.tokens.size());
}

// One fork of the pool for the whole step, in place of a fork per product and per attention (61 for
// 124M): the threads go through the layers together, each product's pieces shared out and taken as
// linear_forward's are (ThreadPool::Shares, one per product, set before the fork), and meet at a barrier
// after each product and after attention. A barrier costs less than a fork and join: the threads are
// already running, and each starts the next product as soon as the last one arrives (cortex_linear_bench's
// sliced_read: ~4 % of the reading time at 2.6 MB per product and ~9 % at 0.65 MB, at ~80 GB/s). Each
// thread computes the LayerNorms into a buffer of its own, where the caller's did while the others
// waited, and stores its own heads' new keys and values before attending with them: a barrier fewer per
// layer than one thread storing them all, as fast within the noise (0.997× and 1.00× the step time in two
// comparisons). Every output column comes from the same kernels as with forks, so the logits are the
// same to the bit.
void Gpt2Model::forward_one_token(KvSequence& kv, float* logits) {
  const Gpt2Config& cfg = config();
  const int C = cfg.n_embd, H = cfg.n_head, D = cfg.head_dim(), threads = pool_.size();
  const float eps = cfg.layer_norm_epsilon, scale = 1.f / std::sqrt(static_cast<float>(D));
  std::vector<OneRowProduct> products;
  products.reserve(step_shares_.size());
  for (const LayerWeights& w : weights_->layers) {
    products.emplace_back(qkv_.data(), w.attn_qkv, false, Activation::kNone, threads, step_split_);
    products.emplace_back(x_.data(), w.attn_proj, true, Activation::kNone, threads, step_split_);
    products.emplace_back(hidden_.data(), w.mlp_fc, false, Activation::kGelu, threads, step_split_);
    products.emplace_back(x_.data(), w.mlp_proj, true, Activation::kNone, threads, step_split_);
  }
  products.emplace_back(logits, weights_->lm_head, false, Activation::kNone, threads, step_split_);
  for (size_t i = 0; i < products.size(); ++i)
    for (int t = 0; t < threads; ++t) step_shares_[i].set(t, static_cast<uint32_t>(products[i].pieces(t)));
  // Attention as attention() does it for one token: the heads in groups, group g on thread g % threads.
  const int groups = (H + kMaxAttentionGroup - 1) / kMaxAttentionGroup, per_group = (H + groups - 1) / groups;
  const int n = kv.length + 1;  // positions attended to
  std::vector<ThreadReading>& reading = step_reading_;
  reading.assign(static_cast<size_t>(threads), ThreadReading{});
  // Each thread's part of the step; returns early when the other thread's part threw.
  auto step = [&](int t) {
    float* xn = step_xn_[static_cast<size_t>(t)].data();
    ThreadReading& mine = reading[static_cast<size_t>(t)];
    auto product = [&](size_t i, const float* in) {
      uint8_t rounded = 0;
      const auto start = std::chrono::steady_clock::now();
      step_shares_[i].take_all(t, [&](int share, uint32_t piece) {
        mine.bytes += static_cast<double>(products[i].run(share, piece, in, &rounded));
      });
      mine.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    auto attend = [&]<class T>(int layer, std::vector<const T*>& blocks) {
      const CachedRows<T> rows = kv_cache_.rows(kv, layer, n, blocks);
      for (int g = t; g < groups; g += threads) {
        const int h0 = g * per_group, heads = std::min(per_group, H - h0);
        kv_cache_.store(kv, layer, kv.length, qkv_.data() + C, qkv_.data() + 2 * C, h0 * D, heads * D);
        attention_rows(att_.data(), static_cast<size_t>(C), qkv_.data(), 3 * static_cast<size_t>(C), 1, rows,
                       h0, heads, kv.length, D, scale, scores_[static_cast<size_t>(t)].data());
      }
    };
    for (int l = 0; l < cfg.n_layer; ++l) {
      const LayerWeights& w = weights_->layers[static_cast<size_t>(l)];
      const size_t first = 4 * static_cast<size_t>(l);
      layernorm_forward(xn, x_.data(), w.ln_1_weight, w.ln_1_bias, 1, C, eps);
      product(first, xn);                  // qkv
      if (!step_barrier_.wait(t)) return;  // the other thread's work threw
      if (kv_cache_.dtype() == DType::kF16)
        attend(l, step_blocks_[static_cast<size_t>(t)].f16);
      else
        attend(l, step_blocks_[static_cast<size_t>(t)].f32);
      if (!step_barrier_.wait(t)) return;
      product(first + 1, att_.data());  // x += proj(att)
      if (!step_barrier_.wait(t)) return;
      layernorm_forward(xn, x_.data(), w.ln_2_weight, w.ln_2_bias, 1, C, eps);
      product(first + 2, xn);  // gelu(fc)
      if (!step_barrier_.wait(t)) return;
      product(first + 3, hidden_.data());  // x += proj(gelu(fc))
      if (!step_barrier_.wait(t)) return;
    }
    layernorm_forward(xn, x_.data(), weights_->ln_f_weight, weights_->ln_f_bias, 1, C, eps);
    product(products.size() - 1, xn);  // the LM head; the fork's join is its barrier
  };
  step_barrier_.reset();
  pool_.run([&](int t) {
    try {
      step(t);
    } catch (...) {
      step_barrier_.abort();  // the others return at their next barrier; the pool rethrows this
      throw;
    }
  });
  update_step_split(reading);
}

void Gpt2Model::update_step_split(const std::vector<ThreadReading>& reading) {
  // Each thread's speed this step, as a fraction of all of theirs, moved into step_split_ by a fifth; no
  // share below half an equal one (a thread the system paused for a while reads nothing meanwhile).
  double total = 0;
  for (const ThreadReading& r : reading) {
    if (r.bytes <= 0 || r.seconds <= 0) return;
    total += r.bytes / r.seconds;
  }
  const float floor = 0.5f / static_cast<float>(reading.size());
  float sum = 0;
  for (size_t t = 0; t < reading.size(); ++t) {
    const float now = static_cast<float>(reading[t].bytes / reading[t].seconds / total);
    step_split_[t] = std::max(floor, 0.8f * step_split_[t] + 0.2f * now);
    sum += step_split_[t];
  }
  for (float& f : step_split_) f /= sum;
}

// LayerNorm of `rows` rows of C, the rows split across the pool.
void Gpt2Model::layernorm(float* out, const float* in, const float* weight, const float* bias, int rows) {
  const int C = config().n_embd;
  const float eps = config().layer_norm_epsilon;
  pool_.parallel_for(static_cast<size_t>(rows), [&](size_t r0, size_t r1) {
    layernorm_forward(out + r0 * C, in + r0 * C, weight, bias, static_cast<int>(r1 - r0), C, eps);
  });
}

// out[T, C]: causal self-attention of each new token over its sequence's cached keys and values.
// Writes this layer's keys and values for the new tokens into the cache first.
void Gpt2Model::attention(float* out, const float* qkv, std::span<const BatchEntry> batch, int layer) {
  const Gpt2Config& cfg = config();
  const int C = cfg.n_embd, H = cfg.n_head, D = cfg.head_dim();
  constexpr int kBlock = KvCache::kBlockTokens;
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  // A task: some heads of some of one entry's tokens. With many entries, a task takes all the heads, so
  // that one thread reads all of a sequence's cached rows (the kernel takes the heads in groups whose
  // queries and outputs fit in registers, one group after another); with few entries, the groups are
  // separate tasks so that every thread has work.
  const int groups = (H + kMaxAttentionGroup - 1) / kMaxAttentionGroup;
  const int per_group = batch.size() >= 4 * static_cast<size_t>(pool_.size()) ? H : (H + groups - 1) / groups;
  constexpr int kTokensPerTask = 32;
  struct Task {
    const BatchEntry* entry;
    int first_row;  // the entry's first row in qkv and out
    int t0, t1;     // its tokens [t0, t1)
    int h0, heads;
    size_t blocks;  // where the entry's key block pointers start in `blocks`; its value blocks follow
  };
  std::vector<Task> tasks;
  int row = 0;
  size_t block_count = 0;  // key and value block pointers of the entries so far
  for (const BatchEntry& e : batch) {
    KvSequence& kv = e.sequence->kv_;
    const int n = static_cast<int>(e.tokens.size());
    for (int t = 0; t < n; ++t) {
      const float* r = qkv + static_cast<size_t>(row + t) * 3 * C;
      kv_cache_.store(kv, layer, kv.length + t, r + C, r + 2 * C);
    }
    for (int t0 = 0; t0 < n; t0 += kTokensPerTask)
      for (int h0 = 0; h0 < H; h0 += per_group)
        tasks.push_back(
            {&e, row, t0, std::min(n, t0 + kTokensPerTask), h0, std::min(per_group, H - h0), block_count});
    block_count += 2 * static_cast<size_t>((kv.length + n + kBlock - 1) / kBlock);
    row += n;
  }
  // The tasks over the cache's rows stored as T (float or uint16_t halves).
  auto run = [&]<class T>() {
    // Per entry, in batch order, the first position of each cache block it reads, for keys and then for
    // values (where its tasks' `blocks` point).
    std::vector<const T*> blocks;
    blocks.reserve(block_count);
    for (const BatchEntry& e : batch) {
      const KvSequence& kv = e.sequence->kv_;
      kv_cache_.append_blocks(kv, layer, kv.length + static_cast<int>(e.tokens.size()), blocks);
    }
    pool_.run([&](int thread) {
      float* scores = scores_[static_cast<size_t>(thread)].data();
      for (size_t i = static_cast<size_t>(thread); i < tasks.size(); i += static_cast<size_t>(pool_.size())) {
        const Task& task = tasks[i];
        const KvSequence& kv = task.entry->sequence->kv_;
        const int n = static_cast<int>(task.entry->tokens.size());
        const CachedRows<T> rows = kv_cache_.rows_in(blocks.data() + task.blocks, kv.length + n);
        // The token at position kv.length + t attends to positions 0..kv.length + t.
        const size_t r = static_cast<size_t>(task.first_row + task.t0);
        attention_rows(out + r * C, static_cast<size_t>(C), qkv + r * 3 * C, 3 * static_cast<size_t>(C),
                       task.t1 - task.t0, rows, task.h0, task.heads, kv.length + task.t0, D, scale, scores);
      }
    });
  };
  if (kv_cache_.dtype() == DType::kF16)
    run.template operator()<uint16_t>();
  else
    run.template operator()<float>();
}

}  // namespace cortex::model
