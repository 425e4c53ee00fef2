// Which of OpenBLAS's kernels this process's sgemm runs (prompt processing, `cortex bench`'s compute
// limit), and a warning when the environment holds it to slower ones than the CPU could run.
#pragma once

#include <string>

namespace cortex::model {

// The name of the CPU core whose kernels OpenBLAS uses ("Cooperlake", "Haswell", ...), as it reports it.
std::string blas_core_name();

// OpenBLAS picks its kernels by CPU model unless OPENBLAS_CORETYPE names a core. When that variable
// names a core without AVX-512 kernels on a CPU that has AVX-512 (F, CD, BW, DQ, VL: what OpenBLAS's
// SkylakeX and Cooperlake kernels use), a sentence saying so and what it costs; otherwise empty. On two
// Zen 5 cores, OPENBLAS_CORETYPE=Haswell held sgemm to 182 GFLOP/s against 322 with the kernels OpenBLAS
// picks itself (Cooperlake), and F16 prompt processing of 512 tokens to 801 against 1491 tok/s. The
// variable is the user's choice: cortex reports it (`cortex bench`, the replica's log) and leaves it.
std::string blas_core_warning();

}  // namespace cortex::model
