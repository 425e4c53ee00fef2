// std::vector whose storage starts on a cache line. Vector loads of 64 bytes from a buffer that malloc
// aligned to only 16 bytes each straddle two cache lines and take two of the core's load slots: the
// dot-product tiles of small_batch_gemm, reading 8 input vectors per step, ran ~1.35× slower so.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace cortex {

inline constexpr size_t kCacheLineBytes = 64;

template <class T, size_t Alignment = kCacheLineBytes>
struct AlignedAllocator {
  static_assert(Alignment >= alignof(T) && (Alignment & (Alignment - 1)) == 0);
  using value_type = T;
  template <class U>
  struct rebind {
    using other = AlignedAllocator<U, Alignment>;
  };

  AlignedAllocator() noexcept = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, Alignment>&) noexcept {}

  T* allocate(size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{Alignment}));
  }
  void deallocate(T* p, size_t) noexcept { ::operator delete (p, std::align_val_t{Alignment}); }

  template <class U>
  bool operator==(const AlignedAllocator<U, Alignment>&) const noexcept {
    return true;
  }
};

template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

}  // namespace cortex
