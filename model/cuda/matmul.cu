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
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"
#include "model/cuda/gelu.h"

namespace pt::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLASLt's recommendation for Hopper

enum class Epilogue : int { kNone, kBias, kGeluAuxBias };

// Largest power of two <= 256 dividing the address: cuBLASLt assumes 256-byte
// alignment unless told otherwise, and picks kernels with vector loads accordingly.
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 4 && (a % align) != 0) align >>= 1;
  return align;
}

//                 device m    n    k    ta    tb    epilogue alignA    alignB    alignD
using PlanKey = std::tuple<int, int, int, int, bool, bool, int, uint32_t, uint32_t, uint32_t>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;  // false: no algorithm for this key (only possible for the GELU epilogue)
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
  static PlanCache c;  // function-local: no global constructor order issues, no ODR trap
  return c;
}

cublasLtMatrixLayout_t make_layout(uint64_t rows, uint64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  PT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, rows, cols, ld));
  return l;
}

// Builds the plan for a key. Called with the cache lock held.
std::unique_ptr<Plan> make_plan(cublasLtHandle_t handle, int m, int n, int k, bool ta, bool tb, Epilogue ep,
                                uint32_t align_a, uint32_t align_b, uint32_t align_d) {
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
    const int64_t aux_ld = m;  // aux (pre-GELU) has D's column-major shape (m, n)
    PT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof(aux_ld)));
  }
  PT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  // Stored shapes: op(A) is (m, k), so A is (k, m) when transposed; likewise B.
  plan->a = ta ? make_layout(k, m, k) : make_layout(m, k, m);
  plan->b = tb ? make_layout(n, k, n) : make_layout(k, n, k);
  plan->d = make_layout(m, n, m);

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

// D = alpha · op(A) · op(B) + beta · D with the given epilogue. Returns false only
// when no algorithm exists and allow_missing is set (the GELU epilogue probe).
bool lt_matmul(float* d, const float* a, const float* b, int m, int n, int k, bool ta, bool tb, float beta,
               Epilogue ep, const float* bias, float* aux, cudaStream_t stream, bool allow_missing = false) {
  PlanCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.handle == nullptr) PT_CUBLAS_CHECK(cublasLtCreate(&c.handle));
  int device = 0;
  PT_CUDA_CHECK(cudaGetDevice(&device));
  const PlanKey key{device, m, n, k, ta, tb, int(ep), alignment_of(a), alignment_of(b), alignment_of(d)};
  auto it = c.plans.find(key);
  if (it == c.plans.end()) {
    it = c.plans.emplace(key, make_plan(c.handle, m, n, k, ta, tb, ep, std::get<7>(key), std::get<8>(key),
                                        std::get<9>(key)))
             .first;
  }
  Plan& plan = *it->second;
  if (!plan.found) {
    PT_CHECK_MSG(allow_missing, "cuBLASLt offers no fp32 algorithm for m=" + std::to_string(m) +
                                    " n=" + std::to_string(n) + " k=" + std::to_string(k));
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

static __global__ void fill_rows_kernel(float* out, const float* bias, int N, int OC) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < size_t(N) * OC) out[i] = bias[i % OC];
}

// dbias[o] += sum_n dout[n, o]. Block (32, 32) per 32 columns: thread (x, y) sums
// rows y, y+32, ... of column x in order; the 32 row-group sums are combined by
// a fixed tree. Deterministic, and no scratch memory.
constexpr int kColTile = 32;
constexpr int kRowGroups = 32;
static __global__ void __launch_bounds__(kColTile* kRowGroups)
    bias_grad_kernel(float* dbias, const float* dout, int N, int OC) {
  __shared__ float part[kRowGroups][kColTile + 1];
  const int o = blockIdx.x * kColTile + threadIdx.x;
  float s = 0.0f;
  if (o < OC) {
    for (int n = threadIdx.y; n < N; n += kRowGroups) s += dout[size_t(n) * OC + o];
  }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  for (int stride = kRowGroups / 2; stride > 0; stride >>= 1) {
    if (threadIdx.y < stride) part[threadIdx.y][threadIdx.x] += part[threadIdx.y + stride][threadIdx.x];
    __syncthreads();
  }
  if (threadIdx.y == 0 && o < OC) dbias[o] += part[0][threadIdx.x];
}

bool bias_epilogue_ok(const float* bias) { return reinterpret_cast<uintptr_t>(bias) % 16 == 0; }

}  // namespace

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC,
                    cudaStream_t stream) {
  if (N == 0 || OC == 0) return;
  if (bias == nullptr) {
    lt_matmul(out, weight, inp, OC, N, C, true, false, 0.0f, Epilogue::kNone, nullptr, nullptr, stream);
  } else if (bias_epilogue_ok(bias)) {
    lt_matmul(out, weight, inp, OC, N, C, true, false, 0.0f, Epilogue::kBias, bias, nullptr, stream);
  } else {
    fill_rows_kernel<<<detail::ceil_div(size_t(N) * OC, 256), 256, 0, stream>>>(out, bias, N, OC);
    PT_CUDA_CHECK_LAUNCH();
    lt_matmul(out, weight, inp, OC, N, C, true, false, 1.0f, Epilogue::kNone, nullptr, nullptr, stream);
  }
}

void matmul_forward_gelu(float* out, float* pre_gelu, const float* inp, const float* weight, const float* bias,
                         int N, int C, int OC, cudaStream_t stream) {
  PT_CHECK_MSG(bias != nullptr, "matmul_forward_gelu needs a bias");
  if (N == 0 || OC == 0) return;
  // cuBLASLt wants the aux leading dimension a multiple of 8 and aligned buffers.
  const bool try_fused = OC % 8 == 0 && bias_epilogue_ok(bias) && alignment_of(pre_gelu) >= 16;
  if (try_fused && lt_matmul(out, weight, inp, OC, N, C, true, false, 0.0f, Epilogue::kGeluAuxBias, bias, pre_gelu,
                             stream, /*allow_missing=*/true)) {
    return;
  }
  matmul_forward(pre_gelu, inp, weight, bias, N, C, OC, stream);
  gelu_forward(out, pre_gelu, N * OC, stream);
}

void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC,
                           cudaStream_t stream) {
  if (N == 0 || C == 0) return;
  lt_matmul(dinp, weight, dout, C, N, OC, false, false, 0.0f, Epilogue::kNone, nullptr, nullptr, stream);
}

void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C, int OC,
                            cudaStream_t stream) {
  if (OC == 0) return;
  if (C > 0 && N > 0) {
    lt_matmul(dweight, inp, dout, C, OC, N, false, true, 1.0f, Epilogue::kNone, nullptr, nullptr, stream);
  }
  if (dbias != nullptr && N > 0) {
    bias_grad_kernel<<<detail::ceil_div(OC, kColTile), dim3(kColTile, kRowGroups), 0, stream>>>(dbias, dout, N, OC);
    PT_CUDA_CHECK_LAUNCH();
  }
}

void matmul_release_plans() { cache().release(); }

}  // namespace pt::cuda
