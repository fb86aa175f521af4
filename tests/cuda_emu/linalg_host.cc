// The cuBLAS/cuSOLVER functions of optim/cuda/linalg.h on the emulator: their CPU
// twins (optim/linalg.h), which run directly on the emulator's host-memory "device"
// buffers. Lets optim/cuda/basis_rotation.cu's own kernels run emulated around them;
// linalg.cu itself (library calls only, no kernels) is not what the emulator checks.
#include "optim/cuda/linalg.h"

#include "optim/linalg.h"
#include "tests/cuda_emu/emu.h"

namespace pt::cuda {

void gemm(bool trans_a, bool trans_b, int r, int c, int k, float alpha, const float* A, const float* B, float beta,
          float* C, cudaStream_t stream) {
  emu::synchronize(stream);  // runs now, after its stream's pending work
  const emu::DeviceAccess access;
  pt::gemm(trans_a, trans_b, r, c, k, alpha, A, B, beta, C);
}

void sym_eig_desc(const float* X, int n, float* Q, float* lambda, cudaStream_t stream) {
  emu::synchronize(stream);
  const emu::DeviceAccess access;
  pt::sym_eig_desc(X, n, Q, lambda);
}

void qr_q(float* A, int n, cudaStream_t stream) {
  emu::synchronize(stream);
  const emu::DeviceAccess access;
  pt::qr_q(A, n);
}

}  // namespace pt::cuda
