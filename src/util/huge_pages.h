// 2 MiB pages (transparent huge pages) for data streamed whole over and over: weights. A decode step
// reads every weight once; on 4 KiB pages each of the kernels' streams takes a TLB miss every 4 KiB and
// the hardware prefetchers stop at every 4 KiB boundary.
#pragma once

#include <cstddef>

namespace cortex {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// Asks for 2 MiB pages on the whole 2 MiB pages inside [data, data + bytes) of an existing mapping (a
// file's, where the page cache then reads new pages in 2 MiB pieces). Where the system cannot, nothing
// changes: this is a hint.
void advise_huge_pages(const void* data, size_t bytes);

// Whether this system gives 2 MiB pages to mappings that ask (transparent huge pages "always" or
// "madvise", not "never" or absent).
bool system_has_huge_pages();

// Bytes mapped on 2 MiB pages (anonymous, file or shared memory) in the mappings of this process that
// overlap [data, data + bytes), as /proc/self/smaps counts them: whole mappings, so a mapping that
// reaches beyond the range counts whole. 0 where smaps cannot be read.
size_t huge_page_bytes_mapped(const void* data, size_t bytes);

}  // namespace cortex
