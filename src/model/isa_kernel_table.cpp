// One instruction set's kernel table (compiled once per instruction set, see kernel_isa.h).
#include <limits>

#include "model/isa_kernels.h"

#if CORTEX_KERNEL_ISA == 3
namespace cortex::model::isa_avx512 {
const KernelTable& kernel_table();
}
#endif

CORTEX_ISA_BEGIN

#if CORTEX_KERNEL_ISA == 3
// AVX-512's table with the kernels compiled for VNNI in place of theirs.
const KernelTable& kernel_table() {
  static const KernelTable table = [] {
    KernelTable t = isa_avx512::kernel_table();
    t.isa = Isa::kAvx512Vnni;
    t.q8_0_group_products = q8_0_group_products;
    t.q8_0_group_pair_products = q8_0_group_pair_products;
    t.dequantize_q8_0_groups = dequantize_q8_0_groups;
    return t;
  }();
  return table;
}
#else
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
        small_batch_gemm_out_major, matvec_typed, matvec_typed_quarters, round_to_int16_blocks,
        small_batch_gemm_out_major_typed, dequantize_rows, widen_to_f32, narrow_to_f16, q8_0_group_products,
        q8_0_group_pair_products, dequantize_q8_0_groups,
#if CORTEX_KERNEL_ISA == 2
        // F32 pp64 at 61–76 % of the compute limit against sgemm's 30–50 %, pp128 56–73 % against
        // 48–61 %; F16 and Q8_0 pp64 54–82 % against 36–45 %, pp128 69–83 % against 35–58 % (alternating
        // runs). At 256 rows and more sgemm is ahead; the AVX2 kernels fall behind it from 64 rows.
        128, std::numeric_limits<int>::max(),
#elif CORTEX_KERNEL_ISA == 1
        kSmallBatchRows, 128,
#else
        kSmallBatchRows, kSmallBatchRows,
#endif
  };
  return table;
}
#endif

CORTEX_ISA_END
