// bf16 LayerNorm on the GPU; see layernorm_bf16.h. The kernels are the fp32 ones
// (layernorm_kernels.cuh) with T = __nv_bfloat16: loads widened by __bfloat162float,
// stores rounded by __float2bfloat16_rn.
#include "model/cuda/layernorm_bf16.h"

#include "model/cuda/layernorm_kernels.cuh"

namespace pt::cuda {

void layernorm_forward_bf16(__nv_bfloat16* out, float* mean, float* rstd, const __nv_bfloat16* inp,
                            const __nv_bfloat16* weight, const __nv_bfloat16* bias, int N, int C,
                            cudaStream_t stream) {
  detail::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, stream);
}

void layernorm_backward_input_bf16(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                   const __nv_bfloat16* weight, const float* mean, const float* rstd, int N, int C,
                                   cudaStream_t stream) {
  detail::layernorm_backward_input(dinp, dout, inp, weight, mean, rstd, N, C, stream);
}

size_t layernorm_backward_weight_bf16_scratch_floats(int N, int C) {
  return 2 * size_t(detail::layernorm_weight_chunks(N, kLayerNormBf16RowsPerChunk)) * C;
}

void layernorm_backward_weight_bf16(float* dweight, float* dbias, const __nv_bfloat16* dout,
                                    const __nv_bfloat16* inp, const float* mean, const float* rstd, int N, int C,
                                    float* scratch, cudaStream_t stream) {
  detail::layernorm_backward_weight<__nv_bfloat16, kLayerNormBf16RowsPerChunk>(
      dweight, dbias, dout, inp, mean, rstd, N, C, scratch, stream, "layernorm_backward_weight_bf16");
}

}  // namespace pt::cuda
