// Fully connected layer on cuBLASLt (fp32); twin of model/cpu/matmul.h, PyTorch
// weight layout (OC, C): out = inp · weightᵀ + bias. Input gradient written (=),
// weight gradient accumulated (+=, GEMM beta = 1), bias gradient accumulated (+=)
// by a deterministic column-sum kernel (fixed row partition and combine tree; the
// cuBLASLt BGRAD epilogue writes rather than accumulates, and its fp32 support is
// layout-dependent, so it is not used).
// Precision: by default compute type CUBLAS_COMPUTE_32F, i.e. true fp32 FMA, TF32
// off. That keeps GPU-vs-CPU differences at fp32 accumulation-order level (~K·eps
// relative to the sum of |terms|). tf32 = true (runtime.tf32) selects
// CUBLAS_COMPUTE_32F_FAST_TF32: the tensor cores multiply inputs rounded to TF32
// (10-bit mantissa, ~2^-11 relative per product) and accumulate in fp32; still
// deterministic run to run (its own plan cache), but no longer CPU-twin grade.
// Plans (model/cuda/matmul_plan.h): one cuBLASLt descriptor set + heuristic choice per key (device, M, N, K,
// transposes, epilogue, operand alignments), created on first use and reused, so
// a given shape always runs the same algorithm (bitwise reproducible run to run).
// Each stream gets its own cuBLASLt workspace, so GEMMs on different streams may
// overlap. Pointers must be 4-byte aligned (any fp32 slice is).
#pragma once

#include <cuda_runtime.h>

namespace pt::cuda {

// out (N, OC) = inp (N, C) · weight (OC, C)ᵀ + bias (OC); bias may be null.
// The bias is a cuBLASLt epilogue when bias is 16-byte aligned; otherwise out is
// pre-filled with the bias and the GEMM accumulates onto it (as the CPU twin does).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC,
                    cudaStream_t stream, bool tf32 = false);

// pre_gelu (N, OC) = inp · weightᵀ + bias; out (N, OC) = gelu(pre_gelu) (tanh
// approximation) — the fused form of matmul_forward + gelu_forward. Uses the
// cuBLASLt GELU_AUX_BIAS epilogue when the heuristic offers an algorithm for it,
// else matmul_forward + gelu_forward (the choice is part of the cached plan).
// bias (OC) must not be null.
void matmul_forward_gelu(float* out, float* pre_gelu, const float* inp, const float* weight, const float* bias,
                         int N, int C, int OC, cudaStream_t stream, bool tf32 = false);

// dinp (N, C) = dout (N, OC) · weight (OC, C).
void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC,
                           cudaStream_t stream, bool tf32 = false);

// dweight (OC, C) += dout (N, OC)ᵀ · inp (N, C); dbias (OC) += sum_n dout (dbias may be null).
void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C, int OC,
                            cudaStream_t stream, bool tf32 = false);

// Drops every cached plan, workspace and the cuBLASLt handle (tests, shutdown).
// Must not race with matmul calls.
void matmul_release_plans();

}  // namespace pt::cuda
