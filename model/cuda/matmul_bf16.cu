// bf16 fully connected layer on cuBLASLt; see matmul_bf16.h.
// Row-major (N, C) data is column-major (C, N), so every call is phrased as a
// column-major GEMM D (m, n) = op(A) (m, k) · op(B) (k, n), as in matmul.cu:
//   forward          D = outᵀ (OC, N)   = W (C, OC)ᵀ        · inpᵀ (C, N)      m=OC k=C  n=N   D bf16
//   backward_input   D = dinpᵀ (C, N)   = W (C, OC)         · doutᵀ (OC, N)    m=C  k=OC n=N   D bf16
//   backward_weight  D = dWᵀ (C, OC)   += inpᵀ (C, N)       · (doutᵀ (OC, N))ᵀ m=C  k=N  n=OC  D fp32
// Leading dimensions are C or OC (rows of the row-major tensors), never N, so the
// C % 8 == 0 and OC % 8 == 0 requirement makes every column of every column-major
// operand start 16-byte aligned. The bias epilogue adds a length-m vector to every
// column of D, i.e. bias[o] to every row of the row-major out.
#include "model/cuda/matmul_bf16.h"

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLASLt's recommendation for Hopper

enum class Epilogue : int { kNone, kBias, kGeluAuxBias };

// Largest power of two <= 256 dividing the address (cuBLASLt assumes 256 unless told).
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 2 && (a % align) != 0) align >>= 1;
  return align;
}

// Alignments of A, B, D and of the epilogue's bias and aux pointers (the heuristic
// reads the pointer values set on the descriptor to infer their alignment).
//                 device m    n    k    ta    tb    epilogue Dtype alignA    alignB    alignD    alignBias alignAux
using PlanKey =
    std::tuple<int, int, int, int, bool, bool, int, int, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;  // false: no algorithm for this key (tolerated only for the GELU epilogue)
  ~Plan() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

struct PlanCache {
  std::mutex mu;
  cublasLtHandle_t handle = nullptr;
  std::map<PlanKey, std::unique_ptr<Plan>> plans;
  std::unordered_map<cudaStream_t, void*> workspaces;

  void release() {
    std::lock_guard<std::mutex> lock(mu);
    plans.clear();
    for (auto& [stream, ws] : workspaces) PT_CUDA_CHECK(cudaFree(ws));
    workspaces.clear();
    if (handle) PT_CUBLAS_CHECK(cublasLtDestroy(handle));
    handle = nullptr;
  }
};

PlanCache& cache() {
  static PlanCache c;
  return c;
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  PT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, rows, cols, ld));
  return l;
}

// Builds the plan for a key. A and B are bf16; C = D have type d_type. Called with
// the cache lock held.
// bias / aux are the first call's pointers: set before the heuristic so that it
// sees their alignment (later calls with the same key have the same alignment).
std::unique_ptr<Plan> make_plan(cublasLtHandle_t handle, int m, int n, int k, bool ta, bool tb, Epilogue ep,
                                cudaDataType_t d_type, uint32_t align_a, uint32_t align_b, uint32_t align_d,
                                const __nv_bfloat16* bias, __nv_bfloat16* aux) {
  auto plan = std::make_unique<Plan>();
  PT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  PT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  PT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (ep == Epilogue::kBias) epi = CUBLASLT_EPILOGUE_BIAS;
  if (ep == Epilogue::kGeluAuxBias) {
    epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    const int64_t aux_ld = m;  // aux (pre-GELU, type = D's) has D's column-major shape (m, n)
    PT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof(aux_ld)));
  }
  if (ep != Epilogue::kNone) {
    const int32_t bias_type = CUDA_R_16BF;  // the bias epilogues run only with a bf16 D
    PT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                   sizeof(bias_type)));
    PT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  if (ep == Epilogue::kGeluAuxBias) {
    PT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
  }
  PT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  // Stored shapes: op(A) is (m, k), so A is (k, m) when transposed; likewise B.
  plan->a = ta ? make_layout(CUDA_R_16BF, k, m, k) : make_layout(CUDA_R_16BF, m, k, m);
  plan->b = tb ? make_layout(CUDA_R_16BF, n, k, n) : make_layout(CUDA_R_16BF, k, n, k);
  plan->d = make_layout(d_type, m, n, m);

  cublasLtMatmulPreference_t pref = nullptr;
  PT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  PT_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  PT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                                       sizeof(align_a)));
  PT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                                       sizeof(align_b)));
  PT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d,
                                                       sizeof(align_d)));
  PT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d,
                                                       sizeof(align_d)));
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  // Not checked: NOT_SUPPORTED here means "no algorithm", handled by the caller.
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                                           pref, 1, &result, &returned);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && returned > 0) {
    plan->algo = result.algo;
    plan->found = true;
  }
  return plan;
}

