// Error checks for the CUDA runtime and cuBLAS(Lt): any failure goes to the one
// [[noreturn]] reporter pt::fatal_error (common/check.h), which names the rank and
// aborts the job. Only the runtime (cudart) is used, never the driver library, so
// binaries that include this start on machines without a GPU.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "common/check.h"

#define PT_CUDA_CHECK(call)                                                                 \
  do {                                                                                      \
    cudaError_t pt_cuda_rc_ = (call);                                                       \
    if (pt_cuda_rc_ != cudaSuccess)                                                         \
      ::pt::fatal_error(#call, __FILE__, __LINE__,                                          \
                        std::string(cudaGetErrorName(pt_cuda_rc_)) + ": " +                 \
                            cudaGetErrorString(pt_cuda_rc_));                               \
  } while (0)

// After a kernel launch: reports launch-configuration errors (bad grid, too much
// shared memory) at the launcher that caused them, not at a later sync.
#define PT_CUDA_CHECK_LAUNCH() PT_CUDA_CHECK(cudaGetLastError())

#define PT_CUBLAS_CHECK(call)                                                               \
  do {                                                                                      \
    cublasStatus_t pt_cublas_rc_ = (call);                                                  \
    if (pt_cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                             \
      ::pt::fatal_error(#call, __FILE__, __LINE__,                                          \
                        "cuBLAS status " + std::to_string(int(pt_cublas_rc_)));             \
  } while (0)
