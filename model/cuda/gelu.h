// GELU, tanh approximation as in GPT-2, on the GPU (fp32); twin of model/cpu/gelu.h.
// Elementwise; dinp may alias dout and out may alias inp. tanh is CUDA's tanhf
// (max 2 ulp), not the CPU twin's exp-based form, so results agree to ~1e-7
// absolute in tanh, not bitwise.
#pragma once

#include <cuda_runtime.h>

namespace pt::cuda {

// out (N) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), inp (N).
void gelu_forward(float* out, const float* inp, int N, cudaStream_t stream);

// dinp (N) = gelu'(inp) * dout.  inp, dout (N).
void gelu_backward(float* dinp, const float* inp, const float* dout, int N, cudaStream_t stream);

// The same with each operand fp32 (flag false) or bf16 (true; real bf16 storage,
// model/bf16_storage_backend.h): bf16 loads widened, bf16 stores rounded once (RNE),
// the fp32 arithmetic above; the fp32/fp32 instance is the kernel of the fp32 forms.
void gelu_forward_typed(void* out, bool out_bf16, const void* inp, bool inp_bf16, int N, cudaStream_t stream);
void gelu_backward_typed(void* dinp, bool dinp_bf16, const void* inp, bool inp_bf16, const void* dout,
                         bool dout_bf16, int N, cudaStream_t stream);

}  // namespace pt::cuda
