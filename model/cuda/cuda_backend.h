// The fp32 CUDA Backend (model/backend.h) on the kernels of model/cuda: device
// memory from cudaMalloc, one CUDA stream per backend on which every op and copy
// is issued in order, and pinned host memory for the stage model's params/grads
// mirrors (alloc_host). copy/upload/download accept host or device pointers on
// either side (cudaMemcpyDefault, unified addressing) and return only when a host
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
// of convert_bf16.h, bitwise equal to the CPU's; the ops stay the fp32 kernels (the
// bf16 kernels are not wired in yet). Not yet run on a GPU.
// Only the CUDA runtime is used (never libcuda), so a CUDA build starts without a
// GPU and cuda_device_count() reports why none is usable.
// Not included by host-only code paths: the stage model factory includes it only
// when the build has CUDA (PIPETRAIN_WITH_CUDA). No CUDA header is needed here.
#pragma once

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

// A backend on `device` (0 <= device < cuda_device_count()). Every call makes
// that device current for the calling thread before it issues work. options.tf32:
// every fp32 GEMM uses TF32 compute (model/cuda/matmul.h).
std::unique_ptr<Backend> make_cuda_backend(int device, const BackendOptions& options = {});

}  // namespace pt
