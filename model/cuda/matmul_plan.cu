// cuBLASLt plan cache; see matmul_plan.h.
#include "model/cuda/matmul_plan.h"

#include <string>

#include "model/cuda/cuda_check.h"

namespace pt::cuda::detail {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLASLt's recommendation for Hopper

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  PT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, rows, cols, ld));
  return l;
}

template <typename T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  PT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)));
}

template <typename T>
void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const T& value) {
  PT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
}

}  // namespace

struct LtPlanCache::Plan {
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

LtPlanCache::LtPlanCache(LtTypes types) : types_(types) {}
LtPlanCache::~LtPlanCache() = default;

// Largest power of two <= 256 dividing the address, at least min_alignment
// (cuBLASLt assumes 256-byte alignment unless told otherwise, and picks kernels
// with vector loads accordingly).
uint32_t LtPlanCache::alignment_of(const void* p) const {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > types_.min_alignment && (a % align) != 0) align >>= 1;
  return align;
}

LtPlanCache::Key LtPlanCache::key_of(const LtGemm& g) const {
  int device = 0;
  PT_CUDA_CHECK(cudaGetDevice(&device));
  const bool bias = types_.bias_at_plan && has_bias(g.ep);
  const bool aux = types_.bias_at_plan && has_aux(g.ep);
  return Key{device,          g.m, g.n, g.k, g.ta, g.tb, int(g.ep), int(g.d_type), alignment_of(g.a), alignment_of(g.b),
             alignment_of(g.d), bias ? alignment_of(g.bias) : 0u, aux ? alignment_of(g.aux) : 0u};
}

// Builds the plan for a key. Called with the cache lock held.
std::unique_ptr<LtPlanCache::Plan> LtPlanCache::make_plan(const LtGemm& g, const Key& key) const {
  auto plan = std::make_unique<Plan>();
  PT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, types_.compute, CUDA_R_32F));
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N);
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (g.ep == Epilogue::kBias) epi = CUBLASLT_EPILOGUE_BIAS;
  if (g.ep == Epilogue::kGeluAuxBias) epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
  if (g.ep == Epilogue::kDGelu) epi = CUBLASLT_EPILOGUE_DGELU;
  if (has_aux(g.ep)) set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, int64_t(g.m));  // D's shape (m, n)
  if (types_.bias_at_plan && has_bias(g.ep)) {
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t(types_.ab_type));
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
  }
  if (types_.bias_at_plan && has_aux(g.ep)) set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, g.aux);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, epi);
  // Stored shapes: op(A) is (m, k), so A is (k, m) when transposed; likewise B.
  const cudaDataType_t ab = types_.ab_type;
  plan->a = g.ta ? make_layout(ab, g.k, g.m, g.k) : make_layout(ab, g.m, g.k, g.m);
  plan->b = g.tb ? make_layout(ab, g.n, g.k, g.n) : make_layout(ab, g.k, g.n, g.k);
  plan->d = make_layout(g.d_type, g.m, g.n, g.m);

  cublasLtMatmulPreference_t pref = nullptr;
  PT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(kWorkspaceBytes));
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, std::get<8>(key));
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, std::get<9>(key));
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, std::get<10>(key));
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, std::get<10>(key));
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  // Not checked: NOT_SUPPORTED here means "no algorithm", handled by the caller.
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                                           pref, 1, &result, &returned);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && returned > 0) {
    plan->algo = result.algo;
    plan->found = true;
  }
  return plan;
}

bool LtPlanCache::matmul(const LtGemm& g, cudaStream_t stream, bool allow_missing) {
  std::lock_guard<std::mutex> lock(mu_);
  if (handle_ == nullptr) PT_CUBLAS_CHECK(cublasLtCreate(&handle_));
  const Key key = key_of(g);
  auto it = plans_.find(key);
  if (it == plans_.end()) it = plans_.emplace(key, make_plan(g, key)).first;
  Plan& plan = *it->second;
  if (!plan.found) {
    PT_CHECK_MSG(allow_missing, std::string("cuBLASLt offers no ") + types_.name + " algorithm for m=" +
                                    std::to_string(g.m) + " n=" + std::to_string(g.n) + " k=" +
                                    std::to_string(g.k) + " epilogue=" + std::to_string(int(g.ep)));
    return false;
  }
  // Pointers change per call; they are read when cublasLtMatmul is enqueued.
  if (has_bias(g.ep)) set_desc(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias);
  if (has_aux(g.ep)) set_desc(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, g.aux);
  void* ws = workspace_locked(stream);
  const float alpha = 1.0f;
  PT_CUBLAS_CHECK(cublasLtMatmul(handle_, plan.desc, &alpha, g.a, plan.a, g.b, plan.b, &g.beta, g.d, plan.d, g.d,
                                 plan.d, &plan.algo, ws, kWorkspaceBytes, stream));
  return true;
}

void* LtPlanCache::workspace(cudaStream_t stream, size_t* bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  *bytes = kWorkspaceBytes;
  return workspace_locked(stream);
}

void* LtPlanCache::workspace_locked(cudaStream_t stream) {
  void*& ws = workspaces_[stream];
  if (ws == nullptr) PT_CUDA_CHECK(cudaMalloc(&ws, kWorkspaceBytes));
  return ws;
}

void LtPlanCache::release() {
  std::lock_guard<std::mutex> lock(mu_);
  plans_.clear();
  for (auto& [stream, ws] : workspaces_) PT_CUDA_CHECK(cudaFree(ws));
  workspaces_.clear();
  if (handle_) PT_CUBLAS_CHECK(cublasLtDestroy(handle_));
  handle_ = nullptr;
}

}  // namespace pt::cuda::detail
