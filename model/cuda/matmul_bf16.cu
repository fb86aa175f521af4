// bf16 fully connected layer on cuBLASLt; see matmul_bf16.h.
// Row-major (N, C) data is column-major (C, N), so every call is phrased as a
// column-major GEMM D (m, n) = op(A) (m, k) · op(B) (k, n), as in matmul.cu:
//   forward          D = outᵀ (OC, N)   = W (C, OC)ᵀ        · inpᵀ (C, N)      m=OC k=C  n=N   D bf16
//   backward_input   D = dinpᵀ (C, N)   = W (C, OC)         · doutᵀ (OC, N)    m=C  k=OC n=N   D bf16
//   backward_weight  D = dWᵀ (C, OC)   += inpᵀ (C, N)       · (doutᵀ (OC, N))ᵀ m=C  k=N  n=OC  D fp32
// The *_fp32out forms are the forward and backward_input GEMMs with D fp32 (the
// backward_weight combination: bf16 A/B, fp32 C/D); the forward's bias is an fp32
// prefill of D that the GEMM accumulates onto (beta = 1), no epilogue.
// Leading dimensions are C or OC (rows of the row-major tensors), never N, so the
// C % 8 == 0 and OC % 8 == 0 requirement makes every column of every column-major
// operand start 16-byte aligned. The bias epilogue adds a length-m vector to every
// column of D, i.e. bias[o] to every row of the row-major out.
#include "model/cuda/matmul_bf16.h"

#include <cstdint>
#include <initializer_list>
#include <string>

#include "model/cuda/bias_grad.cuh"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"
#include "model/cuda/gelu.h"
#include "model/cuda/matmul_plan.h"

namespace pt::cuda {
namespace {

using detail::aligned16;
using detail::Epilogue;

detail::LtPlanCache& cache() {
  static detail::LtPlanCache c(detail::LtTypes{"bf16", CUDA_R_16BF, /*min_alignment=*/2, /*bias_at_plan=*/true});
  return c;
}

// D = op(A) · op(B) + beta · D (+ epilogue); A, B bf16, D of type d_type. Returns
// false only when no algorithm exists and allow_missing is set (the GELU probe).
bool lt_matmul(void* d, cudaDataType_t d_type, const __nv_bfloat16* a, const __nv_bfloat16* b, int m, int n, int k,
               bool ta, bool tb, float beta, Epilogue ep, const __nv_bfloat16* bias, __nv_bfloat16* aux,
               cudaStream_t stream, bool allow_missing = false) {
  return cache().matmul(detail::LtGemm{d, d_type, a, b, m, n, k, ta, tb, beta, ep, bias, aux}, stream,
                        allow_missing);
}

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi), as model/cuda/gelu.cu
constexpr float kGeluCubic = 0.044715f;

// Fallback of the fused GELU: out = bf16(gelu(pre)) from the rounded pre-activation.
static __global__ void gelu_forward_bf16_kernel(__nv_bfloat16* out, const __nv_bfloat16* pre, size_t n) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = __bfloat162float(pre[i]);
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  out[i] = __float2bfloat16_rn(0.5f * x * (1.0f + tanhf(u)));
}

void check_args(const char* fn, int C, int OC, std::initializer_list<const void*> ptrs) {
  PT_CHECK_MSG(C % 8 == 0 && OC % 8 == 0, std::string(fn) + ": C (" + std::to_string(C) + ") and OC (" +
                                              std::to_string(OC) + ") must be multiples of 8 (16-byte rows)");
  for (const void* p : ptrs) PT_CHECK_MSG(aligned16(p), std::string(fn) + ": pointers must be 16-byte aligned");
}

// dinp (N, C) of element type T (d_type) = dout · weight; arguments checked.
template <typename T>
void backward_input(T* dinp, cudaDataType_t d_type, const __nv_bfloat16* dout, const __nv_bfloat16* weight, int N,
                    int C, int OC, cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  if (OC == 0) {  // empty sum: dinp = 0 (cuBLASLt is not asked for k = 0)
    PT_CUDA_CHECK(cudaMemsetAsync(dinp, 0, size_t(N) * C * sizeof(T), stream));
    return;
  }
  lt_matmul(dinp, d_type, weight, dout, C, N, OC, false, false, 0.0f, Epilogue::kNone, nullptr, nullptr, stream);
}

}  // namespace

void matmul_forward_bf16(__nv_bfloat16* out, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                         const __nv_bfloat16* bias, int N, int C, int OC, cudaStream_t stream) {
  if (bias == nullptr) {
    check_args("matmul_forward_bf16", C, OC, {out, inp, weight});
  } else {
    check_args("matmul_forward_bf16", C, OC, {out, inp, weight, bias});
  }
  if (N == 0 || OC == 0) return;
  lt_matmul(out, CUDA_R_16BF, weight, inp, OC, N, C, true, false, 0.0f,
            bias == nullptr ? Epilogue::kNone : Epilogue::kBias, bias, nullptr, stream);
}

