#include "model/kv_cache.h"

#include <gtest/gtest.h>

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

TEST(KvCacheTest, PositionsOfDifferentSequencesAndLayersDoNotOverlap) {
  KvCache cache(small_config(), 64);
  KvSequence a, b;
  ASSERT_TRUE(cache.reserve(a, 20));
  ASSERT_TRUE(cache.reserve(b, 20));
  for (KvSequence* s : {&a, &b})
    for (int layer = 0; layer < 2; ++layer)
      for (int pos = 0; pos < 20; ++pos)
        for (int i = 0; i < 8; ++i) {
          float tag = static_cast<float>((s == &a ? 1000 : 2000) + layer * 100 + pos);
          cache.key(*s, layer, pos)[i] = tag;
          cache.value(*s, layer, pos)[i] = -tag;
        }
  for (KvSequence* s : {&a, &b})
    for (int layer = 0; layer < 2; ++layer)
      for (int pos = 0; pos < 20; ++pos) {
        float tag = static_cast<float>((s == &a ? 1000 : 2000) + layer * 100 + pos);
        ASSERT_EQ(cache.key(*s, layer, pos)[7], tag);
        ASSERT_EQ(cache.value(*s, layer, pos)[0], -tag);
      }
}

}  // namespace
}  // namespace cortex::model
