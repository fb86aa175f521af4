// Host stand-in for the cuBLASLt calls of model/cuda/matmul_plan.cu (the only file that
// calls cuBLASLt), with the real <cublasLt.h> signatures, so matmul.cu, matmul_bf16.cu
// and what sits on them (cuda_backend.cu, the stage model) run on the emulator. It
// implements the documented semantics (cublasLt.h, cuBLAS docs "cublasLtMatmul"):
// column-major D (m x n) = alpha·op(A)·op(B) + beta·C; EPILOGUE_BIAS adds bias[row]
// (length m = D's rows); GELU_AUX_BIAS stores the biased value in aux (D's type, leading
// dimension AUX_LD, which must be >= m and divisible by 8) and writes GELU (tanh form)
// of it (cuBLASLt names no formula; PyTorch's addmm_activation falls back to the tanh
// form without the epilogue, and the gpu tests bound the real one's difference from it);
// DGELU multiplies the product by the tanh form's derivative at aux (read, same type and
// leading dimension rules), before the one rounding to D's type.
// Sums are in double, rounded once to D's type; FAST_TF32 rounds A and B to tf32
// first. What it checks is the plan's descriptors (transposes, shapes, leading
// dimensions, epilogue, bias and aux pointers) against the CPU twins, not cuBLASLt.
#include <cublasLt.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <cuda_bf16.h>

#include "tests/cuda_emu/emu.h"

namespace {

struct Desc {
  cublasComputeType_t compute;
  int32_t trans_a = CUBLAS_OP_N, trans_b = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  int32_t bias_type = -1;
  const void* bias = nullptr;
  void* aux = nullptr;
  int64_t aux_ld = 0;
};

struct Layout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};

Desc* desc_of(cublasLtMatmulDesc_t d) { return reinterpret_cast<Desc*>(d); }
const Layout* layout_of(cublasLtMatrixLayout_t l) { return reinterpret_cast<const Layout*>(l); }

double load(const void* p, cudaDataType type, size_t i) {
  if (type == CUDA_R_16BF) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

void store(void* p, cudaDataType type, size_t i, double v) {
  if (type == CUDA_R_16BF) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(float(v));
  else static_cast<float*>(p)[i] = float(v);
}

// fp32 rounded to nearest tf32 (10 explicit mantissa bits, ties to even).
double tf32(double x) {
  const uint32_t b = std::bit_cast<uint32_t>(float(x));
  const uint32_t r = (b + 0xFFFu + ((b >> 13) & 1u)) & ~0x1FFFu;
  return std::isfinite(float(x)) ? double(std::bit_cast<float>(r)) : x;
}

// op(X) (rows x depth) of a column-major X (ld) that is transposed when trans, as a
// dense row-major double matrix, rounded to tf32 first when round_tf32.
std::vector<double> op_rows(const void* x, const Layout& l, bool trans, uint64_t rows, uint64_t depth,
                            bool round_tf32) {
  std::vector<double> out(size_t(rows * depth));
  for (uint64_t i = 0; i < rows; ++i) {
    for (uint64_t p = 0; p < depth; ++p) {
      const size_t idx = trans ? size_t(p) + size_t(i) * size_t(l.ld) : size_t(i) + size_t(p) * size_t(l.ld);
      const double v = load(x, l.type, idx);
      out[size_t(i * depth + p)] = round_tf32 ? tf32(v) : v;
    }
  }
  return out;
}

constexpr double kScale = 0.7978845608028654, kCubic = 0.044715;

double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(kScale * (x + kCubic * x * x * x))); }