void matmul_forward_gelu_bf16(__nv_bfloat16* out, __nv_bfloat16* pre_gelu, const __nv_bfloat16* inp,
                              const __nv_bfloat16* weight, const __nv_bfloat16* bias, int N, int C, int OC,
                              cudaStream_t stream) {
  PT_CHECK_MSG(bias != nullptr, "matmul_forward_gelu_bf16 needs a bias");
  check_args("matmul_forward_gelu_bf16", C, OC, {out, pre_gelu, inp, weight, bias});
  if (N == 0 || OC == 0) return;
  if (lt_matmul(out, CUDA_R_16BF, weight, inp, OC, N, C, true, false, 0.0f, Epilogue::kGeluAuxBias, bias, pre_gelu,
                stream, /*allow_missing=*/true)) {
    return;
  }
  lt_matmul(pre_gelu, CUDA_R_16BF, weight, inp, OC, N, C, true, false, 0.0f, Epilogue::kBias, bias, nullptr, stream);
  const size_t n = size_t(N) * OC;
  gelu_forward_bf16_kernel<<<detail::ceil_div(n, 256), 256, 0, stream>>>(out, pre_gelu, n);
  PT_CUDA_CHECK_LAUNCH();
}

void matmul_forward_bf16_fp32out(float* out, const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                                 const float* bias, int N, int C, int OC, cudaStream_t stream) {
  check_args("matmul_forward_bf16_fp32out", C, OC, {out, inp, weight});
  if (N == 0 || OC == 0) return;
  float beta = 0.0f;
  if (bias != nullptr) {  // out = bias, then the GEMM adds onto it (beta = 1): no bias epilogue type question
    detail::fill_rows_kernel<<<detail::ceil_div(size_t(N) * OC, 256), 256, 0, stream>>>(out, bias, N, OC);
    PT_CUDA_CHECK_LAUNCH();
    beta = 1.0f;
  }
  lt_matmul(out, CUDA_R_32F, weight, inp, OC, N, C, true, false, beta, Epilogue::kNone, nullptr, nullptr, stream);
}

void matmul_backward_input_bf16(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* weight,
                                int N, int C, int OC, cudaStream_t stream) {
  check_args("matmul_backward_input_bf16", C, OC, {dinp, dout, weight});
  backward_input(dinp, CUDA_R_16BF, dout, weight, N, C, OC, stream);
}

void matmul_backward_input_dgelu_bf16(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* weight,
                                      const __nv_bfloat16* pre_gelu, int N, int C, int OC, cudaStream_t stream) {
  check_args("matmul_backward_input_dgelu_bf16", C, OC, {dinp, dout, weight, pre_gelu});
  if (N == 0 || C == 0) return;
  if (OC > 0 && lt_matmul(dinp, CUDA_R_16BF, weight, dout, C, N, OC, false, false, 0.0f, Epilogue::kDGelu, nullptr,
                          const_cast<__nv_bfloat16*>(pre_gelu), stream, /*allow_missing=*/true)) {
    return;
  }
  backward_input(dinp, CUDA_R_16BF, dout, weight, N, C, OC, stream);
  gelu_backward_typed(dinp, true, pre_gelu, true, dinp, true, int(size_t(N) * C), stream);
}

void matmul_backward_input_bf16_fp32out(float* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* weight, int N,
                                        int C, int OC, cudaStream_t stream) {
  check_args("matmul_backward_input_bf16_fp32out", C, OC, {dinp, dout, weight});
  backward_input(dinp, CUDA_R_32F, dout, weight, N, C, OC, stream);
}

void matmul_backward_weight_bf16(float* dweight, float* dbias, const __nv_bfloat16* dout,
                                 const __nv_bfloat16* inp, int N, int C, int OC, cudaStream_t stream) {
  check_args("matmul_backward_weight_bf16", C, OC, {dweight, dout, inp});
  if (OC == 0 || N == 0) return;  // nothing to add
  if (C > 0) {
    lt_matmul(dweight, CUDA_R_32F, inp, dout, C, OC, N, false, true, 1.0f, Epilogue::kNone, nullptr, nullptr,
              stream);
  }
  if (dbias != nullptr) {
    size_t bytes = 0;
    void* scratch = cache().workspace(stream, &bytes);
    detail::bias_grad(dbias, dout, N, OC, static_cast<float*>(scratch), bytes / sizeof(float), stream);
  }
}

void matmul_bf16_release_plans() { cache().release(); }

}  // namespace pt::cuda
