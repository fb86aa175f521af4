// The CUDA Backend (model/backend.h) on the kernels of model/cuda: device
// memory from cudaMalloc, one CUDA stream per backend on which every op and copy
// is issued in order (stream()), and the step ops (sums_of_squares through the
// global-norm kernel of optim/cuda/global_norm.h, add). copy/upload/download
// accept host or device pointers on either side (cudaMemcpyDefault, unified
// addressing) and return only when a host
// destination holds the data and a host source may be reused; device-to-device
// copies and ops are asynchronous on the stream (synchronize() waits for them).
// peak_device_bytes() is the high-water mark of this backend's own cudaMalloc
// allocations (a size per pointer, tracked in alloc/free).
// Deviations from the CPU backend, all inside this class (the kernels are the
// model/cuda twins): attention saves lse (B, NH, T) instead of att (B, NH, T, T)
// and its backward reads the forward output; encoder and LayerNorm weight
// backwards use workspaces the backend owns. Numerics: see each kernel's header
// (bitwise equal to the CPU for encoder and residual; fp32 sum-order and exp
// differences elsewhere; deterministic run to run everywhere).
// bf16 storage (runtime.precision: bf16): round_to_bf16 is the in-place RNE kernel
// of convert_bf16.h, bitwise equal to the CPU's. A backend made with
// BackendOptions::precision = bf16 runs the three GEMMs on the bf16 cuBLASLt kernels
// (model/cuda/matmul_bf16.h: tensor-core bf16 products, fp32 accumulation) whenever
// C and OC are multiples of 8 and the fp32 output (out, dinp, dweight) is 16-byte
// aligned, else on the fp32 kernels (e.g. GPT-2's vocabulary 50257 in the LM head).
// The fp32 operands are converted (RNE, convert_fp32_to_bf16) into bf16 scratch
// buffers the backend owns (grown on demand, reused, in peak_device_bytes);
// the outputs are fp32: forward and input gradient through the *_fp32out forms (not
// rounded: the stage model rounds every GEMM output right after, where a bf16-output
// kernel would round, so the stored value is the same single RNE of the fp32
// accumulator + bias; the fc GEMM's unrounded output also feeds the GELU, as in the
// fused epilogue), weight gradients accumulated in fp32 (+=). Every operand the
// stage model passes in bf16 mode is already bf16-valued (weights: the rounded copy
// wparams_; activations and activation gradients: rounded after their producer,
// stage_model.cc), so the conversion is exact and the bf16 GEMM computes the same
// exact products as the fp32 GEMM on those values: results differ from the fp32
// kernels (and the CPU) only by fp32 summation order, and the stored bf16 by the
// rare one-ulp flip where that straddles a rounding boundary. Attention runs on
// the bf16 flash kernels (model/cuda/attention_bf16.h) when the head size is 32, 64
// or 128, else on the fp32 ones: qkv, dout and the forward output (bf16-valued,
// rounded by the stage model) converted exactly into the scratch, the bf16 out and
// dinp converted back exactly (the single rounding the stage model would apply);
// lse and D fp32 as in the fp32 kernels. Unlike the GEMMs this is not the CPU's
// arithmetic: the flash kernel also rounds P (and dS in the backward) to bf16 before
// its products, where the CPU keeps them fp32 (attention_bf16.h, stage_model.cc).
// LayerNorm, GELU and the rest stay the fp32 kernels on bf16-valued storage.
// Weights are converted once per update, not per call: the stage model declares its
// bf16-valued weight copy wparams_ after each refresh (Backend::set_bf16_weights), the
// backend converts the whole range at once into a persistent bf16 buffer (2 bytes per
// parameter, in peak_device_bytes; freed with the backend) and serves every operand
// lying inside the range from it at the same offset, when that bf16 address is 256-byte
// aligned (the scratch's alignment, so the GEMM plan and the result bits are those of
// the per-call conversion; every GPT-2 weight tensor qualifies, C being a multiple of
// 128); other operands (activations, gradients, off-grid weights) are still converted
// per call into the scratch. options.tf32 applies to the fp32 fallback GEMMs.
// Real bf16 activations: make_stage_model wraps a bf16 backend in
// make_bf16_storage_backend (model/bf16_storage_backend.h), so the stage model's bf16
// tensors are 2-byte storage and the float* ops above see only fp32 memory (what is
// said above of them applies to ops the wrapper stages through fp32). The wrapper first
// offers an op its typed entry point (Backend::*_typed, TensorPtr operands): the GEMMs
// read bf16 storage in place (no conversion; only fp32 operands still go through
// to_bf16) and write a bf16 destination directly (matmul_forward_bf16 with the bias
// epilogue, the bias converted from the bf16-valued weight copy; matmul_backward_input_bf16:
// the single RNE of the fp32 accumulator + bias that the stage model's rounding gave),
// an fp32 one through the *_fp32out forms; the fc layer and its GELU run as one GEMM
// (matmul_forward_gelu_typed: the GELU_AUX_BIAS epilogue writes bf16 gelu(p) and bf16 p,
// p the fp32 accumulator + bias, so the stage model keeps no fp32 (N, 4C) pre-activation;
// cuBLASLt's GELU instead of gelu.h's tanhf, bound in tests/model/cuda/bf16_ops_test.cc;
// BackendSizes::fc_gelu_typed, counted by cuda_bf16_fused_gelu_calls); in the backward
// the MLP projection's input-gradient GEMM applies the GELU backward in its DGELU epilogue
// (matmul_backward_input_dgelu_typed, aux = bf16 fch: one rounding instead of two, so
// bf16 CUDA differs from bf16 CPU there; counted by cuda_bf16_fused_dgelu_calls); the flash
// attention reads and writes bf16 storage in place; LayerNorm (forward, both backwards),
// the fused residual + LayerNorm, GELU, the residual add and the cross-entropy run
// templated kernels that load bf16 widened and store bf16 rounded once (layernorm.h,
// residual_layernorm.h, gelu.h, residual.h, crossentropy.h *_typed / *_bf16act forms:
// the fp32 kernels' arithmetic and order);
// device-to-device copies convert in one kernel. Declined (staged by the wrapper): GEMMs
// the bf16 kernels do not take (C or OC not a multiple of 8, unaligned operands),
// attention with other head sizes, LayerNorm with mixed activation dtypes, copies from
// or to host memory. The bf16 D GEMMs may choose another cuBLASLt algorithm than the
// fp32-output ones, so results differ from the fp32-container path by summation order.
// Not yet run on a GPU.
// Only the CUDA runtime is used (never libcuda), so a CUDA build starts without a
// GPU and cuda_device_count() reports why none is usable.
// Not included by host-only code paths: the stage model factory includes it only
// when the build has CUDA (PIPETRAIN_WITH_CUDA). No CUDA header is needed here.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "model/backend.h"

