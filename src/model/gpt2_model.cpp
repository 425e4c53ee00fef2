#include "model/gpt2_model.h"

#include <algorithm>
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
  return create(Gpt2Weights::load(path), options);
}

std::unique_ptr<Gpt2Model> Gpt2Model::create(std::unique_ptr<Gpt2Weights> weights,
                                             const ModelOptions& options) {
  if (options.threads < 1) throw invalid_argument("threads must be at least 1");
  return std::unique_ptr<Gpt2Model>(new Gpt2Model(std::move(weights), options));
}

Gpt2Model::Gpt2Model(std::unique_ptr<Gpt2Weights> weights, const ModelOptions& options)
    : weights_(std::move(weights)),
      pool_(options.threads),
      kv_cache_(weights_->config(), options.kv_cache_tokens > 0 ? options.kv_cache_tokens
                                                                : int64_t{8} * weights_->config().n_ctx) {
  configure_blas_threads();
  scores_.resize(static_cast<size_t>(pool_.size()), std::vector<float>(static_cast<size_t>(config().n_ctx)));
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
        const float* te = weights_->wte + static_cast<size_t>(tok) * C;
        const float* pe = weights_->wpe + static_cast<size_t>(pos) * C;
        float* x = x_.data() + static_cast<size_t>(row) * C;
        for (int i = 0; i < C; ++i) x[i] = te[i] + pe[i];
        ++row, ++pos;
      }
    }
  }
  for (int l = 0; l < cfg.n_layer; ++l) {
    const LayerWeights& w = weights_->layers[static_cast<size_t>(l)];
    layernorm_forward(xn_.data(), x_.data(), w.ln_1_weight, w.ln_1_bias, T, C, cfg.layer_norm_epsilon);
    linear_forward(qkv_.data(), xn_.data(), w.attn_qkv, T, false, pool_);  // [T, 3C]
    attention(att_.data(), qkv_.data(), batch, l);                         // [T, C]
    linear_forward(x_.data(), att_.data(), w.attn_proj, T, true, pool_);   // x += proj(att)
    layernorm_forward(xn_.data(), x_.data(), w.ln_2_weight, w.ln_2_bias, T, C, cfg.layer_norm_epsilon);
    linear_forward(hidden_.data(), xn_.data(), w.mlp_fc, T, false, pool_);  // [T, 4C]
    pool_.parallel_for(
        4 * TC, [&](size_t b, size_t e) { gelu_forward(hidden_.data() + b, e - b); }, 64);
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
  layernorm_forward(xn_.data(), xn_.data(), weights_->ln_f_weight, weights_->ln_f_bias, gathered, C,
                    cfg.layer_norm_epsilon);
  const size_t offset = logits->size();
  logits->resize(offset + static_cast<size_t>(out_rows) * cfg.vocab_size);
  linear_forward(logits->data() + offset, xn_.data(), weights_->lm_head, out_rows, false, pool_);
  for (const BatchEntry& e : batch) e.sequence->kv_.length += static_cast<int>(e.tokens.size());
}

// out[T, C]: causal self-attention of each new token over its sequence's cached keys and values.
// Writes this layer's keys and values for the new tokens into the cache first.
void Gpt2Model::attention(float* out, const float* qkv, std::span<const BatchEntry> batch, int layer) {
  const Gpt2Config& cfg = config();
  const int C = cfg.n_embd, H = cfg.n_head, D = cfg.head_dim();
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  struct Task {
    const BatchEntry* entry;
    int first_row;
    int head;
  };
  std::vector<Task> tasks;
  int row = 0;
  for (const BatchEntry& e : batch) {
    KvSequence& kv = e.sequence->kv_;
    for (size_t t = 0; t < e.tokens.size(); ++t) {
      const float* r = qkv + static_cast<size_t>(row + static_cast<int>(t)) * 3 * C;
      const int pos = kv.length + static_cast<int>(t);
      std::memcpy(kv_cache_.key(kv, layer, pos), r + C, C * sizeof(float));
      std::memcpy(kv_cache_.value(kv, layer, pos), r + 2 * C, C * sizeof(float));
    }
    for (int h = 0; h < H; ++h) tasks.push_back({&e, row, h});
    row += static_cast<int>(e.tokens.size());
  }
  pool_.run([&](int thread) {
    float* scores = scores_[static_cast<size_t>(thread)].data();
    for (size_t i = static_cast<size_t>(thread); i < tasks.size(); i += static_cast<size_t>(pool_.size())) {
      const Task& task = tasks[i];
      const KvSequence& kv = task.entry->sequence->kv_;
      const int n = static_cast<int>(task.entry->tokens.size());
      const int hd = task.head * D;
      for (int t = 0; t < n; ++t) {
        const int pos = kv.length + t;  // attends to positions 0..pos
        const float* q = qkv + static_cast<size_t>(task.first_row + t) * 3 * C + hd;
        float max_score = -INFINITY;
        for (int j = 0; j <= pos; ++j) {
          scores[j] = dot_product(q, kv_cache_.key(kv, layer, j) + hd, D) * scale;
          max_score = std::max(max_score, scores[j]);
        }
        const float sum = exp_and_sum(scores, pos + 1, max_score);
        float* o = out + static_cast<size_t>(task.first_row + t) * C + hd;
        std::fill(o, o + D, 0.f);
        const float inv = 1.f / sum;
        for (int j = 0; j <= pos; ++j) axpy(o, kv_cache_.value(kv, layer, j) + hd, scores[j] * inv, D);
      }
    }
  });
}

}  // namespace cortex::model
