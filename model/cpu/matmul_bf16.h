// CPU twin of the bf16 fully connected layer (model/cuda/matmul_bf16.h): same names,
// argument order and layouts (PyTorch weight layout (OC, C)), computed in fp32 from
// bf16 inputs and rounded to bf16 at the kernels' rounding points:
//   matmul_forward_bf16        out  = bf16(fp32(Σ_c inp·w) + bias)
//   matmul_forward_gelu_bf16   pre_gelu = bf16(p), out = bf16(gelu(p)),
//                              p = fp32(Σ_c inp·w) + bias  (GELU of the unrounded p,
//                              as the cuBLASLt GELU_AUX_BIAS epilogue does)
//   matmul_backward_input_bf16 dinp = bf16(fp32(Σ_o dout·w))
//   matmul_backward_input_dgelu_bf16  dinp = bf16(gelu'(pre) · fp32(Σ_o dout·w)), one
//                              rounding (the cuBLASLt DGELU epilogue; the unfused
//                              GEMM + gelu_backward rounds the sum to bf16 first)
//   *_fp32out                  the same with an fp32 output and no rounding (the
//                              forward's bias fp32 too): the CUDA backend's bf16
//                              mode, whose stage model rounds every output itself
//                              (model/cuda/cuda_backend.h)
//   matmul_backward_weight_bf16 dweight (fp32) += fp32(Σ_n dout·inp),
//                              dbias (fp32) += fp32(Σ_n dout)   (no bf16 rounding)
// Products of two bf16 values are exact in fp32 (8 + 8 significant bits), so the
// twin and the kernels differ only by fp32 summation order (the kernels sum on
// tensor cores, the twin serially over the reduction index) and, for bf16 outputs,
// a one-ulp flip where the two fp32 values straddle a bf16 rounding boundary.
// GELU is the tanh approximation of model/cpu/gelu.h. Not fast: plain loops, for
// tests; the CPU backend trains with the fp32 ops (the CUDA backend's bf16 mode runs
// the kernels of the *_fp32out forms and the weight gradient). No alignment or size requirements here (the
// kernels' requirements are in model/cuda/matmul_bf16.h).
#pragma once

#include "model/cpu/bf16.h"

namespace pt::cpu {

// out (N, OC) = bf16(inp (N, C) · weight (OC, C)ᵀ + bias (OC)); bias may be null.
void matmul_forward_bf16(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C, int OC);

// pre_gelu (N, OC) = bf16(p), out (N, OC) = bf16(gelu(p)), p = inp · weightᵀ + bias
// in fp32. bias must not be null.
void matmul_forward_gelu_bf16(bf16* out, bf16* pre_gelu, const bf16* inp, const bf16* weight, const bf16* bias,
                              int N, int C, int OC);

// out (N, OC) fp32 = inp (N, C) · weight (OC, C)ᵀ + bias (OC, fp32); bias may be null.
void matmul_forward_bf16_fp32out(float* out, const bf16* inp, const bf16* weight, const float* bias, int N, int C,
                                 int OC);

// dinp (N, C) = bf16(dout (N, OC) · weight (OC, C)).
void matmul_backward_input_bf16(bf16* dinp, const bf16* dout, const bf16* weight, int N, int C, int OC);

// dinp (N, C) = bf16(gelu'(pre (N, C)) · (dout (N, OC) · weight (OC, C))): the product
// in fp32, gelu' the tanh form of gelu_backward (model/cpu/gelu.h).
void matmul_backward_input_dgelu_bf16(bf16* dinp, const bf16* dout, const bf16* weight, const bf16* pre, int N,
                                      int C, int OC);

// dinp (N, C) fp32 = dout (N, OC) · weight (OC, C).
void matmul_backward_input_bf16_fp32out(float* dinp, const bf16* dout, const bf16* weight, int N, int C, int OC);

// dweight (OC, C) += dout (N, OC)ᵀ · inp (N, C) and dbias (OC) += Σ_n dout, both fp32
// (dbias may be null).
void matmul_backward_weight_bf16(float* dweight, float* dbias, const bf16* dout, const bf16* inp, int N, int C,
                                 int OC);

}  // namespace pt::cpu
