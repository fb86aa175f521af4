// Where a buffer lives: host memory, or the device memory of the run's backend.
// Shared by the optimizer (optim/optimizer.h) and the stage-boundary buffers
// (model/boundary_memory.h).
#pragma once

namespace pt {

enum class MemorySpace { kHost, kDevice };

}  // namespace pt
