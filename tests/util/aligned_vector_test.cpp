#include "util/aligned_vector.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>

namespace cortex {
namespace {

bool on_cache_line(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % kCacheLineBytes == 0;
}

// malloc aligns to 16 bytes: of many small and large buffers some would start off a line by chance.
TEST(AlignedVectorTest, StorageStartsOnACacheLineWhateverTheSize) {
  std::vector<AlignedVector<float>> keep;
  for (size_t n : {1u, 3u, 17u, 100u, 768u, 4096u, 100000u, 1u << 20}) {
    for (int i = 0; i < 8; ++i) {
      keep.emplace_back(n, 1.f);
      ASSERT_TRUE(on_cache_line(keep.back().data())) << n;
    }
  }
}

TEST(AlignedVectorTest, GrowingKeepsTheAlignmentAndTheValues) {
  AlignedVector<double> v;
  for (int i = 0; i < 5000; ++i) {
    v.push_back(i);
    ASSERT_TRUE(on_cache_line(v.data())) << v.size();
  }
  v.resize(3);
  v.shrink_to_fit();
  EXPECT_TRUE(on_cache_line(v.data()));
  EXPECT_EQ(v, (AlignedVector<double>{0, 1, 2}));
  AlignedVector<double> copy = v;
  EXPECT_TRUE(on_cache_line(copy.data()));
  EXPECT_EQ(std::accumulate(copy.begin(), copy.end(), 0.0), 3.0);
}

}  // namespace
}  // namespace cortex