// D = op(A) · op(B) + beta · D (+ epilogue); A, B bf16, D of type d_type. Returns
// false only when no algorithm exists and allow_missing is set (the GELU probe).
bool lt_matmul(void* d, cudaDataType_t d_type, const __nv_bfloat16* a, const __nv_bfloat16* b, int m, int n, int k,
               bool ta, bool tb, float beta, Epilogue ep, const __nv_bfloat16* bias, __nv_bfloat16* aux,
               cudaStream_t stream, bool allow_missing = false) {
  PlanCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.handle == nullptr) PT_CUBLAS_CHECK(cublasLtCreate(&c.handle));
  int device = 0;
  PT_CUDA_CHECK(cudaGetDevice(&device));
  const uint32_t align_bias = ep != Epilogue::kNone ? alignment_of(bias) : 0u;
  const uint32_t align_aux = ep == Epilogue::kGeluAuxBias ? alignment_of(aux) : 0u;
  const PlanKey key{device, m, n, k, ta, tb, int(ep), int(d_type), alignment_of(a), alignment_of(b), alignment_of(d),
                    align_bias, align_aux};
  auto it = c.plans.find(key);
  if (it == c.plans.end()) {
    it = c.plans
             .emplace(key, make_plan(c.handle, m, n, k, ta, tb, ep, d_type, std::get<8>(key), std::get<9>(key),
                                     std::get<10>(key), bias, aux))
             .first;
  }
  Plan& plan = *it->second;
  if (!plan.found) {
    PT_CHECK_MSG(allow_missing, "cuBLASLt offers no bf16 algorithm for m=" + std::to_string(m) +
                                    " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                                    " epilogue=" + std::to_string(int(ep)));
    return false;
  }
  // Pointers change per call; they are read when cublasLtMatmul is enqueued.
  if (ep != Epilogue::kNone) {
    PT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  if (ep == Epilogue::kGeluAuxBias) {
    PT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
  }
  void*& ws = c.workspaces[stream];
  if (ws == nullptr) PT_CUDA_CHECK(cudaMalloc(&ws, kWorkspaceBytes));
  const float alpha = 1.0f;
  PT_CUBLAS_CHECK(cublasLtMatmul(c.handle, plan.desc, &alpha, a, plan.a, b, plan.b, &beta, d, plan.d, d, plan.d,
                                 &plan.algo, ws, kWorkspaceBytes, stream));
  return true;
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

// dbias[o] += Σ_n dout[n, o] (fp32). Block (32, 32) per 32 columns: thread (x, y)
// sums rows y, y+32, ... of column x in order; the 32 row-group sums are combined by
// a fixed tree, then one += per column. Deterministic, no scratch (as matmul.cu).
constexpr int kColTile = 32;
constexpr int kRowGroups = 32;
static __global__ void __launch_bounds__(kColTile* kRowGroups)
    bias_grad_bf16_kernel(float* dbias, const __nv_bfloat16* dout, int N, int OC) {
  __shared__ float part[kRowGroups][kColTile + 1];
  const int o = blockIdx.x * kColTile + threadIdx.x;
  float s = 0.0f;
  if (o < OC) {
    for (int n = threadIdx.y; n < N; n += kRowGroups) s += __bfloat162float(dout[size_t(n) * OC + o]);
  }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  for (int stride = kRowGroups / 2; stride > 0; stride >>= 1) {
    if (threadIdx.y < stride) part[threadIdx.y][threadIdx.x] += part[threadIdx.y + stride][threadIdx.x];
    __syncthreads();
  }
  if (threadIdx.y == 0 && o < OC) dbias[o] += part[0][threadIdx.x];
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

void check_args(const char* fn, int C, int OC, std::initializer_list<const void*> ptrs) {
  PT_CHECK_MSG(C % 8 == 0 && OC % 8 == 0, std::string(fn) + ": C (" + std::to_string(C) + ") and OC (" +
                                              std::to_string(OC) + ") must be multiples of 8 (16-byte rows)");
  for (const void* p : ptrs) PT_CHECK_MSG(aligned16(p), std::string(fn) + ": pointers must be 16-byte aligned");
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

void matmul_backward_input_bf16(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* weight,
                                int N, int C, int OC, cudaStream_t stream) {
  check_args("matmul_backward_input_bf16", C, OC, {dinp, dout, weight});
  if (N == 0 || C == 0) return;
  if (OC == 0) {  // empty sum: dinp = 0 (cuBLASLt is not asked for k = 0)
    PT_CUDA_CHECK(cudaMemsetAsync(dinp, 0, size_t(N) * C * sizeof(__nv_bfloat16), stream));
    return;
  }
  lt_matmul(dinp, CUDA_R_16BF, weight, dout, C, N, OC, false, false, 0.0f, Epilogue::kNone, nullptr, nullptr,
            stream);
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
    bias_grad_bf16_kernel<<<detail::ceil_div(OC, kColTile), dim3(kColTile, kRowGroups), 0, stream>>>(dbias, dout,
                                                                                                    N, OC);
    PT_CUDA_CHECK_LAUNCH();
  }
}

void matmul_bf16_release_plans() { cache().release(); }

}  // namespace pt::cuda
