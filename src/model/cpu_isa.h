// The instruction sets the CPU kernels are built for, and which one this process runs. Every kernel
// (src/model/cpu_kernels.cpp, small_batch_gemm.cpp, matvec_typed.cpp, weight_widening.cpp) is compiled
// once per instruction set into its own namespace; at the first use the best one this CPU supports is
// chosen, unless the environment variable CORTEX_ISA names another (portable, avx2, avx512, avx512vnni).
// avx512vnni is the AVX-512 set with the kernels that VNNI speeds up (q8_0_group_products.cpp) compiled
// for it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cortex::model {

enum class Isa {
  kPortable,    // plain C++ (the compiler's baseline for the target)
  kAvx2,        // x86-64 AVX2 + FMA + F16C (Haswell and later)
  kAvx512,      // x86-64 AVX-512 F/BW/DQ/VL (Skylake-SP and later) with the AVX2 set
  kAvx512Vnni,  // the AVX-512 set with VNNI (Cascade Lake, Ice Lake, Zen 4 and later)
};

// "portable", "avx2", "avx512", "avx512vnni".
const char* isa_name(Isa isa);
// The instruction set named `name` (case-insensitive); throws invalid_argument naming the allowed ones.
Isa parse_isa(std::string_view name);

// Whether kernels for `isa` are built into this binary and this CPU can run them.
bool isa_supported(Isa isa);
// Every supported instruction set, from the plainest to the best.
std::vector<Isa> supported_isas();

}  // namespace cortex::model
