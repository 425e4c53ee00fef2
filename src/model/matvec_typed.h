// Matrix-vector products with F16 and Q8_0 weights (single-stream decode, bound by the bytes of W read):
// the weights are converted to F32 in registers as they stream in, never written back.
#pragma once

#include "model/tensor.h"

namespace cortex::model {

// y[o] += dot(x[0:K], W[o, :]) for o in [o0, o1), W stored [N, K] as F16 or Q8_0 (K a multiple of 32
// for Q8_0).
void matvec_typed(float* y, const float* x, const void* w, DType t, int K, int o0, int o1);

}  // namespace cortex::model
