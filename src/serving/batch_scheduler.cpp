#include "serving/batch_scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "util/error.h"

namespace cortex::serving {

using Clock = std::chrono::steady_clock;

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kTimeout:
      return "timeout";
    case FinishReason::kError:
      return "error";
  }
  return "?";
}

struct BatchScheduler::Running {
  GenerationRequest request;
  std::shared_ptr<RequestHandle> handle;
  Clock::time_point submitted;
  Clock::time_point first_token{};
  std::unique_ptr<model::Sequence> sequence;
  std::unique_ptr<model::Sampler> sampler;
  int64_t reserved = 0;     // KV cache tokens held for this request
  size_t prefilled = 0;     // prompt tokens already processed
  int32_t next_token = -1;  // the token the next decode step feeds
  int generated = 0;
  bool done = false;
  std::vector<model::TokenLogprobs> prompt_logprobs;  // gathered chunk by chunk when asked for
};

namespace {
int64_t round_to_blocks(int64_t tokens) {
  const int64_t b = model::KvCache::kBlockTokens;
  return (tokens + b - 1) / b * b;
}
}  // namespace

std::unique_ptr<BatchScheduler> BatchScheduler::create(model::Gpt2Model* model,
                                                       const SchedulerOptions& options) {
  if (options.max_concurrency < 1) throw invalid_argument("max_concurrency must be at least 1");
  if (options.max_queue_length < 0) throw invalid_argument("max_queue_length must be >= 0");
  if (options.max_step_tokens < options.max_concurrency + 1)
    throw invalid_argument("max_step_tokens must exceed max_concurrency (room for prefill in every step)");
  return std::unique_ptr<BatchScheduler>(new BatchScheduler(model, options));
}

BatchScheduler::BatchScheduler(model::Gpt2Model* model, const SchedulerOptions& options)
    : model_(model), options_(options) {
  thread_ = std::thread([this] { loop(); });
}

BatchScheduler::~BatchScheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  for (auto& r : running_) finish(*r, FinishReason::kCancelled);
  for (auto& q : queue_) {
    GenerationResult result;
    result.reason = FinishReason::kCancelled;
    result.prompt_tokens = static_cast<int>(q.request.prompt.size());
    if (q.request.on_done) q.request.on_done(result);
  }
}

int BatchScheduler::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int>(queue_.size());
}

std::shared_ptr<RequestHandle> BatchScheduler::submit(GenerationRequest request) {
  const int n_ctx = model_->config().n_ctx;
  if (request.prompt.empty()) throw invalid_argument("prompt is empty");
  if (request.max_tokens < 0) throw invalid_argument("max_tokens must be >= 0");
  if (request.logprobs < -1) throw invalid_argument("logprobs must be >= 0");
  for (int32_t t : request.prompt)
    if (t < 0 || t >= model_->config().vocab_size)
      throw invalid_argument("token id " + std::to_string(t) + " is outside the vocabulary");
  const int64_t total = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  if (total > n_ctx)
    throw invalid_argument("prompt (" + std::to_string(request.prompt.size()) + " tokens) + max_tokens (" +
                           std::to_string(request.max_tokens) + ") exceeds the context length " +
                           std::to_string(n_ctx));
  request.sampling.validate();
  auto handle = std::make_shared<RequestHandle>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) throw Error(ErrorCode::kResourceExhausted, "the scheduler is shutting down");
    // Waiting requests beyond the free slots count against the queue length.
    const int free_slots = std::max(0, options_.max_concurrency - slots_used_);
    if (static_cast<int>(queue_.size()) >= options_.max_queue_length + free_slots)
      throw Error(ErrorCode::kResourceExhausted,
                  "queue full (" + std::to_string(queue_.size()) + " requests waiting)");
    queue_.push_back({std::move(request), handle, Clock::now()});
  }
  wake_.notify_one();
  return handle;
}

bool BatchScheduler::has_room(int n) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const int free_slots = std::max(0, options_.max_concurrency - slots_used_);
  return !stop_ && static_cast<int>(queue_.size()) + n <= options_.max_queue_length + free_slots;
}

void BatchScheduler::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || !queue_.empty() || !running_.empty(); });
      if (stop_) return;
    }
    admit();
    if (!running_.empty()) step();
  }
}

// Moves queued requests into the batch while there are free slots and KV cache room for their prompt
// and max_tokens, so that no running sequence can run out of cache.
void BatchScheduler::admit() {
  const int64_t budget = model_->kv_cache().max_blocks() * model::KvCache::kBlockTokens;
  std::vector<Queued> expired, cancelled, admitted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = Clock::now();
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->handle->cancelled()) {
        cancelled.push_back(std::move(*it));
        it = queue_.erase(it);
      } else if (now - it->submitted > options_.request_timeout) {
        expired.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    while (!queue_.empty() && slots_used_ < options_.max_concurrency) {
      const auto& q = queue_.front();
      const int64_t need =
          round_to_blocks(static_cast<int64_t>(q.request.prompt.size()) + q.request.max_tokens);
      if (reserved_tokens_ + need > budget && !(running_.empty() && admitted.empty() && need > budget)) break;
      reserved_tokens_ += need;
      ++slots_used_;
      admitted.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  auto end_now = [](Queued& q, FinishReason reason, const std::string& error) {
    GenerationResult result;
    result.reason = reason;
    result.error = error;
    result.prompt_tokens = static_cast<int>(q.request.prompt.size());
    if (q.request.on_done) q.request.on_done(result);
  };
  for (auto& q : cancelled) end_now(q, FinishReason::kCancelled, "");
  for (auto& q : expired) end_now(q, FinishReason::kTimeout, "timed out waiting in the queue");
  for (auto& q : admitted) {
    auto r = std::make_unique<Running>();
    r->reserved = round_to_blocks(static_cast<int64_t>(q.request.prompt.size()) + q.request.max_tokens);
    r->request = std::move(q.request);
    r->handle = std::move(q.handle);
    r->submitted = q.submitted;
    if (r->reserved > budget) {
      finish(*r, FinishReason::kError, "the request needs more KV cache than the replica has");
      continue;
    }
    r->sequence = model_->new_sequence();
    r->sampler = std::make_unique<model::Sampler>(r->request.sampling);
    running_.push_back(std::move(r));
    // Nothing to generate: done at once, unless the prompt itself is to be scored.
    if (running_.back()->request.max_tokens == 0 && !running_.back()->request.prompt_logprobs)
      finish(*running_.back(), FinishReason::kLength);
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& r) { return r->done; }),
                 running_.end());
}

