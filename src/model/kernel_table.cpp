#include "model/kernel_table.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "util/error.h"

namespace cortex::model {

// Defined in isa_kernel_table.cpp, once per instruction set.
namespace isa_portable {
const KernelTable& kernel_table();
}
#if defined(CORTEX_X86_KERNELS)
namespace isa_avx2 {
const KernelTable& kernel_table();
}
namespace isa_avx512 {
const KernelTable& kernel_table();
}
namespace isa_avx512_vnni {
const KernelTable& kernel_table();
}
#endif

namespace {

std::atomic<const KernelTable*> active{nullptr};

std::string supported_list() {
  std::string s;
  for (Isa isa : supported_isas()) s += (s.empty() ? "" : ", ") + std::string(isa_name(isa));
  return s;
}

const KernelTable& choose() {
  if (const char* env = std::getenv("CORTEX_ISA"); env != nullptr && *env != '\0') {
    const Isa isa = parse_isa(env);
    if (!isa_supported(isa))
      throw invalid_argument("CORTEX_ISA=" + std::string(env) + ": this CPU or build does not support it (" +
                             "supported: " + supported_list() + ")");
    return kernel_table(isa);
  }
  return kernel_table(supported_isas().back());
}

}  // namespace

const KernelTable& kernel_table(Isa isa) {
  if (!isa_supported(isa))
    throw invalid_argument(std::string("instruction set ") + isa_name(isa) +
                           " is not supported by this CPU or build (supported: " + supported_list() + ")");
  switch (isa) {
#if defined(CORTEX_X86_KERNELS)
    case Isa::kAvx512Vnni:
      return isa_avx512_vnni::kernel_table();
    case Isa::kAvx512:
      return isa_avx512::kernel_table();
    case Isa::kAvx2:
      return isa_avx2::kernel_table();
#endif
    default:
      return isa_portable::kernel_table();
  }
}

const KernelTable& kernels() {
  const KernelTable* t = active.load(std::memory_order_acquire);
  if (t != nullptr) return *t;
  const KernelTable* chosen = &choose();
  // Two first calls at once choose the same table; either store is right.
  active.store(chosen, std::memory_order_release);
  return *chosen;
}

void select_isa(Isa isa) {
  active.store(&kernel_table(isa), std::memory_order_release);
}

}  // namespace cortex::model
