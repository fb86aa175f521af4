// The CUDA IpcMemory in a binary built without CUDA: make_cuda_ipc_memory fails with a
// Status that says so (the ipc transport then needs the cpu backend's shm stand-in).
#include "pipeline/ipc_memory.h"

#define PT_NO_CUDA_IPC_WHY "this binary was built without CUDA, so it has no CUDA IPC; rebuild with -DPIPETRAIN_CUDA=ON"

namespace pt {

bool cuda_ipc_built() { return false; }

std::unique_ptr<IpcMemory> make_cuda_ipc_memory(int, Status* status) {
  *status = Status::error(PT_NO_CUDA_IPC_WHY " or use the mpi transport");
  return nullptr;
}

}  // namespace pt
