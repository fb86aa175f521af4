// CUDA runtime checks and device selection of the pipeline's CUDA code (transport_nccl.cc, ipc_memory_cuda.cc):
// any error other than cudaSuccess is fatal, and the message names the world rank and the
// host (several ranks share a node's GPUs, so "which process" matters). CUDA builds only.
#pragma once

#include <cuda_runtime.h>
#include <mpi.h>
#include <unistd.h>

#include <string>

#include "common/check.h"
#include "common/status.h"

namespace pt {

inline std::string where_am_i() {
  int world = -1, initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &world);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return "world rank " + std::to_string(world) + " on " + host;
}

inline std::string cuda_error_detail(cudaError_t rc) {
  return std::string(cudaGetErrorName(rc)) + ": " + cudaGetErrorString(rc) + ", " + where_am_i();
}

// Makes `device` current; a Status (user-fixable: no GPU, wrong device) otherwise.
inline Status use_cuda_device(int device) {
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();
    return Status::error("no usable GPU: cudaGetDeviceCount failed with " + std::string(cudaGetErrorName(rc)) +
                         " (" + where_am_i() + ")");
  }
  if (count == 0) return Status::error("no usable GPU: no CUDA device is visible (" + where_am_i() + ")");
  if (device < 0 || device >= count)
    return Status::error("CUDA device " + std::to_string(device) + " does not exist: " + std::to_string(count) +
                         " visible (" + where_am_i() + ")");
  const cudaError_t set = cudaSetDevice(device);
  if (set != cudaSuccess) {
    (void)cudaGetLastError();
    return Status::error("cudaSetDevice(" + std::to_string(device) + ") failed: " + cudaGetErrorName(set) + " (" +
                         where_am_i() + ")");
  }
  return Status::ok();
}

}  // namespace pt

#define PT_CUDA_RT_CHECK(call)                                                                   \
  do {                                                                                           \
    cudaError_t pt_cuda_rc_ = (call);                                                            \
    if (pt_cuda_rc_ != cudaSuccess)                                                              \
      ::pt::fatal_error(#call, __FILE__, __LINE__, ::pt::cuda_error_detail(pt_cuda_rc_));        \
  } while (0)