void BatchScheduler::finish(Running& r, FinishReason reason, const std::string& error) {
  if (r.done) return;
  r.done = true;
  r.sequence.reset();  // frees its KV cache blocks
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --slots_used_;
  }
  reserved_tokens_ -= r.reserved;
  r.reserved = 0;
  GenerationResult result;
  result.reason = reason;
  result.error = error;
  result.prompt_tokens = static_cast<int>(r.request.prompt.size());
  result.generated_tokens = r.generated;
  const auto now = Clock::now();
  result.total_s = std::chrono::duration<double>(now - r.submitted).count();
  if (r.generated > 0)
    result.time_to_first_token_s = std::chrono::duration<double>(r.first_token - r.submitted).count();
  if (r.request.on_done) r.request.on_done(result);
}

void BatchScheduler::step() {
  const auto now = Clock::now();
  for (auto& r : running_) {
    if (r->handle->cancelled())
      finish(*r, FinishReason::kCancelled);
    else if (now - r->submitted > options_.request_timeout)
      finish(*r, FinishReason::kTimeout, "request timed out");
  }
  // Decode tokens first (one per running sequence), then prompt chunks with what is left of the step.
  std::vector<model::BatchEntry> batch;
  std::vector<Running*> owners;
  int budget = options_.max_step_tokens;
  for (auto& r : running_) {
    if (r->done || r->prefilled < r->request.prompt.size()) continue;
    batch.push_back({r->sequence.get(), std::span(&r->next_token, 1)});
    owners.push_back(r.get());
    --budget;
  }
  for (auto& r : running_) {
    if (r->done || r->prefilled >= r->request.prompt.size() || budget <= 0) continue;
    const size_t n = std::min(r->request.prompt.size() - r->prefilled, static_cast<size_t>(budget));
    batch.push_back({r->sequence.get(), std::span(r->request.prompt).subspan(r->prefilled, n),
                     r->request.prompt_logprobs});
    owners.push_back(r.get());
    budget -= static_cast<int>(n);
  }
  if (!batch.empty()) {
    std::vector<float> logits;
    try {
      model_->forward(batch, &logits);
    } catch (const std::exception& e) {
      spdlog::error("forward pass failed: {}", e.what());
      for (Running* r : owners) finish(*r, FinishReason::kError, e.what());
      batch.clear();
    }
    const size_t V = static_cast<size_t>(model_->config().vocab_size);
    const int n_ctx = model_->config().n_ctx;
    const std::span<const float> all_rows(logits);
    size_t next_row = 0;  // an entry has one logits row (its last token) or, with all_logits, one per token
    for (size_t i = 0; i < batch.size(); ++i) {
      Running& r = *owners[i];
      const size_t first_row = next_row;
      next_row += batch[i].all_logits ? batch[i].tokens.size() : 1;
      const auto row = [&](size_t k) { return all_rows.subspan(k * V, V); };
      const std::vector<int32_t>& prompt = r.request.prompt;
      if (r.prefilled < prompt.size()) {
        const size_t start = r.prefilled;
        r.prefilled += batch[i].tokens.size();
        if (batch[i].all_logits) {  // row j predicts position start + j + 1
          const int top_n = std::max(0, r.request.logprobs);
          for (size_t j = 0; start + j + 1 < std::min(r.prefilled + 1, prompt.size()); ++j)
            r.prompt_logprobs.push_back(
                model::token_logprobs(row(first_row + j), prompt[start + j + 1], top_n));
        }
        if (r.prefilled < prompt.size()) continue;  // more prompt to go: its last row is not sampled
        if (r.request.prompt_logprobs && r.request.on_prompt_logprobs)
          r.request.on_prompt_logprobs(std::move(r.prompt_logprobs));
        if (r.request.max_tokens == 0) {
          finish(r, FinishReason::kLength);
          continue;
        }
      }
      const auto last_row = row(next_row - 1);
      const int32_t token = r.sampler->sample(last_row);
      if (token == r.request.eos_id && !r.request.ignore_eos) {
        finish(r, FinishReason::kStop);
        continue;
      }
      if (r.request.logprobs >= 0 && r.request.on_logprobs)
        r.request.on_logprobs(model::token_logprobs(last_row, token, r.request.logprobs));
      if (r.generated++ == 0) r.first_token = Clock::now();
      if (r.request.on_token && !r.request.on_token(token)) {
        finish(r, FinishReason::kStop);
      } else if (r.generated >= r.request.max_tokens || r.sequence->length() >= n_ctx) {
        finish(r, FinishReason::kLength);
      } else {
        r.next_token = token;
      }
    }
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& r) { return r->done; }),
                 running_.end());
}

int BatchScheduler::active() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return slots_used_;
}

}  // namespace cortex::serving
