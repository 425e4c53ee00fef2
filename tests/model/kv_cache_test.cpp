#include "model/kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "model/half.h"
#include "util/error.h"

namespace cortex::model {
namespace {

constexpr int B = KvCache::kBlockTokens;  // positions per block

Gpt2Config small_config() {
  Gpt2Config c;
  c.n_embd = 8, c.n_layer = 2, c.n_head = 2, c.n_ctx = 64;
  return c;
}

TEST(KvCacheTest, AllocatesBlocksOnDemandAndReusesReleasedOnes) {
  KvCache cache(small_config(), 4 * B);  // 4 blocks
  EXPECT_EQ(cache.max_blocks(), 4);
  KvSequence a, b;
  EXPECT_TRUE(cache.reserve(a, 1));
  EXPECT_EQ(cache.blocks_in_use(), 1);
  EXPECT_TRUE(cache.reserve(a, B));
  EXPECT_EQ(cache.blocks_in_use(), 1);
  EXPECT_TRUE(cache.reserve(a, B + 1));
  EXPECT_EQ(cache.blocks_in_use(), 2);
  EXPECT_TRUE(cache.reserve(b, 2 * B));
  EXPECT_EQ(cache.blocks_in_use(), 4);
  EXPECT_FALSE(cache.reserve(b, 2 * B + 1)) << "budget spent";
  EXPECT_EQ(b.blocks.size(), 2u) << "a refused reservation allocates nothing";
  cache.release(a);
  EXPECT_EQ(cache.blocks_in_use(), 2);
  EXPECT_TRUE(cache.reserve(b, 4 * B));
  EXPECT_EQ(cache.blocks_allocated(), 4) << "released blocks are reused, not allocated anew";
}

TEST(KvCacheTest, PreallocatedBlocksServeLaterSequencesWithinTheBudget) {
  KvCache cache(small_config(), 4 * B);  // 4 blocks
  EXPECT_EQ(cache.preallocate(B + 1), 2) << "a block's positions and one more take two blocks";
  EXPECT_EQ(cache.blocks_allocated(), 2);
  EXPECT_EQ(cache.blocks_in_use(), 0) << "preallocated blocks wait in the free list";
  EXPECT_EQ(cache.preallocate(B / 2), 0) << "enough blocks exist already";
  KvSequence a;
  EXPECT_TRUE(cache.reserve(a, 2 * B));
  EXPECT_EQ(cache.blocks_allocated(), 2) << "the sequence took the preallocated blocks";
  // Each block is written through: zeros wherever the sequence has not stored anything yet.
  for (int pos = 0; pos < 2 * B; pos += 7)
    for (int layer = 0; layer < 2; ++layer) EXPECT_EQ(cache.value_at(a, layer, pos, 3), 0.f);
  EXPECT_EQ(cache.preallocate(1000), 2) << "never past the budget";
  EXPECT_EQ(cache.blocks_allocated(), 4);
  KvSequence b;
  EXPECT_TRUE(cache.reserve(b, 2 * B));
  EXPECT_FALSE(cache.reserve(b, 2 * B + 1)) << "budget spent";
}

class KvCacheTypeTest : public ::testing::TestWithParam<DType> {};

TEST_P(KvCacheTypeTest, PositionsOfDifferentSequencesAndLayersDoNotOverlap) {
  KvCache cache(small_config(), 4 * B, GetParam());
  EXPECT_EQ(cache.dtype(), GetParam());
  EXPECT_EQ(cache.block_bytes(), size_t{2} * 2 * B * 8 * (GetParam() == DType::kF16 ? 2 : 4));
  KvSequence a, b;
  const int n = B + 4;  // two blocks each
  ASSERT_TRUE(cache.reserve(a, n));
  ASSERT_TRUE(cache.reserve(b, n));
  // Tags below 2048 and their negatives: integers that F16 holds exactly.
  ASSERT_LT(1000 + 300 + n, 2048);
  auto tag = [&](const KvSequence* s, int layer, int pos) {
    return static_cast<float>((s == &a ? 1 : 1000) + layer * 300 + pos);
  };
  for (KvSequence* s : {&a, &b})
    for (int layer = 0; layer < 2; ++layer)
      for (int pos = 0; pos < n; ++pos) {
        std::vector<float> k(8, tag(s, layer, pos)), v(8, -tag(s, layer, pos));
        cache.store(*s, layer, pos, k.data(), v.data());
      }
  for (KvSequence* s : {&a, &b})
    for (int layer = 0; layer < 2; ++layer)
      for (int pos = 0; pos < n; ++pos)
        for (int c = 0; c < 8; ++c) {
          ASSERT_EQ(cache.key_at(*s, layer, pos, c), tag(s, layer, pos));
          ASSERT_EQ(cache.value_at(*s, layer, pos, c), -tag(s, layer, pos));
        }
}

// What attention reads (rows(): each head's row at each position, where CachedRows says it lies) is what
// store() wrote: column h·D + d of the position's key and value rows, in every layer, across blocks.
template <class T>
void expect_rows_hold_the_stored_columns(DType type) {
  Gpt2Config c = small_config();  // two heads of 4 values
  KvCache cache(c, 4 * B, type);
  KvSequence s;
  const int n = 2 * B + 8;  // three blocks, the last one part full
  ASSERT_TRUE(cache.reserve(s, n));
  // Distinct for every layer (the sign), position and column: integers below 2048, which F16 holds
  // exactly; the values are the keys' halves (multiples of 0.5 below 1024, also exact).
  ASSERT_LT(8 * n, 2048);
  auto value = [](int layer, int pos, int column) {
    return static_cast<float>((layer == 0 ? 1 : -1) * (pos * 8 + column + 1));
  };
  for (int layer = 0; layer < 2; ++layer)
    for (int pos = 0; pos < n; ++pos) {
      std::vector<float> k(8), v(8);
      for (int col = 0; col < 8; ++col)
        k[col] = value(layer, pos, col), v[col] = 0.5f * value(layer, pos, col);
      cache.store(s, layer, pos, k.data(), v.data());
    }
  std::vector<const T*> blocks;
  for (int layer = 0; layer < 2; ++layer) {
    const CachedRows<T> rows = cache.rows(s, layer, n, blocks);
    EXPECT_EQ(blocks.size(), 6u) << "three blocks of keys, then three of values";
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < n; ++j)
        for (int d = 0; d < 4; ++d) {
          float key = 0, val = 0;
          if constexpr (std::is_same_v<T, uint16_t>)
            key = fp16_to_fp32(rows.key(h, j)[d]), val = fp16_to_fp32(rows.value(h, j)[d]);
          else
            key = rows.key(h, j)[d], val = rows.value(h, j)[d];
          ASSERT_EQ(key, value(layer, j, 4 * h + d)) << "layer " << layer << " head " << h << " pos " << j;
          ASSERT_EQ(val, 0.5f * value(layer, j, 4 * h + d))
              << "layer " << layer << " head " << h << " pos " << j;
        }
  }
}

TEST_P(KvCacheTypeTest, RowsGiveEachHeadTheColumnsStoredAtEveryPosition) {
  if (GetParam() == DType::kF16)
    expect_rows_hold_the_stored_columns<uint16_t>(DType::kF16);
  else
    expect_rows_hold_the_stored_columns<float>(DType::kF32);
  // Rows read as the other type are refused, not misread.
  KvCache cache(small_config(), 16, GetParam());
  KvSequence s;
  ASSERT_TRUE(cache.reserve(s, 1));
  std::vector<const float*> floats;
  std::vector<const uint16_t*> halves;
  if (GetParam() == DType::kF16)
    EXPECT_THROW(cache.rows(s, 0, 1, floats), Error);
  else
    EXPECT_THROW(cache.rows(s, 0, 1, halves), Error);
}

// A row stored in parts of columns (as each thread stores its own heads') holds what the whole row
// stored at once holds, and a part leaves the columns outside it as they were.
TEST_P(KvCacheTypeTest, ColumnsStoredInPartsEqualTheWholeRow) {
  KvCache cache(small_config(), 64, GetParam());
  KvSequence s;
  ASSERT_TRUE(cache.reserve(s, 2));
  std::vector<float> k(8), v(8), old(8, 5.f);
  for (size_t i = 0; i < 8; ++i)
    k[i] = 0.1f * static_cast<float>(i) + 0.03f, v[i] = -2.7f * static_cast<float>(i);
  cache.store(s, 1, 0, k.data(), v.data());
  cache.store(s, 1, 1, old.data(), old.data());
  cache.store(s, 1, 1, k.data(), v.data(), 3, 5);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(cache.key_at(s, 1, 1, i), i < 3 ? 5.f : cache.key_at(s, 1, 0, i)) << i;
    EXPECT_EQ(cache.value_at(s, 1, 1, i), i < 3 ? 5.f : cache.value_at(s, 1, 0, i)) << i;
  }
  cache.store(s, 1, 1, k.data(), v.data(), 0, 3);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(cache.key_at(s, 1, 1, i), cache.key_at(s, 1, 0, i)) << i;
    EXPECT_EQ(cache.value_at(s, 1, 1, i), cache.value_at(s, 1, 0, i)) << i;
  }
}

