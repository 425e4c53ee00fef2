#include "model/q8_0_groups.h"

#include <cstring>

namespace cortex::model {

void group_q8_0_rows(void* dst, const BlockQ8_0* src, int64_t rows, int64_t cols) {
  const int64_t nb = cols / kQ8Block;
  auto* out = static_cast<Q8GroupBlock*>(dst);
  std::memset(dst, 0, q8_0_group_bytes(rows, cols));
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t g = row / kQ8GroupRows, r = row % kQ8GroupRows;
    for (int64_t b = 0; b < nb; ++b) {
      const BlockQ8_0& from = src[row * nb + b];
      Q8GroupBlock& to = out[g * nb + b];
      to.d[r] = from.d;
      for (int p = 0; p < kQ8Block / 2; ++p) {
        to.q[p][r][0] = from.q[2 * p];
        to.q[p][r][1] = from.q[2 * p + 1];
      }
    }
  }
}

void q8_0_group_row_to_f32(float* out, const void* w, int64_t cols, int64_t row) {
  const int64_t nb = cols / kQ8Block, g = row / kQ8GroupRows, r = row % kQ8GroupRows;
  const auto* blocks = static_cast<const Q8GroupBlock*>(w) + g * nb;
  const float* scale = fp16_table();
  for (int64_t b = 0; b < nb; ++b) {
    const float d = scale[blocks[b].d[r]];
    for (int p = 0; p < kQ8Block / 2; ++p) {
      out[b * kQ8Block + 2 * p] = d * static_cast<float>(blocks[b].q[p][r][0]);
      out[b * kQ8Block + 2 * p + 1] = d * static_cast<float>(blocks[b].q[p][r][1]);
    }
  }
}

}  // namespace cortex::model
