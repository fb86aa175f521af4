// A StageModel that runs on any Backend: the same stage code serves the CPU
// backend now and a CUDA backend later (make_cpu_stage_model is this with
// make_cpu_backend()). Invariants are those of stage_model.h; in addition the
// backend's params()/grads() pointers must be host-visible.
#pragma once

#include <memory>

#include "model/backend.h"
#include "model/stage_model.h"

namespace pt {

std::unique_ptr<StageModel> make_backend_stage_model(std::unique_ptr<Backend> backend, const ModelConfig& config,
                                                     const StageSpec& spec, int B, int T);

}  // namespace pt
