// A named, typed view into memory owned elsewhere (usually a mapped weight file).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cortex::model {

enum class DType { kF32, kF16, kBF16, kQ8_0 };

const char* dtype_name(DType t);
// Bytes taken by `elements` values of type t (Q8_0 counts whole 32-element blocks).
size_t dtype_bytes(DType t, int64_t elements);

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // outermost first (row-major), as safetensors writes it
  const void* data = nullptr;
  size_t bytes = 0;

  int64_t elements() const;
  std::string shape_string() const;  // "[768, 2304]"
};

}  // namespace cortex::model
