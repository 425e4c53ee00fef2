#include "model/blas_cores.h"

#include <cblas.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "model/cpu_isa.h"

namespace cortex::model {

std::string blas_core_name() {
  const char* name = openblas_get_corename();
  return name != nullptr ? name : "";
}

namespace {

// The kernel table's AVX-512 set (F, BW, DQ, VL) and CD, which OpenBLAS's AVX-512 kernels also use.
bool cpu_has_avx512_for_blas() {
#if defined(__x86_64__)
  return isa_supported(Isa::kAvx512) && __builtin_cpu_supports("avx512cd");
#else
  return false;
#endif
}

// Cores whose OpenBLAS kernels use AVX-512 (OpenBLAS 0.3.21's names, any case).
bool has_avx512_kernels(std::string core) {
  std::transform(core.begin(), core.end(), core.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* k : {"skylakex", "cooperlake", "sapphirerapids"})
    if (core == k) return true;
  return false;
}

}  // namespace

std::string blas_core_warning() {
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  if (forced == nullptr || !cpu_has_avx512_for_blas()) return "";
  const std::string core = blas_core_name();
  if (has_avx512_kernels(core)) return "";
  return "OPENBLAS_CORETYPE=" + std::string(forced) + " holds OpenBLAS to its " + core +
         " kernels, without AVX-512, on a CPU that has it: sgemm (long prompts' products, cortex bench's "
         "compute limit) runs at about half the speed; unset it to let OpenBLAS choose";
}

}  // namespace cortex::model
