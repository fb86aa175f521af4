// Builds without CUDA: there is no device-resident basis_rotation state (see
// basis_rotation_state.h); nothing in such a build asks for MemorySpace::kDevice.
#include "common/check.h"
#include "optim/cuda/basis_rotation_state.h"

namespace pt {

std::unique_ptr<OptimizerState> make_basis_rotation_device_state(const std::vector<OptimTensor>&, size_t,
                                                                 const BasisRotationOptions&) {
  PT_CHECK_MSG(false, "basis_rotation: device-resident optimizer state needs a CUDA build of pipetrain");
  return nullptr;
}

void basis_rotation_step_device(OptimizerState&, const StageBuffers&, const OptimizerOptions&, const StepArgs&) {
  PT_CHECK_MSG(false, "basis_rotation: stepping device buffers needs a CUDA build of pipetrain");
}

}  // namespace pt
