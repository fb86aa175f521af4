// Runtime dtype dispatch for kernels templated on their operands' element types (fp32 or
// bf16 storage, model/bf16_storage_backend.h; loads widened and stores rounded by
// common.cuh's to_float/store_float); .cu files only. with_type(p, bf16, f) calls f with p
// as a float* or an __nv_bfloat16*; nest it once per operand.
#pragma once

#include <cuda_bf16.h>

namespace pt::cuda::detail {

template <typename F>
void with_type(const void* p, bool bf16, F&& f) {
  if (bf16) {
    f(static_cast<__nv_bfloat16*>(const_cast<void*>(p)));
  } else {
    f(static_cast<float*>(const_cast<void*>(p)));
  }
}

}  // namespace pt::cuda::detail
