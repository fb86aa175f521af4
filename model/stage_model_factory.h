// The one place that picks a StageModel implementation from runtime.backend:
//   cpu  : make_cpu_stage_model (fp32, OpenBLAS).
//   cuda : the same stage code on the CUDA backend (model/cuda/cuda_backend.h),
//          params/grads and the step in device memory (stage_model.h, memory
//          contract). Only in binaries built with CUDA (PIPETRAIN_HAVE_CUDA).
//   auto : cuda when the binary has CUDA and a GPU is visible, else cpu.
// Asking for cuda where it cannot run is a Status error naming the key
// runtime.backend and the reason (not built in, or cudaGetDeviceCount's error).
// Test switch: PIPETRAIN_TEST_DEVICE_SPACE=1 makes cpu stage models treat their
// memory as device memory like cuda (test_device_space below); tests only.
// PIPETRAIN_TEST_BF16_STORAGE=1 makes cpu stage models in bf16 store their bf16
// tensors really as bf16, as cuda does (test_bf16_storage below); tests only.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "model/backend.h"
#include "model/config.h"
#include "model/precision.h"
#include "model/stage_model.h"

namespace pt {

// The test switch PIPETRAIN_TEST_DEVICE_SPACE (stage_model_factory.cc): "" (off), "1"
// (cpu stage models emulate device memory) or "nccl" (also device-memory data-parallel sums).
std::string test_device_space();

// The test switch PIPETRAIN_TEST_BF16_STORAGE (stage_model_factory.cc): true when "1".
bool test_bf16_storage();

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
// precision (runtime.precision): both backends round bf16 values at the same points
// (stage_model.cc); in bf16 the CUDA backend stores the bf16 activations and activation
// gradients as real bf16 (make_bf16_storage_backend) and runs the GEMMs on the bf16
// kernels where the shapes allow (cuda_backend.h), the CPU keeps them in fp32
// containers and runs fp32 ops.
// needs: what the caller's schedule uses (stage_model.h), passed on unchanged.
// options: backend settings (runtime.tf32); the cpu backend has none to apply.
// options.precision is ignored: precision is what the backend receives.
Status make_stage_model(const std::string& backend, int device, const ModelConfig& config, const StageSpec& spec,
                        int B, int T, std::unique_ptr<StageModel>* out, Precision precision = Precision::kFp32,
                        const StageNeeds& needs = {}, const BackendOptions& options = {});

}  // namespace pt
