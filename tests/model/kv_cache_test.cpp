#include "model/kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "model/half.h"
#include "util/error.h"

namespace cortex::model {
namespace {

Gpt2Config small_config() {
  Gpt2Config c;
  c.n_embd = 8, c.n_layer = 2, c.n_head = 2, c.n_ctx = 64;
  return c;
}

TEST(KvCacheTest, AllocatesBlocksOnDemandAndReusesReleasedOnes) {
  KvCache cache(small_config(), 64);  // 4 blocks of 16
  EXPECT_EQ(cache.max_blocks(), 4);
  KvSequence a, b;
  EXPECT_TRUE(cache.reserve(a, 1));
  EXPECT_EQ(cache.blocks_in_use(), 1);
  EXPECT_TRUE(cache.reserve(a, 16));
  EXPECT_EQ(cache.blocks_in_use(), 1);
  EXPECT_TRUE(cache.reserve(a, 17));
  EXPECT_EQ(cache.blocks_in_use(), 2);
  EXPECT_TRUE(cache.reserve(b, 32));
  EXPECT_EQ(cache.blocks_in_use(), 4);
  EXPECT_FALSE(cache.reserve(b, 33)) << "budget spent";
  EXPECT_EQ(b.blocks.size(), 2u) << "a refused reservation allocates nothing";
  cache.release(a);
  EXPECT_EQ(cache.blocks_in_use(), 2);
  EXPECT_TRUE(cache.reserve(b, 64));
  EXPECT_EQ(cache.blocks_allocated(), 4) << "released blocks are reused, not allocated anew";
}

TEST(KvCacheTest, PreallocatedBlocksServeLaterSequencesWithinTheBudget) {
  KvCache cache(small_config(), 64);  // 4 blocks of 16
  EXPECT_EQ(cache.preallocate(17), 2) << "17 positions take two blocks";
  EXPECT_EQ(cache.blocks_allocated(), 2);
  EXPECT_EQ(cache.blocks_in_use(), 0) << "preallocated blocks wait in the free list";
  EXPECT_EQ(cache.preallocate(10), 0) << "enough blocks exist already";
  KvSequence a;
  EXPECT_TRUE(cache.reserve(a, 32));
  EXPECT_EQ(cache.blocks_allocated(), 2) << "the sequence took the preallocated blocks";
  // Each block is written through: zeros wherever the sequence has not stored anything yet.
  for (int pos = 0; pos < 32; pos += 7)
    for (int layer = 0; layer < 2; ++layer)
      EXPECT_EQ(static_cast<const float*>(cache.value(a, layer, pos))[3], 0.f);
  EXPECT_EQ(cache.preallocate(1000), 2) << "never past the budget";
  EXPECT_EQ(cache.blocks_allocated(), 4);
  KvSequence b;
  EXPECT_TRUE(cache.reserve(b, 32));
  EXPECT_FALSE(cache.reserve(b, 33)) << "budget spent";
}

// The value a row holds at index i, read back as stored.
float stored(const KvCache& cache, const void* row, int i) {
  if (cache.dtype() == DType::kF16) return fp16_to_fp32(static_cast<const uint16_t*>(row)[i]);
  return static_cast<const float*>(row)[i];
}

class KvCacheTypeTest : public ::testing::TestWithParam<DType> {};

TEST_P(KvCacheTypeTest, PositionsOfDifferentSequencesAndLayersDoNotOverlap) {
  KvCache cache(small_config(), 64, GetParam());
  EXPECT_EQ(cache.dtype(), GetParam());
  EXPECT_EQ(cache.block_bytes(), size_t{2} * 2 * 16 * 8 * (GetParam() == DType::kF16 ? 2 : 4));
  KvSequence a, b;
  ASSERT_TRUE(cache.reserve(a, 20));
  ASSERT_TRUE(cache.reserve(b, 20));
  // Tags up to 1619 and their negatives: integers that F16 holds exactly (up to 2048).
  auto tag = [&](const KvSequence* s, int layer, int pos) {
    return static_cast<float>((s == &a ? 1000 : 1500) + layer * 100 + pos);
  };
  for (KvSequence* s : {&a, &b})
    for (int layer = 0; layer < 2; ++layer)
      for (int pos = 0; pos < 20; ++pos) {
        std::vector<float> k(8, tag(s, layer, pos)), v(8, -tag(s, layer, pos));
        cache.store(*s, layer, pos, k.data(), v.data());
      }
  for (KvSequence* s : {&a, &b})
    for (int layer = 0; layer < 2; ++layer)
      for (int pos = 0; pos < 20; ++pos) {
        ASSERT_EQ(stored(cache, cache.key(*s, layer, pos), 7), tag(s, layer, pos));
        ASSERT_EQ(stored(cache, cache.value(*s, layer, pos), 0), -tag(s, layer, pos));
      }
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
    const float key = stored(cache, cache.key(s, 1, 1), i), value = stored(cache, cache.value(s, 1, 1), i);
    EXPECT_EQ(key, i < 3 ? 5.f : stored(cache, cache.key(s, 1, 0), i)) << i;
    EXPECT_EQ(value, i < 3 ? 5.f : stored(cache, cache.value(s, 1, 0), i)) << i;
  }
  cache.store(s, 1, 1, k.data(), v.data(), 0, 3);
  const size_t row = 8 * (GetParam() == DType::kF16 ? 2 : 4);
  EXPECT_EQ(std::memcmp(cache.key(s, 1, 0), cache.key(s, 1, 1), row), 0);
  EXPECT_EQ(std::memcmp(cache.value(s, 1, 0), cache.value(s, 1, 1), row), 0);
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
  EXPECT_THROW(cache.store(s, 0, 16, k.data(), v.data()), Error);  // one block reserved: positions 0-15
  EXPECT_THROW(cache.store(s, 0, -1, k.data(), v.data()), Error);
  cache.store(s, 0, 15, k.data(), v.data(), 6, 2);  // the last columns of the last reserved position
  cache.store(s, 0, 15, k.data(), v.data(), 8, 0);  // an empty range at the row's end
  EXPECT_EQ(stored(cache, cache.key(s, 0, 15), 7), 1.f);
  EXPECT_EQ(stored(cache, cache.value(s, 0, 15), 6), 2.f);
}

// Rows whose size is a whole number of cache lines start on one (GPT-2: 768 values), so that attention's
// vector loads of keys and values never straddle two lines; blocks are handed out from an arena, not
// one allocation each.
TEST_P(KvCacheTypeTest, RowsOfWholeCacheLinesStartOnACacheLine) {
  Gpt2Config c = small_config();
  c.n_embd = 32;  // 64 bytes in F16, 128 in F32
  KvCache cache(c, 16 * 40, GetParam());
  std::vector<KvSequence> seqs(40);
  for (auto& s : seqs) ASSERT_TRUE(cache.reserve(s, 16));
  for (const auto& s : seqs)
    for (int layer = 0; layer < 2; ++layer)
      for (int pos = 0; pos < 16; ++pos) {
        ASSERT_EQ(reinterpret_cast<uintptr_t>(cache.key(s, layer, pos)) % 64, 0u) << layer << " " << pos;
        ASSERT_EQ(reinterpret_cast<uintptr_t>(cache.value(s, layer, pos)) % 64, 0u) << layer << " " << pos;
      }
  EXPECT_EQ(cache.blocks_allocated(), 40);
}

INSTANTIATE_TEST_SUITE_P(Types, KvCacheTypeTest, ::testing::Values(DType::kF32, DType::kF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// F16 rows are rounded to nearest even; values beyond F16's range saturate at ±65504 (not infinity,
// which would turn every score of the row into NaN); NaN stays NaN.
TEST(KvCacheTest, F16RowsRoundToNearestAndSaturate) {
  Gpt2Config c = small_config();
  c.n_embd = 20;  // past one 16-wide vector: the vector path and the scalar tail
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
    const float kk = stored(cache, cache.key(s, 0, 0), i), vv = stored(cache, cache.value(s, 0, 0), i);
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
