// Q8_0 in groups of 16 rows: every row of a grouped matrix reads back as the same values as the row it
// came from (llama.cpp's blocks), the last group's rows past the matrix are zeros, and the bytes are the
// row layout's plus that padding.
#include "model/q8_0_groups.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "model/weight_types.h"

namespace cortex::model {
namespace {

TEST(Q8GroupsTest, RowsReadBackAsTheirBlocksAndTheLastGroupIsPadded) {
  for (const int rows : {1, 16, 37}) {
    const int cols = 96;  // three blocks
    std::mt19937 rng(5);
    std::normal_distribution<float> d(0.f, 1.f);
    std::vector<float> values(static_cast<size_t>(rows) * cols);
    for (float& v : values) v = d(rng);
    std::vector<std::byte> blocks(row_bytes(DType::kQ8_0, cols) * static_cast<size_t>(rows));
    convert_from_f32(blocks.data(), DType::kQ8_0, values.data(), static_cast<int64_t>(values.size()));

    const size_t bytes = q8_0_group_bytes(rows, cols);
    EXPECT_EQ(bytes, static_cast<size_t>((rows + 15) / 16) * 3 * 544) << rows << " rows";
    std::vector<std::byte> grouped(bytes, std::byte{0x5a});  // not zero: the padding must be written
    group_q8_0_rows(grouped.data(), reinterpret_cast<const BlockQ8_0*>(blocks.data()), rows, cols);

    std::vector<float> expect(cols), got(cols);
    for (int r = 0; r < rows; ++r) {
      convert_to_f32(expect.data(), DType::kQ8_0, blocks.data() + row_bytes(DType::kQ8_0, cols) * r, cols);
      q8_0_group_row_to_f32(got.data(), grouped.data(), cols, r);
      EXPECT_EQ(got, expect) << "row " << r << " of " << rows;
    }
    for (int r = rows; r < static_cast<int>(q8_0_groups(rows)) * kQ8GroupRows; ++r) {
      q8_0_group_row_to_f32(got.data(), grouped.data(), cols, r);
      EXPECT_EQ(got, std::vector<float>(cols, 0.f)) << "padding row " << r << " of " << rows;
    }
    // Block b of row r: its scale at d[r % 16], its values in pairs at q[pair][r % 16].
    const auto* g = reinterpret_cast<const Q8GroupBlock*>(grouped.data());
    const auto* src = reinterpret_cast<const BlockQ8_0*>(blocks.data());
    const int r = rows - 1, b = 2;
    const Q8GroupBlock& gb = g[(r / 16) * 3 + b];
    EXPECT_EQ(gb.d[r % 16], src[r * 3 + b].d);
    EXPECT_EQ(gb.q[5][r % 16][0], src[r * 3 + b].q[10]);
    EXPECT_EQ(gb.q[5][r % 16][1], src[r * 3 + b].q[11]);
  }
}

}  // namespace
}  // namespace cortex::model
