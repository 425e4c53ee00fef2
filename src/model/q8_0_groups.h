// Q8_0 weights in groups of 16 rows, the layout of Q8_0 matrices converted on load (from F32, F16 or BF16
// files): the same values and scales as llama.cpp's blocks (weight_types.h), laid out so that one vector
// holds a pair of values of each of 16 rows. A group's block b (values 32b..32b+31 of its 16 rows) is
// 544 bytes: the 16 rows' scales (IEEE halves, row r at d[r]), then for each pair p of the block's values
// (2p, 2p + 1) the 16 rows' two int8 values side by side (q[p][r][0..1]). Groups follow one another, each
// its blocks in order; a matrix whose row count is not a multiple of 16 ends in a group whose last rows
// are zeros (scale 0).
//
// The kernels (q8_0_group_products.cpp) multiply a pair of each of 16 rows by a pair of x's values in one
// instruction (pmaddwd on int16), so a block of 16 rows costs 16 such products and one conversion,
// scaling and accumulation for all 16 rows; rows laid out one by one took that conversion, scaling and
// accumulation per row and block, and a decode step's products were bound by that arithmetic rather
// than by memory on the Zen 5 cores (docs/performance.md, 2026-12-05).
//
// GGUF files of type Q8_0 keep llama.cpp's layout as mapped (so that replicas share their pages); their
// rows go through the row-by-row kernels.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model/weight_types.h"

namespace cortex::model {

inline constexpr int kQ8GroupRows = 16;

// One block of one group: values 32b..32b+31 of 16 rows.
struct Q8GroupBlock {
  uint16_t d[kQ8GroupRows];                 // the rows' scales
  int8_t q[kQ8Block / 2][kQ8GroupRows][2];  // [pair][row][value of the pair]
};
static_assert(sizeof(Q8GroupBlock) == 544);

// Groups of a matrix of `rows` rows, and its bytes (cols a multiple of 32).
inline int64_t q8_0_groups(int64_t rows) {
  return (rows + kQ8GroupRows - 1) / kQ8GroupRows;
}
inline size_t q8_0_group_bytes(int64_t rows, int64_t cols) {
  return static_cast<size_t>(q8_0_groups(rows)) * static_cast<size_t>(cols / kQ8Block) * sizeof(Q8GroupBlock);
}

// dst (q8_0_group_bytes(rows, cols)) = the rows of src, `rows` rows of `cols` values in llama.cpp's
// Q8_0 blocks, in groups.
void group_q8_0_rows(void* dst, const BlockQ8_0* src, int64_t rows, int64_t cols);

// out[0:cols] = row `row` of the grouped matrix w of `cols` values per row, as floats (d · q).
void q8_0_group_row_to_f32(float* out, const void* w, int64_t cols, int64_t row);

}  // namespace cortex::model
