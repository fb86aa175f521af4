// Builds without CUDA: there is no device-resident AdamW state (see adamw_state.h);
// nothing in such a build asks for MemorySpace::kDevice, so a call is a programming error.
#include "common/check.h"
#include "optim/cuda/adamw_state.h"

namespace pt {

std::unique_ptr<OptimizerState> make_adamw_device_state(const std::vector<OptimTensor>&, size_t) {
  PT_CHECK_MSG(false, "adamw: device-resident optimizer state needs a CUDA build of pipetrain");
  return nullptr;
}

void adamw_step_device(OptimizerState&, const StageBuffers&, const OptimizerOptions&, const StepArgs&) {
  PT_CHECK_MSG(false, "adamw: stepping device buffers needs a CUDA build of pipetrain");
}

}  // namespace pt
