// Device-resident AdamW (MemorySpace::kDevice), the device twin of the host path of
// optim/adamw.cc: the moments live in device memory (AdamWState's vectors are their
// host mirror, synchronized by sync_to_host / sync_to_device), and a step is one
// cuda::adamw_update_multi (optim/cuda/adamw.h) over the stage's tensors on the
// buffers' stream, each tensor with adamw_params_for. Results differ from the host
// path only by FMA contraction (a few ulp). Built with CUDA (adamw_state.cc); without
// it (adamw_state_stub.cc) both functions stop the job: nothing asks for kDevice there.
// Host-compiled header; make_adamw (optim/adamw.h) calls these for kDevice.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "optim/optimizer.h"

namespace pt {

// Zeroed device moments for a stage of n parameters laid out as `layout`.
std::unique_ptr<OptimizerState> make_adamw_device_state(const std::vector<OptimTensor>& layout, size_t n);

// One AdamW update of device params from device grads (b.space == kDevice, b.stream),
// asynchronous on that stream. `state` comes from make_adamw_device_state.
void adamw_step_device(OptimizerState& state, const StageBuffers& b, const OptimizerOptions& o, const StepArgs& a);

}  // namespace pt
