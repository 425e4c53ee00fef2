// Weights laid out for single-stream decode steps. A one-row product reads each thread's share of W as
// four streams (OneRowProduct); with W's rows in order, every product of a step starts a thread's four
// streams afresh, and their prefetches stop at each product's end. Laid out here, the rows that each
// thread's stream j reads in all of a step's layer products lie end to end, in step order: one region
// per thread and stream, so that each stream runs on from one product into the next, its prefetches
// with it.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "model/gpt2_weights.h"
#include "util/page_arena.h"

namespace cortex::model {

class StreamLayout {
 public:
  // Copies the rows of `matrices` (in the order a step runs them) into regions of its own for `threads`
  // threads, and points each matrix's runs there (Linear::runs), calling copied(matrix) once a matrix's
  // rows are all copied (`weight` still pointing at them as they were: the caller's to release then, so
  // that the process never holds much more than one copy). Returns nullptr and changes nothing where it
  // does not apply: fewer than two matrices, a matrix stored [in, out] or already laid out, or a stream
  // whose first row is not a multiple of 16 (the batched kernels split W at run boundaries; on multiples
  // of 16 a column's arithmetic does not depend on where a split falls).
  static std::unique_ptr<StreamLayout> lay_out(std::span<Linear* const> matrices, int threads,
                                               const std::function<void(Linear&)>& copied);

  size_t bytes() const { return bytes_; }

 private:
  StreamLayout() = default;
  PageArena memory_;
  std::vector<RowRun> runs_;  // 4 · threads per matrix, in the matrices' order
  size_t bytes_ = 0;
};

}  // namespace cortex::model