// d gelu(x) / dx of the tanh form above.
double gelu_grad(double x) {
  const double t = std::tanh(kScale * (x + kCubic * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * kScale * (1.0 + 3.0 * kCubic * x * x);
}

bool is(uint32_t epilogue, uint32_t mode) { return (epilogue & mode) == mode; }

// The checks cuBLASLt documents (or would fail on): shapes agree, leading dimensions
// cover the rows, the aux leading dimension of the GELU and DGELU epilogues.
bool consistent(const Desc& d, const Layout& a, const Layout& b, const Layout& c, const Layout& dd) {
  const bool ta = d.trans_a == CUBLAS_OP_T, tb = d.trans_b == CUBLAS_OP_T;
  const uint64_t m = dd.rows, n = dd.cols, k = ta ? a.rows : a.cols;
  const bool shapes = (ta ? a.cols : a.rows) == m && (tb ? b.rows : b.cols) == n && (tb ? b.cols : b.rows) == k &&
                      c.rows == m && c.cols == n;
  const bool lds = uint64_t(a.ld) >= a.rows && uint64_t(b.ld) >= b.rows && uint64_t(dd.ld) >= dd.rows;
  const bool uses_aux = is(d.epilogue, CUBLASLT_EPILOGUE_GELU_AUX) || is(d.epilogue, CUBLASLT_EPILOGUE_DGELU);
  const bool aux_ld = !uses_aux || (d.aux_ld >= int64_t(m) && d.aux_ld % 8 == 0);
  return shapes && lds && aux_ld;
}

}  // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  static int dummy;
  *handle = reinterpret_cast<cublasLtHandle_t>(&dummy);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute, cudaDataType_t) {
  *desc = reinterpret_cast<cublasLtMatmulDesc_t>(new Desc{compute});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete desc_of(desc);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  Desc& d = *desc_of(desc);
  auto set = [&](auto& field) {
    if (size != sizeof(field)) return CUBLAS_STATUS_INVALID_VALUE;
    std::memcpy(&field, buf, size);
    return CUBLAS_STATUS_SUCCESS;
  };
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return set(d.trans_a);
    case CUBLASLT_MATMUL_DESC_TRANSB: return set(d.trans_b);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return set(d.epilogue);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return set(d.bias_type);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return set(d.bias);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return set(d.aux);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return set(d.aux_ld);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;  // not emulated: fail loudly
  }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  if (type != CUDA_R_32F && type != CUDA_R_16BF) return CUBLAS_STATUS_NOT_SUPPORTED;
  *l = reinterpret_cast<cublasLtMatrixLayout_t>(new Layout{type, rows, cols, ld});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete layout_of(l);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  static int dummy;
  *pref = reinterpret_cast<cublasLtMatmulPreference_t>(&dummy);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t,
                                                    const void*, size_t) {
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t, int requested,
                                              cublasLtMatmulHeuristicResult_t* results, int* returned) {
  *returned = 0;
  if (!consistent(*desc_of(desc), *layout_of(a), *layout_of(b), *layout_of(c), *layout_of(d)))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  results[0] = cublasLtMatmulHeuristicResult_t{};
  results[0].state = CUBLAS_STATUS_SUCCESS;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t adesc, const void* B, cublasLtMatrixLayout_t bdesc,
                              const void* beta, const void* C, cublasLtMatrixLayout_t cdesc, void* D,
                              cublasLtMatrixLayout_t ddesc, const cublasLtMatmulAlgo_t*, void*, size_t,
                              cudaStream_t stream) {
  emu::count(emu::Count::kLibraryCall);
  emu::synchronize(stream);  // runs now, after its stream's pending work (descriptors are read now)
  const emu::DeviceAccess access;
  const Desc& d = *desc_of(desc);
  const Layout &la = *layout_of(adesc), &lb = *layout_of(bdesc), &lc = *layout_of(cdesc), &ld = *layout_of(ddesc);
  if (!consistent(d, la, lb, lc, ld)) return CUBLAS_STATUS_INVALID_VALUE;
  const bool ta = d.trans_a == CUBLAS_OP_T, tb = d.trans_b == CUBLAS_OP_T;
  const bool tf = d.compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  const bool bias = (d.epilogue & CUBLASLT_EPILOGUE_BIAS) == CUBLASLT_EPILOGUE_BIAS;
  const bool gelu_aux = is(d.epilogue, CUBLASLT_EPILOGUE_GELU_AUX), dgelu = is(d.epilogue, CUBLASLT_EPILOGUE_DGELU);
  if (is(d.epilogue, CUBLASLT_EPILOGUE_DGELU_BGRAD)) return CUBLAS_STATUS_NOT_SUPPORTED;  // not emulated
  if ((bias && !d.bias) || ((gelu_aux || dgelu) && !d.aux)) return CUBLAS_STATUS_INVALID_VALUE;
  const cudaDataType bias_type = d.bias_type < 0 ? ld.type : cudaDataType(d.bias_type);
  const double al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const uint64_t m = ld.rows, n = ld.cols, k = ta ? la.rows : la.cols;
  const std::vector<double> a = op_rows(A, la, ta, m, k, tf);   // op(A) (m x k)
  const std::vector<double> bt = op_rows(B, lb, !tb, n, k, tf);  // op(B)ᵀ (n x k)
  std::vector<double> out(size_t(m * n));
  for (uint64_t j = 0; j < n; ++j) {
    for (uint64_t i = 0; i < m; ++i) {
      double s = 0.0;
      for (uint64_t p = 0; p < k; ++p) s += a[size_t(i * k + p)] * bt[size_t(j * k + p)];
      double v = al * s + (be != 0.0 ? be * load(C, lc.type, size_t(i + j * uint64_t(lc.ld))) : 0.0);
      if (bias) v += load(d.bias, bias_type, size_t(i));
      out[size_t(i + j * m)] = v;
    }
  }
  for (uint64_t j = 0; j < n; ++j) {
    for (uint64_t i = 0; i < m; ++i) {
      double v = out[size_t(i + j * m)];
      if (dgelu) v *= gelu_grad(load(d.aux, ld.type, size_t(i + j * uint64_t(d.aux_ld))));
      if (gelu_aux) store(d.aux, ld.type, size_t(i + j * uint64_t(d.aux_ld)), v);
      store(D, ld.type, size_t(i + j * uint64_t(ld.ld)), gelu_aux ? gelu(v) : v);
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
