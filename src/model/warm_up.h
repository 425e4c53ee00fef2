// A model's forward paths run once before a server takes requests.
#pragma once

#include "model/gpt2_model.h"

namespace cortex::model {

// What warm_up ran: the prompt's tokens, and the sequences of its largest batched step (0 where the KV
// cache had no room for two).
struct WarmUpReport {
  int prompt_tokens = 0;
  int batch_sequences = 0;
  double seconds = 0;
};

// Runs each of the forward pass's paths once, so that a server's first requests do not pay for the first
// pass through them (code, buffers and the BLAS library's work space touched for the first time: a fresh
// replica's first 16-token completion took ~2× as long as its next ones). One sequence takes a prompt long
// enough for the prompt path's matrix products (within the context) and then two one-token steps (the
// single-stream path); then batches of 2, 4, 8, ... and `batch` sequences (the products take other kernels
// at other row counts) each take one token and a step together (batched decode).
// Every sequence is released after: the model's state and its results are as before, and the KV cache
// keeps the blocks it took in its free list. Takes no more of the cache than is free (fewer tokens or
// sequences, or none); throws what forward throws otherwise.
WarmUpReport warm_up(Gpt2Model& model, int batch);

}  // namespace cortex::model
