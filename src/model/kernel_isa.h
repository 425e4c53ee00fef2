// For the files compiled once per instruction set (see cpu_isa.h): CMake builds each of them with
// CORTEX_KERNEL_ISA = 0 (portable), 1 (AVX2), 2 (AVX-512) or 3 (AVX-512 with VNNI: only the files whose
// kernels use it, the rest of its table being AVX-512's). This header turns that into
//   - CORTEX_ISA_NS: the namespace the file's kernels go into (isa_portable, isa_avx2, isa_avx512), so
//     the three builds of one file link side by side;
//   - CORTEX_ISA_BEGIN / CORTEX_ISA_END: open and close that namespace inside a region compiled for the
//     instruction set (GCC's target pragma), so only the kernels use it. isa_supported() (cpu_isa.cpp)
//     checks every feature the pragma names. Include every other header
//     (the standard library's, immintrin.h) before CORTEX_ISA_BEGIN: templates they define are then
//     compiled for the baseline wherever they are instantiated, so the linker may keep any file's copy;
//   - CORTEX_AVX2, CORTEX_AVX512 and CORTEX_AVX512_VNNI (defined or not) for the kernels' #ifdef blocks.
//     An AVX-512 build defines the first two (its kernels use AVX2 code where 8-wide vectors fit
//     better), a VNNI build all three.
#pragma once

#ifndef CORTEX_KERNEL_ISA
#error "kernel_isa.h is for files compiled per instruction set (CORTEX_KERNEL_ISA set by CMake)"
#endif

#if CORTEX_KERNEL_ISA == 3
#define CORTEX_ISA_NS isa_avx512_vnni
#define CORTEX_AVX2 1
#define CORTEX_AVX512 1
#define CORTEX_AVX512_VNNI 1
// clang-format off
#define CORTEX_ISA_TARGET \
  _Pragma("GCC target(\"avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt\")")
// clang-format on
#elif CORTEX_KERNEL_ISA == 2
#define CORTEX_ISA_NS isa_avx512
#define CORTEX_AVX2 1
#define CORTEX_AVX512 1
#define CORTEX_ISA_TARGET \
  _Pragma("GCC target(\"avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt\")")
#elif CORTEX_KERNEL_ISA == 1
#define CORTEX_ISA_NS isa_avx2
#define CORTEX_AVX2 1
#define CORTEX_ISA_TARGET _Pragma("GCC target(\"avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt\")")
#else
#define CORTEX_ISA_NS isa_portable
#define CORTEX_ISA_TARGET
#endif

#if defined(CORTEX_AVX2)
#include <immintrin.h>
#endif

#define CORTEX_ISA_BEGIN \
  _Pragma("GCC push_options") CORTEX_ISA_TARGET namespace cortex::model::CORTEX_ISA_NS {
#define CORTEX_ISA_END \
  }                    \
  _Pragma("GCC pop_options")

// GCC 12's AVX-512 intrinsics pass an undefined vector as the unused source of masked builtins, which
// -W(maybe-)uninitialized report wherever they are inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