namespace pt {

// Visible CUDA devices. 0 when none is usable; *why (if not null) then receives
// the reason, e.g. cudaGetDeviceCount's error string.
int cuda_device_count(std::string* why);

// The name of CUDA device `device` (cudaDeviceProp::name, e.g. "NVIDIA H100 80GB
// HBM3"), "" when it cannot be queried.
std::string cuda_device_name(int device);

// Largest head size (n_embd / n_head) the CUDA attention kernels support.
int cuda_attention_max_head_size();

// Ops (GEMMs and attention calls) run on the bf16 kernels by every CUDA backend of
// this process so far (bf16 mode, shapes allowed): lets tests check which path a
// shape took.
size_t cuda_bf16_kernel_calls();

// bf16 mode, Backend::set_bf16_weights: conversions of a declared weight range into
// the persistent bf16 buffer (one per declaration, i.e. per refresh of the stage
// model's wparams_, once per update), and GEMM/attention operands served from that
// buffer instead of a per-call conversion, by every CUDA backend of this process.
size_t cuda_bf16_weight_conversions();
size_t cuda_bf16_weight_operands();

// fc + GELU GEMMs run fused (Backend::matmul_forward_gelu_typed) by every CUDA backend of
// this process so far.
size_t cuda_bf16_fused_gelu_calls();

// MLP-projection input-gradient GEMMs run with the GELU backward fused (DGELU epilogue,
// Backend::matmul_backward_input_dgelu_typed) by every CUDA backend of this process so far.
size_t cuda_bf16_fused_dgelu_calls();

// A backend on `device` (0 <= device < cuda_device_count()). Every call makes
// that device current for the calling thread before it issues work. options.tf32:
// every fp32 GEMM uses TF32 compute (model/cuda/matmul.h); options.precision bf16:
// GEMMs and attention on the bf16 kernels where allowed (above).
std::unique_ptr<Backend> make_cuda_backend(int device, const BackendOptions& options = {});

}  // namespace pt