// Columns outside the row, and positions outside the blocks reserved, are refused rather than written
// past the row or the sequence's blocks.
TEST_P(KvCacheTypeTest, StoresOutsideTheRowOrTheReservedPositionsAreRefused) {
  KvCache cache(small_config(), 64, GetParam());
  KvSequence s;
  ASSERT_TRUE(cache.reserve(s, 2));
  std::vector<float> k(8, 1.f), v(8, 2.f);
  EXPECT_THROW(cache.store(s, 0, 0, k.data(), v.data(), 6, 3), Error);
  EXPECT_THROW(cache.store(s, 0, 0, k.data(), v.data(), -1, 2), Error);
  EXPECT_THROW(cache.store(s, 0, 0, k.data(), v.data(), 9), Error);
  EXPECT_THROW(cache.store(s, 0, B, k.data(), v.data()), Error);  // one block reserved: positions 0 .. B - 1
  EXPECT_THROW(cache.store(s, 0, -1, k.data(), v.data()), Error);
  cache.store(s, 0, B - 1, k.data(), v.data(), 6, 2);  // the last columns of the last reserved position
  cache.store(s, 0, B - 1, k.data(), v.data(), 8, 0);  // an empty range at the row's end
  EXPECT_EQ(cache.key_at(s, 0, B - 1, 7), 1.f);
  EXPECT_EQ(cache.value_at(s, 0, B - 1, 6), 2.f);
  EXPECT_THROW(cache.key_at(s, 0, B - 1, 8), Error);
  EXPECT_THROW(cache.value_at(s, 0, B, 0), Error);
}

