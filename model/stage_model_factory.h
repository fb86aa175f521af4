// The one place that picks a StageModel implementation from runtime.backend:
//   cpu  : make_cpu_stage_model (fp32, OpenBLAS).
//   cuda : the same stage code on the CUDA backend (model/cuda/cuda_backend.h),
//          params/grads mirrored in pinned host memory (stage_model.h, host/device
//          contract). Only in binaries built with CUDA (PIPETRAIN_HAVE_CUDA).
//   auto : cuda when the binary has CUDA and a GPU is visible, else cpu.
// Asking for cuda where it cannot run is a Status error naming the key
// runtime.backend and the reason (not built in, or cudaGetDeviceCount's error).
// Test switch: PIPETRAIN_TEST_SEPARATE_HOST_MIRRORS=1 makes cpu stage models keep
// separate host mirrors like cuda (see stage_model_factory.cc); tests only.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "model/backend.h"
#include "model/config.h"
#include "model/precision.h"
#include "model/stage_model.h"

namespace pt {

// Whether this binary contains the CUDA backend.
bool cuda_backend_built();

// Usable GPUs: 0 when the binary has no CUDA or none is visible; *why (if not
// null) then says why.
int usable_gpu_count(std::string* why);

// Name of the GPU a stage model made with this `device` runs on (the same modulo
// as make_stage_model), e.g. "NVIDIA H100 80GB HBM3" (cudaGetDeviceProperties);
// "" when the binary has no CUDA, no GPU is visible or the query fails.
std::string gpu_device_name(int device);

// "auto" | "cpu" | "cuda" -> "cpu" | "cuda" in *resolved, or an error (message
// starts with "key 'runtime.backend': ") when cuda cannot run here.
Status resolve_backend(const std::string& requested, std::string* resolved);

// A stage model on `backend` (any value resolve_backend accepts). device: the GPU
// for cuda, taken modulo the number of usable GPUs so that several ranks of a node
// share them round robin (callers pass the node-local rank); ignored by cpu.
// Also rejects model shapes the CUDA kernels do not support (key model.n_head).
// precision (runtime.precision): both backends run bf16 the same way, fp32 ops on
// bf16-rounded storage (stage_model.cc); the CUDA bf16 kernels are not used yet.
// needs: what the caller's schedule uses (stage_model.h), passed on unchanged.
// options: backend settings (runtime.tf32); the cpu backend has none to apply.
Status make_stage_model(const std::string& backend, int device, const ModelConfig& config, const StageSpec& spec,
                        int B, int T, std::unique_ptr<StageModel>* out, Precision precision = Precision::kFp32,
                        const StageNeeds& needs = {}, const BackendOptions& options = {});

}  // namespace pt
