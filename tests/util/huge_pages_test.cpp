#include "util/huge_pages.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace cortex {
namespace {

// An anonymous mapping of `bytes`, written whole, with the advice given (MADV_HUGEPAGE or
// MADV_NOHUGEPAGE) before it was written.
struct AnonymousMapping {
  AnonymousMapping(size_t bytes, int advice) : bytes(bytes) {
    data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) data = nullptr;
    if (data != nullptr) {
      madvise(data, bytes, advice);
      std::memset(data, 1, bytes);
    }
  }
  ~AnonymousMapping() {
    if (data != nullptr) munmap(data, bytes);
  }
  void* data;
  size_t bytes;
};

TEST(HugePagesTest, AdviceOnRangesWithoutAWholeHugePageChangesNothing) {
  std::vector<char> small(1000, 'x');
  advise_huge_pages(small.data(), small.size());  // no whole 2 MiB page inside: no call, no error
  advise_huge_pages(nullptr, 0);
  EXPECT_EQ(small[999], 'x');
}

TEST(HugePagesTest, WholeHugePagesLieInsideTheRange) {
  constexpr uintptr_t kPage = kHugePageBytes;
  const HugePageSpan inside = whole_huge_pages(kPage - 1, 4 * kPage + 5);
  EXPECT_EQ(inside.begin, kPage);
  EXPECT_EQ(inside.end, 4 * kPage);
  const HugePageSpan exact = whole_huge_pages(2 * kPage, 3 * kPage);
  EXPECT_EQ(exact.begin, 2 * kPage);
  EXPECT_EQ(exact.end, 3 * kPage);
  const HugePageSpan none = whole_huge_pages(kPage + 1, 2 * kPage + 100);  // no page whole inside
  EXPECT_GE(none.begin, none.end);
}

TEST(HugePagesTest, SmapsFieldsComeWithTheirMappingsAddresses) {
  AnonymousMapping mapping(size_t{3} << 12, MADV_NOHUGEPAGE);
  ASSERT_NE(mapping.data, nullptr);
  const auto addr = reinterpret_cast<uintptr_t>(mapping.data);
  size_t size_kb = 0, rss_kb = 0;
  int fields = 0;
  for_each_smaps_field([&](uintptr_t begin, uintptr_t end, const std::string& line) {
    EXPECT_LT(begin, end) << line;
    EXPECT_NE(line.find(':'), std::string::npos) << "a field line, not a mapping's: " << line;
    if (addr < begin || addr >= end) return;
    ++fields;
    if (line.rfind("Size:", 0) == 0) size_kb = std::stoull(line.substr(5));
    if (line.rfind("Rss:", 0) == 0) rss_kb = std::stoull(line.substr(4));
  });
  EXPECT_GT(fields, 2);
  // The kernel may merge the mapping with a neighbour: at least its own 12 KiB, all written.
  EXPECT_GE(size_kb, 12u);
  EXPECT_GE(rss_kb, 12u);
}

TEST(HugePagesTest, MappingsOnSmallPagesHaveNoHugePageBytes) {
  AnonymousMapping small(size_t{8} << 20, MADV_NOHUGEPAGE);
  ASSERT_NE(small.data, nullptr);
  EXPECT_EQ(huge_page_bytes_mapped(small.data, small.bytes), 0u);
  // No mapping at all at address 0.
  EXPECT_EQ(huge_page_bytes_mapped(nullptr, 4096), 0u);
}

TEST(HugePagesTest, HugePageBytesAreWholeHugePagesWithinTheMapping) {
  AnonymousMapping advised(size_t{16} << 20, MADV_HUGEPAGE);
  ASSERT_NE(advised.data, nullptr);
  const size_t huge = huge_page_bytes_mapped(advised.data, advised.bytes);
  EXPECT_EQ(huge % kHugePageBytes, 0u);
  EXPECT_LE(huge, advised.bytes);
  // Whether the kernel found free 2 MiB pages is its own business; where the system has none, none.
  if (!system_has_huge_pages()) {
    EXPECT_EQ(huge, 0u);
  }
}

}  // namespace
}  // namespace cortex
