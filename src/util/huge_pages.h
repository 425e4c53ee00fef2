// 2 MiB pages (transparent huge pages) for data streamed whole over and over: weights. A decode step
// reads every weight once; on 4 KiB pages each of the kernels' streams takes a TLB miss every 4 KiB and
// the hardware prefetchers stop at every 4 KiB boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace cortex {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// The whole 2 MiB pages inside the addresses [begin, end): from the first one's address to the end of the
// last, empty (begin >= end) where none lies whole inside.
struct HugePageSpan {
  uintptr_t begin, end;
};
inline HugePageSpan whole_huge_pages(uintptr_t begin, uintptr_t end) {
  return {(begin + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes,
          end / kHugePageBytes * kHugePageBytes};
}

// Asks for 2 MiB pages on the whole 2 MiB pages inside [data, data + bytes) of an existing mapping (a
// file's, where the page cache then reads new pages in 2 MiB pieces). Where the system cannot, nothing
// changes: this is a hint.
void advise_huge_pages(const void* data, size_t bytes);

// Whether this system gives 2 MiB pages to mappings that ask (transparent huge pages "always" or
// "madvise", not "never" or absent).
bool system_has_huge_pages();

// Calls fn(begin, end, line) for each "Field:   value" line of /proc/self/smaps, [begin, end) the
// addresses of the mapping it describes. Nothing where smaps cannot be read.
void for_each_smaps_field(const std::function<void(uintptr_t, uintptr_t, const std::string&)>& fn);

// Bytes mapped on 2 MiB pages (anonymous, file or shared memory) in the mappings of this process that
// overlap [data, data + bytes), as /proc/self/smaps counts them: whole mappings, so a mapping that
// reaches beyond the range counts whole. 0 where smaps cannot be read.
size_t huge_page_bytes_mapped(const void* data, size_t bytes);

}  // namespace cortex
