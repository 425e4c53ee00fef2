// One instruction set's kernel table (compiled once per instruction set, see kernel_isa.h).
#include "model/isa_kernels.h"

CORTEX_ISA_BEGIN

const KernelTable& kernel_table() {
  static constexpr KernelTable table {
#if CORTEX_KERNEL_ISA == 2
    Isa::kAvx512,
#elif CORTEX_KERNEL_ISA == 1
    Isa::kAvx2,
#else
    Isa::kPortable,
#endif
        layernorm_forward, gelu_forward, exp_and_sum, dot_product, attention_heads, attention_heads_f16,
        attention_rows, attention_rows_f16, matvec_in_major_rows, small_batch_gemm_in_major,
        small_batch_gemm_out_major, matvec_typed, matvec_typed_quarters, small_batch_gemm_out_major_typed,
        dequantize_rows, widen_to_f32, narrow_to_f16,
#if CORTEX_KERNEL_ISA == 2
        // pp64 at 67–76 % of the compute limit against sgemm's 33–50 %, pp128 56–73 % against 49–61 %
        // (alternating runs); at 512 rows sgemm is ahead. The AVX2 kernel falls to half at 64 rows.
        128,
#else
        kSmallBatchRows,
#endif
  };
  return table;
}

CORTEX_ISA_END
