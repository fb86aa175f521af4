// The NCCL entry points of transport.h in a binary built without CUDA: each one
// fails with a Status that says so (transport_select never picks nccl here).
#include "pipeline/transport.h"

// PT_NO_NCCL_WHY: why the binary has none (tests/cuda_emu's pipetrain_cuda_emu sets its own).
#ifndef PT_NO_NCCL_WHY
#define PT_NO_NCCL_WHY "this binary was built without CUDA, so it has no NCCL and no GPU; rebuild with -DPIPETRAIN_CUDA=ON"
#endif

namespace pt {
namespace {
Status not_built() { return Status::error(PT_NO_NCCL_WHY " or use the mpi transport"); }
}  // namespace

bool nccl_transport_built() { return false; }

std::unique_ptr<Transport> make_nccl_transport(MPI_Comm, int, const std::vector<std::pair<int, int>>&,
                                               Status* status) {
  *status = not_built();
  return nullptr;
}

std::unique_ptr<AllReducer> make_nccl_all_reducer(MPI_Comm, int, Status* status) {
  *status = not_built();
  return nullptr;
}

Status local_cuda_device(int, int*, std::string*) { return not_built(); }

}  // namespace pt
