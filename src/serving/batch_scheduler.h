// Continuous batching: one thread owns the model and runs decode steps over every active sequence;
// requests join and leave the batch between steps. A new prompt's prefill is cut into chunks that share
// a step with the running sequences' decode tokens, so streams keep flowing while prompts arrive.
//
// Threading: submit() and cancel() may be called from any thread. The callbacks of a request run on the
// scheduler's thread, between steps: they must not block (queue the data and return).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/gpt2_model.h"
#include "model/sampler.h"

namespace cortex::serving {

struct SchedulerOptions {
  int max_concurrency = 32;   // sequences decoding at once
  int max_queue_length = 64;  // requests waiting for a slot; past that submit() refuses at once
  int max_step_tokens = 256;  // tokens per forward pass (decode tokens first, then prefill chunks)
  std::chrono::milliseconds request_timeout{std::chrono::minutes(5)};
};

// How a request ended.
enum class FinishReason { kLength, kStop, kCancelled, kTimeout, kError };
const char* finish_reason_name(FinishReason r);

struct GenerationResult {
  FinishReason reason = FinishReason::kLength;
  std::string error;  // with kError
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double time_to_first_token_s = 0;  // from submit to the first generated token
  double total_s = 0;
};

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 64;
  model::SamplingParams sampling;
  bool ignore_eos = false;
  int32_t eos_id = -1;
  // Each generated token (the end-of-text token excluded); returning false stops the request (kStop).
  std::function<bool(int32_t)> on_token;
  // Called exactly once when the request ends, whatever the reason.
  std::function<void(const GenerationResult&)> on_done;

  // Log-probabilities (model::token_logprobs: the raw model distribution, before temperature, top-k and
  // top-p), computed only when asked for. logprobs >= 0: on_logprobs receives each generated token's,
  // with the `logprobs` most likely tokens, just before on_token. prompt_logprobs: on_prompt_logprobs
  // receives those of prompt tokens 1.. (nothing predicts the first) once, when the prompt is prefilled,
  // before any generated token; with max_tokens 0 the request then ends (a prompt is scored). Such a
  // prompt's prefill projects every position on the vocabulary, not just the last.
  int logprobs = -1;
  bool prompt_logprobs = false;
  std::function<void(const model::TokenLogprobs&)> on_logprobs;
  std::function<void(std::vector<model::TokenLogprobs>)> on_prompt_logprobs;
};

// A submitted request: lets its owner cancel it (a client that disconnected).
class RequestHandle {
 public:
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  std::atomic<bool> cancelled_{false};
};

class BatchScheduler {
 public:
  // Starts the scheduler thread. The model must outlive the scheduler.
  static std::unique_ptr<BatchScheduler> create(model::Gpt2Model* model, const SchedulerOptions& options);
  ~BatchScheduler();  // stops the thread; requests still running end with kCancelled

  // Queues a request. Throws Error(kInvalidArgument) for a bad request (empty prompt, prompt or
  // prompt + max_tokens beyond the context) and Error(kResourceExhausted) when the queue is full.
  std::shared_ptr<RequestHandle> submit(GenerationRequest request);

  // Whether `n` more requests would be accepted now (a hint: another thread may take the room first).
  // A streamed response checks it before its headers go out, so that a full queue is still a 503.
  bool has_room(int n) const;
  int active() const;  // requests holding a slot (admitted and not yet finished)
  int queued() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Running;
  BatchScheduler(model::Gpt2Model* model, const SchedulerOptions& options);
  void loop();
  void admit();
  void step();
  void finish(Running& r, FinishReason reason, const std::string& error = "");

  model::Gpt2Model* model_;
  SchedulerOptions options_;

  mutable std::mutex mutex_;  // guards queue_, slots_used_ and stop_
  std::condition_variable wake_;
  struct Queued {
    GenerationRequest request;
    std::shared_ptr<RequestHandle> handle;
    std::chrono::steady_clock::time_point submitted;
  };
  std::deque<Queued> queue_;
  bool stop_ = false;
  int slots_used_ = 0;  // taken when a request leaves the queue, given back by finish()

  // Owned by the scheduler thread only.
  std::vector<std::unique_ptr<Running>> running_;
  int64_t reserved_tokens_ = 0;  // KV cache tokens promised to running requests
  std::thread thread_;
};

}  // namespace cortex::serving
