// Fully connected layer on cuBLASLt with bf16 operands and fp32 accumulation; CPU
// twin model/cpu/matmul_bf16.h (same names, argument order, layouts and rounding
// points). PyTorch weight layout (OC, C): out = inp · weightᵀ + bias.
//
// Types (cuBLASLt: compute type CUBLAS_COMPUTE_32F, scale type CUDA_R_32F, A and B
// CUDA_R_16BF, i.e. bf16 tensor-core MMAs with fp32 accumulation):
//   forward          out, pre_gelu (N, OC) bf16 (C = D = CUDA_R_16BF); bias (OC) bf16
//                    (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = CUDA_R_16BF, which is the
//                    default "same as D" for a bf16 D, set explicitly).
//   backward_input   dinp (N, C) bf16 (C = D = CUDA_R_16BF), written (=).
//   *_fp32out        out / dinp fp32 (C = D = CUDA_R_32F, as backward_weight), not
//                    rounded; the forward's bias fp32 (OC), added as a prefill of D
//                    (beta = 1), so fp32(Σ + bias) as the fp32 GEMM.
//   backward_weight  dweight (OC, C) fp32 (C = D = CUDA_R_32F, bf16 A/B: a listed
//                    cublasLtMatmul combination for CUBLAS_COMPUTE_32F), accumulated
//                    with beta = 1, so gradients of several micro-batches sum in fp32;
//                    dbias (OC) fp32 += column sums of dout by a small deterministic
//                    kernel (fixed row partition and combine tree; the BGRADB epilogue
//                    writes its result in the output type instead of accumulating).
// Rounding: the fp32 accumulator (plus the bias, in fp32) is rounded to bf16 once
// when D is bf16. The fused GELU (matmul_forward_gelu_bf16) uses the cuBLASLt
// GELU_AUX_BIAS epilogue: out = bf16(gelu(p)) and pre_gelu = bf16(p) (the aux
// output, whose type defaults to D's, bf16; leading dimension OC) for the GELU
// backward, p = fp32 accumulator + bias. When cuBLASLt offers no algorithm for it,
// the fallback is a BIAS GEMM into pre_gelu and a GELU kernel on the *rounded*
// pre_gelu (out = bf16(gelu(bf16(p))), one extra rounding; the choice is cached per
// plan and the gpu test's tolerance covers both).
//
// Requirements (checked with PT_CHECK_MSG, fatal otherwise):
//  * every bf16 pointer (inp, weight, bias, out, pre_gelu, dout, dinp), dweight and the
//    fp32 out / dinp of the *_fp32out forms 16-byte aligned (cudaMalloc gives 256; a sub-tensor must start on a 16-byte
//    boundary), and C % 8 == 0 and OC % 8 == 0, so every row of every bf16 operand
//    starts on a 16-byte boundary: cuBLASLt's bf16 tensor-core kernels load 16-byte
//    vectors, and the GELU aux leading dimension must be a multiple of 8 (cublasLt.h,
//    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD). N is unrestricted. (GPT-2's vocabulary
//    50257 would need padding to a multiple of 8, e.g. 50304, for the LM head.)
//  * dbias and the fp32 bias of matmul_forward_bf16_fp32out have no alignment
//    requirement (scalar fp32 loads/stores).
// Plans: an instance of the shared plan cache (model/cuda/matmul_plan.h), separate
// from the fp32 one: one descriptor set + heuristic choice per key (device, m, n, k,
// transposes, epilogue, output type, operand alignments), created on first use and
// reused, so a shape always runs the same algorithm (bitwise reproducible run to
// run). Its own cuBLASLt handle and per-stream 32 MiB workspaces.
//
// Status: compiled for sm_90; NOT yet run on a GPU (none in the task that wrote it):
// tests/model/cuda/bf16_ops_test.cc compares every function with the twin on a GPU.
// Used by training through the CUDA backend's bf16 mode (the *_fp32out forms and
// matmul_backward_weight_bf16; on real bf16 storage matmul_forward_bf16,
// matmul_backward_input_bf16, for the fc layer matmul_forward_gelu_bf16 and for the MLP
// projection's input gradient matmul_backward_input_dgelu_bf16; model/cuda/cuda_backend.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace pt::cuda {

// out (N, OC) = bf16(inp (N, C) · weight (OC, C)ᵀ + bias (OC)); bias may be null.
void matmul_forward_bf16(__nv_bfloat16* out, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                         const __nv_bfloat16* bias, int N, int C, int OC, cudaStream_t stream);

// pre_gelu (N, OC) = bf16(p), out (N, OC) = bf16(gelu(p)), p = inp · weightᵀ + bias
// (tanh GELU). bias must not be null.
void matmul_forward_gelu_bf16(__nv_bfloat16* out, __nv_bfloat16* pre_gelu, const __nv_bfloat16* inp,
                              const __nv_bfloat16* weight, const __nv_bfloat16* bias, int N, int C, int OC,
                              cudaStream_t stream);

// out (N, OC) fp32 = inp · weightᵀ + bias (fp32 (OC), may be null), no rounding: the
// CUDA backend's bf16 mode (cuda_backend.h), whose stage model rounds each output.
void matmul_forward_bf16_fp32out(float* out, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                                 const float* bias, int N, int C, int OC, cudaStream_t stream);

// dinp (N, C) = bf16(dout (N, OC) · weight (OC, C)).
void matmul_backward_input_bf16(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* weight,
                                int N, int C, int OC, cudaStream_t stream);

// dinp (N, C) = bf16(gelu'(pre_gelu) · (dout (N, OC) · weight (OC, C))), pre_gelu (N, C)
// bf16 (the forward's aux output): the cuBLASLt DGELU epilogue (aux = pre_gelu, leading
// dimension C), one rounding. When cuBLASLt offers no algorithm for it (choice cached per
// plan, as the GELU forward), the fallback is matmul_backward_input_bf16 then
// gelu_backward_typed in place (the unfused ops: the sum rounded to bf16 first).
// gelu' is cuBLASLt's (undocumented formula; the gpu test's bound vs the tanh form
// is in tests/model/cuda/bf16_ops_test.cc).
void matmul_backward_input_dgelu_bf16(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* weight,
                                      const __nv_bfloat16* pre_gelu, int N, int C, int OC, cudaStream_t stream);

// dinp (N, C) fp32 = dout (N, OC) · weight (OC, C), no rounding (as the forward above).
void matmul_backward_input_bf16_fp32out(float* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* weight, int N,
                                        int C, int OC, cudaStream_t stream);

// dweight (OC, C) += dout (N, OC)ᵀ · inp (N, C) and dbias (OC) += Σ_n dout, in fp32
// (dbias may be null).
void matmul_backward_weight_bf16(float* dweight, float* dbias, const __nv_bfloat16* dout,
                                 const __nv_bfloat16* inp, int N, int C, int OC, cudaStream_t stream);

// Drops every cached bf16 plan, workspace and the handle (tests, shutdown). Must not
// race with bf16 matmul calls.
void matmul_bf16_release_plans();

}  // namespace pt::cuda
