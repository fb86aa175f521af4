// Fully connected layer out = inp · weightᵀ + bias (CPU, OpenBLAS sgemm), with the
// PyTorch weight layout (OC, C). The backward is split: the input gradient is
// written (=); the weight/bias gradients accumulate (+=). The bias sum runs
// serially over rows so it does not depend on threading.
#pragma once

namespace pt::cpu {

// out (N, OC) = inp (N, C) · weight (OC, C)ᵀ + bias (OC); bias may be null.
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC);

// dinp (N, C) = dout (N, OC) · weight (OC, C).
void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC);

// dweight (OC, C) += dout (N, OC)ᵀ · inp (N, C); dbias (OC) += sum_n dout (dbias may be null).
void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C,
                            int OC);

}  // namespace pt::cpu
