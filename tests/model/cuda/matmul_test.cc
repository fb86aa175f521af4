// cuBLASLt matmuls vs the OpenBLAS twins. Tolerance is the order-independent
// bound 2·γ_K·(|A|·|B| + |bias|)_ij (cuda_test_util.h), with Σ|terms| computed
// exactly by running the CPU twin on absolute values; fp32 compute (TF32 off) is
// what makes this tight bound hold: TF32 would exceed it by ~1000x and fail. The
// TF32 mode (runtime.tf32) has its own bound (Tf32WithinTf32BoundAndDeterministic).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "model/cpu/gelu.h"
#include "model/cpu/matmul.h"
#include "model/cuda/matmul.h"
#include "tests/model/cuda/cuda_test_util.h"

namespace pt {
namespace {

using testing::abs_of;
using testing::DeviceBuffer;
using testing::expect_within;
using testing::philox_vector;
using testing::sum_order_rtol;

class CudaMatmul : public testing::CudaTest {};

// tol_i = 2·γ_K · mag_i (+ one rounding of the result).
std::vector<double> gemm_tolerances(const std::vector<float>& mag, int K) {
  std::vector<double> t(mag.size());
  for (size_t i = 0; i < mag.size(); ++i) t[i] = (sum_order_rtol(K) + testing::kFp32Unit) * double(mag[i]);
  return t;
}

struct Shape {
  int N, C, OC;
};

void check_shape(const Shape& s, bool offset_bias) {
  const int N = s.N, C = s.C, OC = s.OC;
  const auto inp = philox_vector(size_t(N) * C, 11, 1);
  const auto weight = philox_vector(size_t(OC) * C, 11, 2, 0.2f);
  // Bias at a 4-byte offset inside its allocation takes the pre-fill path, not the epilogue.
  auto bias_storage = philox_vector(size_t(OC) + 1, 11, 3);
  const std::vector<float> bias(bias_storage.begin() + (offset_bias ? 1 : 0),
                                bias_storage.begin() + (offset_bias ? 1 : 0) + OC);
  const auto dout = philox_vector(size_t(N) * OC, 11, 4);
  const auto dweight0 = philox_vector(size_t(OC) * C, 11, 5);
  const auto dbias0 = philox_vector(OC, 11, 6);
  const std::string tag = " N" + std::to_string(N) + " C" + std::to_string(C) + " OC" + std::to_string(OC) +
                          (offset_bias ? " (unaligned bias)" : "");

  std::vector<float> out(size_t(N) * OC), dinp(size_t(N) * C), dweight = dweight0, dbias = dbias0;
  cpu::matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
  cpu::matmul_backward_input(dinp.data(), dout.data(), weight.data(), N, C, OC);
  cpu::matmul_backward_weight(dweight.data(), dbias.data(), dout.data(), inp.data(), N, C, OC);
  // Σ|terms| of every output: the same ops on absolute values.
  std::vector<float> mag_out(out.size()), mag_dinp(dinp.size());
  std::vector<float> mag_dw = abs_of(dweight0), mag_db = abs_of(dbias0);
  cpu::matmul_forward(mag_out.data(), abs_of(inp).data(), abs_of(weight).data(), abs_of(bias).data(), N, C, OC);
  cpu::matmul_backward_input(mag_dinp.data(), abs_of(dout).data(), abs_of(weight).data(), N, C, OC);
  cpu::matmul_backward_weight(mag_dw.data(), mag_db.data(), abs_of(dout).data(), abs_of(inp).data(), N, C, OC);

  DeviceBuffer<float> d_inp(inp), d_w(weight), d_bias_storage(bias_storage), d_dout(dout);
  DeviceBuffer<float> d_out(out.size()), d_dinp(dinp.size()), d_dw(dweight0), d_db(dbias0);
  const float* d_bias = d_bias_storage.get() + (offset_bias ? 1 : 0);
  d_out.poison();
  cuda::matmul_forward(d_out.get(), d_inp.get(), d_w.get(), d_bias, N, C, OC, nullptr);
  const auto gpu_out = d_out.download();
  expect_within("matmul_forward out" + tag, gpu_out, out, gemm_tolerances(mag_out, C + 1));
  // Same plan again: bitwise the same result.
  d_out.poison();
  cuda::matmul_forward(d_out.get(), d_inp.get(), d_w.get(), d_bias, N, C, OC, nullptr);
  testing::expect_bitwise_equal("matmul_forward rerun" + tag, d_out.download(), gpu_out);

  // Without bias.
  std::vector<float> out_nb(out.size()), mag_nb(out.size());
  cpu::matmul_forward(out_nb.data(), inp.data(), weight.data(), nullptr, N, C, OC);
  cpu::matmul_forward(mag_nb.data(), abs_of(inp).data(), abs_of(weight).data(), nullptr, N, C, OC);
  d_out.poison();
  cuda::matmul_forward(d_out.get(), d_inp.get(), d_w.get(), nullptr, N, C, OC, nullptr);
  expect_within("matmul_forward no bias" + tag, d_out.download(), out_nb, gemm_tolerances(mag_nb, C));

  // Fused GELU: pre_gelu as out; gelu is 1.13-Lipschitz, plus the two tanh forms'
  // 5e-7·|x| difference (see ops_test) and one rounding.
  if (!offset_bias) {
    std::vector<float> gelu_out(out.size());
    cpu::gelu_forward(gelu_out.data(), out.data(), int(out.size()));
    DeviceBuffer<float> d_pre(out.size());
    d_pre.poison();
    d_out.poison();
    cuda::matmul_forward_gelu(d_out.get(), d_pre.get(), d_inp.get(), d_w.get(), d_bias, N, C, OC, nullptr);
    expect_within("matmul_forward_gelu pre_gelu" + tag, d_pre.download(), out, gemm_tolerances(mag_out, C + 1));
    auto tol = gemm_tolerances(mag_out, C + 1);
    for (size_t i = 0; i < tol.size(); ++i) {
      tol[i] = 1.13 * tol[i] + 5e-7 * std::fabs(out[i]) + 8 * testing::kFp32Unit * std::fabs(gelu_out[i]);
    }
    expect_within("matmul_forward_gelu out" + tag, d_out.download(), gelu_out, tol);
  }

  d_dinp.poison();
  cuda::matmul_backward_input(d_dinp.get(), d_dout.get(), d_w.get(), N, C, OC, nullptr);
  expect_within("matmul_backward_input dinp" + tag, d_dinp.download(), dinp, gemm_tolerances(mag_dinp, OC));

  cuda::matmul_backward_weight(d_dw.get(), d_db.get(), d_dout.get(), d_inp.get(), N, C, OC, nullptr);
  expect_within("matmul_backward_weight dweight" + tag, d_dw.download(), dweight, gemm_tolerances(mag_dw, N + 1));
  expect_within("matmul_backward_weight dbias" + tag, d_db.download(), dbias, gemm_tolerances(mag_db, N + 1));
}

TEST_F(CudaMatmul, MatchesCpuOnOddShapes) {
  // N = B·T with T = 67; C and OC not multiples of 8, 16 or any tile size; then a
  // GPT-2-like shape whose OC is a multiple of 8 (fused GELU epilogue eligible).
  for (const Shape& s : {Shape{134, 103, 309}, Shape{67, 96, 389}, Shape{268, 128, 512}}) {
    check_shape(s, /*offset_bias=*/false);
  }
  check_shape(Shape{134, 103, 309}, /*offset_bias=*/true);
  cuda::matmul_release_plans();
}

// tf32 = true (runtime.tf32): CUBLAS_COMPUTE_32F_FAST_TF32. Each product reads
// inputs rounded to TF32 (10-bit mantissa, relative error <= 2^-11 each), so a
// product errs by <= 2^-10 of |a|·|b| (plus second order), and the fp32
// accumulation adds the usual 2·γ_K: tol_i = (2^-10 + 2·γ_K + u)·mag_i. Also:
// reruns are bitwise equal (own plan cache), and on a GPU with TF32 tensor cores
// (compute capability >= 8) the result is not the fp32 path's (the mode took effect).
TEST_F(CudaMatmul, Tf32WithinTf32BoundAndDeterministic) {
  int device = 0, major = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), cudaSuccess);
  for (const Shape& s : {Shape{134, 103, 309}, Shape{268, 128, 512}}) {
    const int N = s.N, C = s.C, OC = s.OC;
    const std::string tag = " N" + std::to_string(N) + " C" + std::to_string(C) + " OC" + std::to_string(OC);
    const auto inp = philox_vector(size_t(N) * C, 12, 1);
    const auto weight = philox_vector(size_t(OC) * C, 12, 2, 0.2f);
    const auto dout = philox_vector(size_t(N) * OC, 12, 4);
    std::vector<float> out(size_t(N) * OC), dinp(size_t(N) * C), dw(size_t(OC) * C, 0.0f);
    std::vector<float> mag_out(out.size()), mag_dinp(dinp.size()), mag_dw(dw.size(), 0.0f);
    cpu::matmul_forward(out.data(), inp.data(), weight.data(), nullptr, N, C, OC);
    cpu::matmul_backward_input(dinp.data(), dout.data(), weight.data(), N, C, OC);
    cpu::matmul_backward_weight(dw.data(), nullptr, dout.data(), inp.data(), N, C, OC);
    cpu::matmul_forward(mag_out.data(), abs_of(inp).data(), abs_of(weight).data(), nullptr, N, C, OC);
    cpu::matmul_backward_input(mag_dinp.data(), abs_of(dout).data(), abs_of(weight).data(), N, C, OC);
    cpu::matmul_backward_weight(mag_dw.data(), nullptr, abs_of(dout).data(), abs_of(inp).data(), N, C, OC);
    auto tf32_tol = [](const std::vector<float>& mag, int K) {
      std::vector<double> t(mag.size());
      for (size_t i = 0; i < mag.size(); ++i)
        t[i] = (1.0 / 1024 + sum_order_rtol(K) + testing::kFp32Unit) * double(mag[i]);
      return t;
    };
    DeviceBuffer<float> d_inp(inp), d_w(weight), d_dout(dout), d_out(out.size()), d_dinp(dinp.size());
    DeviceBuffer<float> d_dw(dw.size());
    d_out.poison();
    cuda::matmul_forward(d_out.get(), d_inp.get(), d_w.get(), nullptr, N, C, OC, nullptr, /*tf32=*/true);
    const auto tf32_out = d_out.download();
    expect_within("tf32 matmul_forward" + tag, tf32_out, out, tf32_tol(mag_out, C));
    d_out.poison();
    cuda::matmul_forward(d_out.get(), d_inp.get(), d_w.get(), nullptr, N, C, OC, nullptr, /*tf32=*/true);
    testing::expect_bitwise_equal("tf32 matmul_forward rerun" + tag, d_out.download(), tf32_out);
    cuda::matmul_forward(d_out.get(), d_inp.get(), d_w.get(), nullptr, N, C, OC, nullptr, /*tf32=*/false);
    if (major >= 8) {
      EXPECT_NE(d_out.download(), tf32_out) << "tf32 gave the fp32 path's bits" << tag;
    }
    d_dinp.poison();
    cuda::matmul_backward_input(d_dinp.get(), d_dout.get(), d_w.get(), N, C, OC, nullptr, /*tf32=*/true);
    expect_within("tf32 matmul_backward_input" + tag, d_dinp.download(), dinp, tf32_tol(mag_dinp, OC));
    d_dw.upload(std::vector<float>(dw.size(), 0.0f));
    cuda::matmul_backward_weight(d_dw.get(), nullptr, d_dout.get(), d_inp.get(), N, C, OC, nullptr, /*tf32=*/true);
    expect_within("tf32 matmul_backward_weight" + tag, d_dw.download(), dw, tf32_tol(mag_dw, N));
  }
  cuda::matmul_release_plans();
}

}  // namespace
}  // namespace pt
