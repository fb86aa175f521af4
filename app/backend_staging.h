// Host code and collectives over a stage's backend memory (model/stage_model.h, memory
// contract). A range of params()/grads() goes to host code or to a collective as it is
// where they can take it: host-addressable memory (the CPU backend), or device memory
// handed to a collective that sums device buffers (Collectives::sums_device_memory: NCCL
// over the data-parallel group). Otherwise it is STAGED: downloaded to a host buffer, used
// there, and uploaded again if written; these transfers are counted in the model's
// transfers() like every other. Both ways give the same bits (same operations, same order).
#pragma once

#include <cstddef>
#include <functional>

#include "model/stage_model.h"
#include "pipeline/collectives.h"

namespace pt {

enum class HostAccess { kRead, kWrite, kReadWrite };

// Runs fn(host pointer to n floats) on the range p of m's params() or grads(): p itself when
// the host may address it, else a staged copy (downloaded first unless kWrite, uploaded after
// unless kRead). A write into params() is followed by params_written().
void on_host(StageModel& m, float* p, size_t n, HostAccess access, const std::function<void(float*)>& fn);

// Whether a sum over `g` can be handed m's backend memory directly: host memory, or device
// memory and a collective that sums device buffers over g (after m.synchronize()). Under the
// test switch PIPETRAIN_TEST_DEVICE_SPACE=nccl data-parallel sums count as taking device
// memory, as the NCCL ones do (model/stage_model_factory.h).
bool sum_takes_backend_memory(const Collectives& c, Group g, const StageModel& m);

}  // namespace pt
