#include "util/page_arena.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "util/aligned_vector.h"
#include "util/error.h"

namespace cortex {

namespace {
size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}
}  // namespace

PageArena::PageArena(size_t chunk_bytes) : chunk_bytes_(round_up(chunk_bytes, kHugePage)) {}

PageArena::~PageArena() {
  for (const Chunk& c : chunks_) munmap(c.base, c.size);
}

void* PageArena::allocate(size_t bytes) {
  bytes = round_up(bytes == 0 ? 1 : bytes, kCacheLineBytes);
  if (chunks_.empty() || chunks_.back().size - used_ < bytes) {
    const size_t size = std::max(chunk_bytes_, round_up(bytes, kHugePage));
    // Map a huge page more than needed, then unmap the ends so that the chunk starts on a 2 MiB boundary.
    const size_t mapped = size + kHugePage;
    void* p =
        mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      throw Error(ErrorCode::kResourceExhausted,
                  "cannot map " + std::to_string(size >> 20) + " MiB for weights: " + std::strerror(errno));
    auto* raw = static_cast<std::byte*>(p);
    auto* base = reinterpret_cast<std::byte*>(round_up(reinterpret_cast<uintptr_t>(raw), kHugePage));
    if (base > raw) munmap(raw, static_cast<size_t>(base - raw));
    const size_t tail = mapped - static_cast<size_t>(base - raw) - size;
    if (tail > 0) munmap(base + size, tail);
    madvise(base, size, MADV_HUGEPAGE);  // a hint: EINVAL where unsupported
    chunks_.push_back({base, size});
    used_ = 0;
  }
  void* piece = chunks_.back().base + used_;
  used_ += bytes;
  return piece;
}

}  // namespace cortex
