// Device-resident basis_rotation state (MemorySpace::kDevice), the device twin of the
// host path of optim/basis_rotation.cc: the moments and every basis and statistic live
// in device memory (BasisRotationState's vectors are their host mirror, synchronized by
// sync_to_host / sync_to_device). A step applies cuda::adamw_update_multi to the tensors
// that are not rotated and cuda::rotated_adam_update (optim/cuda/basis_rotation.h) to
// each rotated matrix, on the buffers' stream. Built with CUDA (basis_rotation_state.cc);
// without it (basis_rotation_state_stub.cc) both functions stop the job.
// Host-compiled header; make_basis_rotation (optim/basis_rotation.h) calls these for kDevice.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "optim/optimizer.h"

namespace pt {

std::unique_ptr<OptimizerState> make_basis_rotation_device_state(const std::vector<OptimTensor>& layout, size_t n,
                                                                 const BasisRotationOptions& o);

// One update of device params from device grads (b.space == kDevice, b.stream).
void basis_rotation_step_device(OptimizerState& state, const StageBuffers& b, const OptimizerOptions& o,
                                const StepArgs& a);

}  // namespace pt