// Head rows whose size is a whole number of cache lines start on one (GPT-2: 64 values), so that
// attention's vector loads of keys and values never straddle two lines; blocks are handed out from an
// arena, not one allocation each.
template <class T>
void expect_head_rows_on_cache_lines(DType type) {
  Gpt2Config c = small_config();
  c.n_embd = 64;  // two heads of 32 values: 64 bytes in F16, 128 in F32
  KvCache cache(c, B * 40, type);
  std::vector<KvSequence> seqs(40);
  for (auto& s : seqs) ASSERT_TRUE(cache.reserve(s, B));
  std::vector<const T*> blocks;
  for (const auto& s : seqs)
    for (int layer = 0; layer < 2; ++layer) {
      const CachedRows<T> rows = cache.rows(s, layer, B, blocks);
      for (int h = 0; h < 2; ++h)
        for (int pos = 0; pos < B; ++pos) {
          ASSERT_EQ(reinterpret_cast<uintptr_t>(rows.key(h, pos)) % 64, 0u)
              << layer << " " << h << " " << pos;
          ASSERT_EQ(reinterpret_cast<uintptr_t>(rows.value(h, pos)) % 64, 0u)
              << layer << " " << h << " " << pos;
        }
    }
  EXPECT_EQ(cache.blocks_allocated(), 40);
}

TEST_P(KvCacheTypeTest, HeadRowsOfWholeCacheLinesStartOnACacheLine) {
  if (GetParam() == DType::kF16)
    expect_head_rows_on_cache_lines<uint16_t>(DType::kF16);
  else
    expect_head_rows_on_cache_lines<float>(DType::kF32);
}

INSTANTIATE_TEST_SUITE_P(Types, KvCacheTypeTest, ::testing::Values(DType::kF32, DType::kF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// F16 rows are rounded to nearest even; values beyond F16's range saturate at ±65504 (not infinity,
// which would turn every score of the row into NaN); NaN stays NaN.
TEST(KvCacheTest, F16RowsRoundToNearestAndSaturate) {
  Gpt2Config c = small_config();
  c.n_embd = 20, c.n_head = 1;  // a head's row past one 16-wide vector: the vector path and the scalar tail
  KvCache cache(c, 16, DType::kF16);
  KvSequence s;
  ASSERT_TRUE(cache.reserve(s, 1));
  std::vector<float> k(20), v(20);
  for (int i = 0; i < 20; ++i) k[static_cast<size_t>(i)] = 1.f + static_cast<float>(i) / 3000.f;
  v = k;
  for (size_t i : {size_t{3}, size_t{18}}) k[i] = 1e6f, v[i] = -1e9f;
  k[5] = k[19] = std::numeric_limits<float>::quiet_NaN();
  cache.store(s, 0, 0, k.data(), v.data());
  for (int i = 0; i < 20; ++i) {
    const size_t u = static_cast<size_t>(i);
    const float kk = cache.key_at(s, 0, 0, i), vv = cache.value_at(s, 0, 0, i);
    if (u == 3 || u == 18) {
      EXPECT_EQ(kk, 65504.f) << i;
      EXPECT_EQ(vv, -65504.f) << i;
    } else if (u == 5 || u == 19) {
      EXPECT_TRUE(std::isnan(kk)) << i;
    } else {
      EXPECT_EQ(kk, fp16_to_fp32(fp32_to_fp16(k[u]))) << i;
      EXPECT_NEAR(kk, k[u], 1e-3f) << i;
    }
  }
}

TEST(KvCacheTest, RejectsTypesOtherThanF32AndF16) {
  EXPECT_THROW(KvCache(small_config(), 16, DType::kQ8_0), Error);
  EXPECT_THROW(KvCache(small_config(), 16, DType::kBF16), Error);
}

}  // namespace
}  // namespace cortex::model
