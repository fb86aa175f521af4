// Fully connected layer on cuBLASLt; see matmul.h.
// Row-major (N, C) data is column-major (C, N), so every call is phrased as a
// column-major GEMM D (m, n) = op(A) (m, k) · op(B) (k, n):
//   forward          D = outᵀ (OC, N)   = W (C, OC)ᵀ        · inpᵀ (C, N)      m=OC k=C  n=N
//   backward_input   D = dinpᵀ (C, N)   = W (C, OC)         · doutᵀ (OC, N)    m=C  k=OC n=N
//   backward_weight  D = dWᵀ (C, OC)   += inpᵀ (C, N)       · (doutᵀ (OC, N))ᵀ m=C  k=N  n=OC
// The bias epilogue adds a length-m vector to every column of D, i.e. bias[o] to
// every row of the row-major out.
#include "model/cuda/matmul.h"

#include <cstdint>

#include "model/cuda/bias_grad.cuh"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"
#include "model/cuda/gelu.h"
#include "model/cuda/matmul_plan.h"

namespace pt::cuda {
namespace {

using detail::Epilogue;

// One cache per compute type (fp32 FMA, TF32 tensor cores), so a shape's plan and
// algorithm are fixed per mode.
detail::LtPlanCache& cache(bool tf32) {
  // function-local: no global constructor order issues, no ODR trap
  static detail::LtPlanCache fp32(
      detail::LtTypes{"fp32", CUDA_R_32F, /*min_alignment=*/4, /*bias_at_plan=*/false, CUBLAS_COMPUTE_32F});
  static detail::LtPlanCache tf32_cache(detail::LtTypes{"fp32 (tf32 compute)", CUDA_R_32F, /*min_alignment=*/4,
                                                        /*bias_at_plan=*/false, CUBLAS_COMPUTE_32F_FAST_TF32});
  return tf32 ? tf32_cache : fp32;
}

// D = op(A) · op(B) + beta · D with the given epilogue. Returns false only when no
// algorithm exists and allow_missing is set (the GELU epilogue probe).
bool lt_matmul(float* d, const float* a, const float* b, int m, int n, int k, bool ta, bool tb, float beta,
               Epilogue ep, const float* bias, float* aux, cudaStream_t stream, bool tf32, bool allow_missing = false) {
  return cache(tf32).matmul(detail::LtGemm{d, CUDA_R_32F, a, b, m, n, k, ta, tb, beta, ep, bias, aux}, stream,
                            allow_missing);
}

}  // namespace

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC,
                    cudaStream_t stream, bool tf32) {
  if (N == 0 || OC == 0) return;
  if (bias == nullptr) {
    lt_matmul(out, weight, inp, OC, N, C, true, false, 0.0f, Epilogue::kNone, nullptr, nullptr, stream, tf32);
  } else if (detail::aligned16(bias)) {
    lt_matmul(out, weight, inp, OC, N, C, true, false, 0.0f, Epilogue::kBias, bias, nullptr, stream, tf32);
  } else {
    detail::fill_rows_kernel<<<detail::ceil_div(size_t(N) * OC, 256), 256, 0, stream>>>(out, bias, N, OC);
    PT_CUDA_CHECK_LAUNCH();
    lt_matmul(out, weight, inp, OC, N, C, true, false, 1.0f, Epilogue::kNone, nullptr, nullptr, stream, tf32);
  }
}

void matmul_forward_gelu(float* out, float* pre_gelu, const float* inp, const float* weight, const float* bias,
                         int N, int C, int OC, cudaStream_t stream, bool tf32) {
  PT_CHECK_MSG(bias != nullptr, "matmul_forward_gelu needs a bias");
  if (N == 0 || OC == 0) return;
  // cuBLASLt wants the aux leading dimension a multiple of 8 and aligned buffers.
  const bool try_fused = OC % 8 == 0 && detail::aligned16(bias) && detail::aligned16(pre_gelu);
  if (try_fused && lt_matmul(out, weight, inp, OC, N, C, true, false, 0.0f, Epilogue::kGeluAuxBias, bias, pre_gelu,
                             stream, tf32, /*allow_missing=*/true)) {
    return;
  }
  matmul_forward(pre_gelu, inp, weight, bias, N, C, OC, stream, tf32);
  gelu_forward(out, pre_gelu, N * OC, stream);
}

void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC,
                           cudaStream_t stream, bool tf32) {
  if (N == 0 || C == 0) return;
  lt_matmul(dinp, weight, dout, C, N, OC, false, false, 0.0f, Epilogue::kNone, nullptr, nullptr, stream, tf32);
}

void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C, int OC,
                            cudaStream_t stream, bool tf32) {
  if (OC == 0) return;
  if (C > 0 && N > 0) {
    lt_matmul(dweight, inp, dout, C, OC, N, false, true, 1.0f, Epilogue::kNone, nullptr, nullptr, stream, tf32);
  }
  if (dbias != nullptr && N > 0) {
    size_t bytes = 0;
    void* scratch = cache(tf32).workspace(stream, &bytes);
    detail::bias_grad(dbias, dout, N, OC, static_cast<float*>(scratch), bytes / sizeof(float), stream);
  }
}

void matmul_release_plans() {
  cache(false).release();
  cache(true).release();
}

}  // namespace pt::cuda
