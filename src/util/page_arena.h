// Memory for large data that is written once and then read over and over (weights converted on load),
// in anonymous mappings the kernel may back with 2 MiB pages (transparent huge pages, asked for with
// madvise where the system leaves them to each program). A decode step streams every weight once; with
// 4 KiB pages that is a TLB miss every 4 KiB of each of the kernels' streams, and a product of one row
// ran at ~2/3 of the speed it reaches on 2 MiB pages (cortex_linear_bench, alternating).
#pragma once

#include <cstddef>
#include <vector>

#include "util/huge_pages.h"

namespace cortex {

// Hands out pieces of large mappings (chunks of at least chunk_bytes, aligned to 2 MiB) one after the
// other; everything is returned when the arena is destroyed. Pieces are 64-byte aligned and zeroed
// (fresh anonymous memory); pages count towards the process's memory only once written, so the unused
// end of a chunk costs at most one 2 MiB page.
class PageArena {
 public:
  static constexpr size_t kHugePage = kHugePageBytes;

  explicit PageArena(size_t chunk_bytes = size_t{64} << 20);
  ~PageArena();
  PageArena(const PageArena&) = delete;
  PageArena& operator=(const PageArena&) = delete;

  // Throws Error (kResourceExhausted) when the system has no address space left.
  void* allocate(size_t bytes);

 private:
  struct Chunk {
    std::byte* base;
    size_t size;
  };
  size_t chunk_bytes_;
  std::vector<Chunk> chunks_;
  size_t used_ = 0;  // bytes handed out from the last chunk
};

}  // namespace cortex
