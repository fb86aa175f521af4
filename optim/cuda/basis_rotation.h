// basis_rotation's per-matrix update on the GPU: twin of pt::rotated_adam_update
// (optim/basis_rotation.h), same steps in the same order, with the GEMMs, the
// eigendecomposition and the QR of optim/cuda/linalg.h and elementwise kernels. Every
// pointer of `s`, W and grads is device memory (null sides as on the CPU). The warm
// refresh's sort runs on the host over the d Rayleigh quotients (one small copy each
// way per refreshed side), with the CPU twin's stable order. Results differ from the
// CPU twin by rounding (FMA contraction, GEMM and solver summation orders) and by the
// signs of eigenvector/QR columns, which the update does not depend on.
// The registry's basis_rotation calls it for kDevice state (optim/cuda/basis_rotation_state.h).
#pragma once

#include <cuda_runtime.h>

#include "optim/basis_rotation.h"

namespace pt::cuda {

void rotated_adam_update(float* W, const float* grads, const RotatedMatrix& s, const RotationPlan& plan,
                         const AdamWParams& hp, const BasisRotationOptions& o, cudaStream_t stream);

}  // namespace pt::cuda
