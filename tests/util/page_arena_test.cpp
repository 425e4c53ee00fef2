#include "util/page_arena.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "util/huge_pages.h"

namespace cortex {
namespace {

// The VmFlags line of the mapping in /proc/self/smaps that contains `p` ("" when none does).
std::string vm_flags_of(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  std::string flags;
  for_each_smaps_field([&](uintptr_t begin, uintptr_t end, const std::string& line) {
    if (addr >= begin && addr < end && line.rfind("VmFlags:", 0) == 0) flags = line;
  });
  return flags;
}

// Whether this kernel has transparent huge pages at all (then MADV_HUGEPAGE marks a mapping, whatever
// the system-wide mode).
bool kernel_has_transparent_huge_pages() {
  return std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good();
}

TEST(PageArenaTest, PiecesAreAlignedZeroedAndDisjoint) {
  PageArena arena(PageArena::kHugePage);  // small chunks, so that pieces spill into new ones
  std::vector<std::pair<unsigned char*, size_t>> pieces;
  for (size_t bytes : {1u, 63u, 64u, 1000u, 700000u, 1u << 20, 3u << 20, 5u, 2u << 20}) {
    auto* p = static_cast<unsigned char*>(arena.allocate(bytes));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << bytes;
    for (size_t i = 0; i < bytes; ++i) ASSERT_EQ(p[i], 0) << "piece of " << bytes << " at " << i;
    std::memset(p, static_cast<int>(pieces.size() + 1), bytes);
    pieces.emplace_back(p, bytes);
  }
  // Each piece still holds its own fill: none overlapped a later one.
  for (size_t k = 0; k < pieces.size(); ++k)
    for (size_t i = 0; i < pieces[k].second; ++i)
      ASSERT_EQ(pieces[k].first[i], static_cast<unsigned char>(k + 1)) << "piece " << k << " at " << i;
}

TEST(PageArenaTest, ChunksStartOnHugePageBoundariesAndAskForHugePages) {
  PageArena arena;
  void* first = arena.allocate(4 << 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % PageArena::kHugePage, 0u);
  // A piece larger than a chunk gets a chunk of its own.
  void* big = arena.allocate(size_t{80} << 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big) % PageArena::kHugePage, 0u);
  // "hg": the mapping was advised MADV_HUGEPAGE (whether the kernel finds free 2 MiB pages is its own
  // business); a kernel without transparent huge pages refuses the advice.
  const bool expected = kernel_has_transparent_huge_pages();
  EXPECT_EQ(vm_flags_of(first).find(" hg") != std::string::npos, expected) << vm_flags_of(first);
  EXPECT_EQ(vm_flags_of(big).find(" hg") != std::string::npos, expected) << vm_flags_of(big);
}

}  // namespace
}  // namespace cortex
