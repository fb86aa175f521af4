// A StageModel that runs on any Backend: the same stage code serves the CPU
// backend (make_cpu_stage_model is this with make_cpu_backend()) and the CUDA
// backend (make_cuda_backend, model/cuda/cuda_backend.h). Invariants are those of
// stage_model.h. params()/grads() are host memory either way: the backend's own
// buffers when Backend::host_memory(), else pinned host mirrors synchronized by
// sync_params_to_device()/sync_grads_to_host(). Backends are chosen from the
// config by model/stage_model_factory.h. precision: model/precision.h; how bf16 is
// stored and where it is rounded is written at the top of stage_model.cc.
#pragma once

#include <memory>

#include "model/backend.h"
#include "model/precision.h"
#include "model/stage_model.h"

namespace pt {

std::unique_ptr<StageModel> make_backend_stage_model(std::unique_ptr<Backend> backend, const ModelConfig& config,
                                                     const StageSpec& spec, int B, int T,
                                                     Precision precision = Precision::kFp32,
                                                     const StageNeeds& needs = {});

}  // namespace pt
