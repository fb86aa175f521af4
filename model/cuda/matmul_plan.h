// cuBLASLt plan cache shared by the fp32 (matmul.cu) and bf16 (matmul_bf16.cu) GEMMs.
// Every call is one column-major GEMM D (m, n) = op(A) (m, k) · op(B) (k, n) + beta·D
// (+ epilogue), alpha = 1, scale type CUDA_R_32F, the cache's compute type
// (CUBLAS_COMPUTE_32F; CUBLAS_COMPUTE_32F_FAST_TF32 for the fp32 cache of runtime.tf32).
// Plans: one descriptor set + heuristic choice per key (device, m, n, k, transposes,
// epilogue, D type, alignments of A, B, D and, for a cache with bias_at_plan, of the
// bias and aux pointers), created on first use and reused, so a shape always runs the
// same algorithm (bitwise reproducible run to run). Each cache instance owns its
// cuBLASLt handle and one 32 MiB workspace per stream (GEMMs on different streams may
// overlap). Calls on one instance are serialized by its mutex.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>

namespace pt::cuda::detail {

// kDGelu: D = gelu'(aux) · (A·B) (CUBLASLT_EPILOGUE_DGELU; aux read, D's shape and type).
enum class Epilogue : int { kNone, kBias, kGeluAuxBias, kDGelu };
inline bool has_bias(Epilogue ep) { return ep == Epilogue::kBias || ep == Epilogue::kGeluAuxBias; }
inline bool has_aux(Epilogue ep) { return ep == Epilogue::kGeluAuxBias || ep == Epilogue::kDGelu; }

// Whether p is 16-byte aligned (cuBLASLt's epilogue and vector-load requirement).
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// One GEMM: D = op(A) · op(B) + beta · D with epilogue ep. bias (length m) is read
// when has_bias(ep), aux (D's shape, D's type, leading dimension m) is written when
// ep == kGeluAuxBias and read when ep == kDGelu.
struct LtGemm {
  void* d;
  cudaDataType_t d_type;
  const void* a;
  const void* b;
  int m, n, k;
  bool ta, tb;
  float beta;
  Epilogue ep;
  const void* bias;
  void* aux;
};

// What is fixed per cache instance.
struct LtTypes {
  const char* name;         // "fp32" / "bf16", for the no-algorithm message
  cudaDataType_t ab_type;   // type of A and B
  uint32_t min_alignment;   // the element size of A and B: the smallest alignment keyed
  // Set: the bias data type (= ab_type) and the first call's bias / aux pointers are
  // set on the descriptor before the heuristic, which then sees their alignment (so
  // those alignments join the key). Unset: cuBLASLt's default bias type, pointers set
  // only per call.
  bool bias_at_plan;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
};

class LtPlanCache {
 public:
  explicit LtPlanCache(LtTypes types);  // defined where Plan is complete
  ~LtPlanCache();

  // Runs g on stream. Returns false only when cuBLASLt offers no algorithm for the
  // key and allow_missing is set (the GELU epilogue probe); fatal otherwise.
  bool matmul(const LtGemm& g, cudaStream_t stream, bool allow_missing = false);

  // Drops every plan, workspace and the handle. Must not race with matmul.
  void release();

  // The stream's cuBLASLt workspace (allocated on first use), *bytes its size. Work
  // queued on `stream` may use it between GEMMs: the stream orders it with them (the
  // bias-gradient partial sums, bias_grad.cuh).
  void* workspace(cudaStream_t stream, size_t* bytes);

 private:
  struct Plan;
  //                 device m    n    k    ta    tb    epilogue Dtype alignA    alignB    alignD    alignBias alignAux
  using Key = std::tuple<int, int, int, int, bool, bool, int, int, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t>;

  uint32_t alignment_of(const void* p) const;
  void* workspace_locked(cudaStream_t stream);  // mu_ held
  Key key_of(const LtGemm& g) const;
  std::unique_ptr<Plan> make_plan(const LtGemm& g, const Key& key) const;

  const LtTypes types_;
  std::mutex mu_;
  cublasLtHandle_t handle_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  std::unordered_map<cudaStream_t, void*> workspaces_;
};

}  // namespace pt::cuda::detail
