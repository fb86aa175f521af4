// LayerNorm on the GPU (fp32); see layernorm.h. The kernels are the element-type
// templates of layernorm_kernels.cuh with T = float.
#include "model/cuda/layernorm.h"

#include "model/cuda/layernorm_kernels.cuh"

namespace pt::cuda {

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, cudaStream_t stream) {
  detail::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, stream);
}

void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                              const float* mean, const float* rstd, int N, int C, cudaStream_t stream) {
  detail::layernorm_backward_input(dinp, dout, inp, weight, mean, rstd, N, C, stream);
}

size_t layernorm_backward_weight_scratch_floats(int N, int C) {
  return 2 * size_t(detail::layernorm_weight_chunks(N, kLayerNormRowsPerChunk)) * C;
}

void layernorm_forward_bf16act(__nv_bfloat16* out, float* mean, float* rstd, const __nv_bfloat16* inp,
                               const float* weight, const float* bias, int N, int C, cudaStream_t stream) {
  detail::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, stream);
}

void layernorm_backward_input_bf16act(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                      const float* weight, const float* mean, const float* rstd, int N, int C,
                                      cudaStream_t stream) {
  detail::layernorm_backward_input(dinp, dout, inp, weight, mean, rstd, N, C, stream);
}

void layernorm_backward_weight_bf16act(float* dweight, float* dbias, const __nv_bfloat16* dout,
                                       const __nv_bfloat16* inp, const float* mean, const float* rstd, int N, int C,
                                       float* scratch, cudaStream_t stream) {
  detail::layernorm_backward_weight<__nv_bfloat16, kLayerNormRowsPerChunk>(
      dweight, dbias, dout, inp, mean, rstd, N, C, scratch, stream, "layernorm_backward_weight_bf16act");
}

void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* mean, const float* rstd, int N, int C, float* scratch,
                               cudaStream_t stream) {
  detail::layernorm_backward_weight<float, kLayerNormRowsPerChunk>(dweight, dbias, dout, inp, mean, rstd, N, C,
                                                                   scratch, stream, "layernorm_backward_weight");
}

}  // namespace pt::cuda
