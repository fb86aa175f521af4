// Kernels no gpu test reaches without cuBLASLt or a multi-replica run, on the emulator
// (nvcc never compiles this file): cuda::average and cuda::add (bitwise equal to their
// CPU twins, as average.h and residual.h promise), and the GEMM helpers of common.cuh
// and bias_grad.cuh that matmul.cu / matmul_bf16.cu run around cuBLASLt: fill_rows
// (bitwise) and bias_grad for fp32 and bf16 dout (a deterministic column sum, += onto
// dbias; vs a double reference within the fp32 sum-order bound of cuda_test_util.h).
// Sizes do not divide the 256-thread blocks or the 32 x 32 bias tiles.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <string>
#include <vector>

#include "model/cpu/average.h"
#include "model/cpu/crossentropy.h"
#include "model/cpu/layernorm.h"
#include "model/cpu/residual.h"
#include "model/cuda/average.h"
#include "model/cuda/bias_grad.cuh"
#include "model/cuda/crossentropy.h"
#include "model/cuda/layernorm.h"
#include "model/cuda/residual.h"
#include "tests/model/bf16_test_util.h"
#include "tests/model/cuda/cuda_test_util.h"

namespace pt {
namespace {

using testing::DeviceBuffer;
using testing::expect_bitwise_equal;
using testing::philox_vector;

TEST(CudaEmuKernels, AverageIsBitwiseEqualToCpu) {
  for (int count : {1, 3, cuda::kMaxAverageBuffers}) {
    for (size_t n : {size_t(37), size_t(70001)}) {
      std::vector<std::vector<float>> host;
      std::vector<std::unique_ptr<DeviceBuffer<float>>> dev;
      std::vector<float*> cpu_ptrs, dev_ptrs;
      for (int p = 0; p < count; ++p) {
        host.push_back(philox_vector(n, 31, uint64_t(p), 1.0f + p));
        dev.push_back(std::make_unique<DeviceBuffer<float>>(host.back()));
        dev_ptrs.push_back(dev.back()->get());
      }
      for (auto& h : host) cpu_ptrs.push_back(h.data());
      cpu::average(cpu_ptrs.data(), count, n);
      cuda::average(dev_ptrs.data(), count, n, nullptr);
      const std::string tag = " count " + std::to_string(count) + " n " + std::to_string(n);
      for (int p = 0; p < count; ++p) expect_bitwise_equal("average buffer " + std::to_string(p) + tag,
                                                            dev[size_t(p)]->download(), host[size_t(p)]);
    }
  }
}

TEST(CudaEmuKernels, AddIsBitwiseEqualToCpu) {
  for (size_t n : {size_t(37), size_t(100003)}) {
    const auto a = philox_vector(n, 32, 1), b = philox_vector(n, 32, 2);
    std::vector<float> out(n);
    cpu::add(out.data(), a.data(), b.data(), n);
    DeviceBuffer<float> d_a(a), d_b(b), d_out(n);
    d_out.poison();
    cuda::add(d_out.get(), d_a.get(), d_b.get(), n, nullptr);
    expect_bitwise_equal("add n " + std::to_string(n), d_out.download(), out);
    cuda::add(d_a.get(), d_a.get(), d_b.get(), n, nullptr);  // in place, as the gradient sums use it
    expect_bitwise_equal("add in place n " + std::to_string(n), d_a.download(), out);
  }
}

TEST(CudaEmuKernels, FillRowsCopiesTheBiasIntoEveryRow) {
  const int N = 37, OC = 50;
  const auto bias = philox_vector(OC, 33, 1);
  std::vector<float> ref(size_t(N) * OC);
  for (size_t i = 0; i < ref.size(); ++i) ref[i] = bias[i % OC];
  DeviceBuffer<float> d_bias(bias), d_out(ref.size());
  d_out.poison();
  cuda::detail::fill_rows_kernel<<<cuda::detail::ceil_div(ref.size(), 256), 256>>>(d_out.get(), d_bias.get(), N, OC);
  expect_bitwise_equal("fill_rows", d_out.download(), ref);
}

// dbias0 + column sums of dout (N, OC) in double, and the bound 2·γ_{N+1}·Σ|terms| + u·|ref|.
void bias_grad_reference(const std::vector<float>& dout, const std::vector<float>& dbias0, int N, int OC,
                         std::vector<float>* ref, std::vector<double>* tol) {
  for (int o = 0; o < OC; ++o) {
    double s = dbias0[size_t(o)], abs_sum = std::fabs(dbias0[size_t(o)]);
    for (int n = 0; n < N; ++n) {
      s += dout[size_t(n) * OC + o];
      abs_sum += std::fabs(dout[size_t(n) * OC + o]);
    }
    ref->push_back(float(s));
    tol->push_back(testing::sum_order_rtol(N + 1) * abs_sum + testing::kFp32Unit * std::fabs(s));
  }
}

template <typename T>
void check_bias_grad(const std::vector<T>& dout, const std::vector<float>& wide, int N, int OC, size_t scratch_floats) {
  const auto dbias0 = philox_vector(OC, 34, uint64_t(N));
  std::vector<float> ref;
  std::vector<double> tol;
  bias_grad_reference(wide, dbias0, N, OC, &ref, &tol);
  DeviceBuffer<T> d_dout(dout);
  DeviceBuffer<float> d_dbias(dbias0);
  using Dev = std::conditional_t<std::is_same_v<T, float>, float, __nv_bfloat16>;  // cpu::bf16 has its bits
  const Dev* dev_dout = reinterpret_cast<const Dev*>(d_dout.get());
  DeviceBuffer<float> scratch(scratch_floats);
  scratch.poison();  // partial sums are written (=) before they are read
  cuda::detail::bias_grad(d_dbias.get(), dev_dout, N, OC, scratch.get(), scratch_floats, nullptr);
  const auto first = d_dbias.download();
  const std::string tag = " N " + std::to_string(N) + " OC " + std::to_string(OC) + " chunks " +
                          std::to_string(cuda::detail::bias_grad_chunks(N, OC, scratch_floats));
  testing::expect_within("bias_grad" + tag, first, ref, tol);
  d_dbias.upload(dbias0);  // a rerun (other thread orders on the emulator) gives the same bits
  scratch.poison();
  cuda::detail::bias_grad(d_dbias.get(), dev_dout, N, OC, scratch.get(), scratch_floats, nullptr);
  expect_bitwise_equal("bias_grad rerun" + tag, d_dbias.download(), first);
}

// One row chunk (N = 37 < 64 rows), 16 chunks of 63 rows (N = 1000, the last one 55),
// and the same limited to 3 chunks of 334 rows by a scratch of 3·OC + 5 floats.
TEST(CudaEmuKernels, BiasGradMatchesColumnSums) {
  for (auto [N, OC, scratch] : {std::tuple{37, 50, 1 << 16}, std::tuple{1000, 67, 1 << 16}, std::tuple{1000, 67, 206}}) {
    const auto dout = philox_vector(size_t(N) * OC, 35, uint64_t(N));
    check_bias_grad(dout, dout, N, OC, size_t(scratch));
    const auto dout16 = testing::bf16_normal(size_t(N) * OC, 36, uint64_t(N), 1.0f);
    check_bias_grad(dout16, testing::widen(dout16), N, OC, size_t(scratch));
  }
  EXPECT_EQ(cuda::detail::bias_grad_chunks(37, 50, 1 << 16), 1);
  EXPECT_EQ(cuda::detail::bias_grad_chunks(1000, 67, 1 << 16), 16);
  EXPECT_EQ(cuda::detail::bias_grad_chunks(1000, 67, 206), 3);
  // GPT-2's bias widths at N = 32768: ~1024 blocks in the first pass.
  EXPECT_EQ(cuda::detail::bias_grad_chunks(32768, 768, size_t(8) << 20), 43);
  EXPECT_EQ(cuda::detail::bias_grad_chunks(32768, 3072, size_t(8) << 20), 11);
}

// Rows narrower than a block or a warp, which the gpu tests (V ~ 1000, C ~ 100) do not
// reach: threads with empty partitions (V < 256 threads; C < 32 lanes), and C = 1
// (zero variance). Bounds as in ops_test.cc: a sum of K terms, 2·γ_K plus 8 ulp.
TEST(CudaEmuKernels, CrossEntropyAndLayerNormOnNarrowRows) {
  const int N = 37;
  for (int V : {2, 67}) {
    const auto logits = philox_vector(size_t(N) * V, 37, uint64_t(V), 3.0f);
    std::vector<int32_t> targets(N);
    for (int i = 0; i < N; ++i) targets[size_t(i)] = (i * 13) % V;
    std::vector<float> losses(N), dlogits(logits.size());
    cpu::crossentropy_forward(losses.data(), logits.data(), targets.data(), N, V, nullptr);
    cpu::crossentropy_backward(dlogits.data(), logits.data(), targets.data(), 0.5f, N, V, nullptr);
    DeviceBuffer<float> d_logits(logits), d_losses(N), d_dlogits(logits.size());
    DeviceBuffer<int32_t> d_targets(targets);
    d_losses.poison();
    d_dlogits.poison();
    cuda::crossentropy_forward(d_losses.get(), d_logits.get(), d_targets.get(), N, V, nullptr, nullptr);
    cuda::crossentropy_backward(d_dlogits.get(), d_logits.get(), d_targets.get(), 0.5f, N, V, nullptr, nullptr);
    const double rtol = testing::sum_order_rtol(V) + 8 * testing::kFp32Unit;
    const std::string tag = " V " + std::to_string(V);
    testing::expect_within("crossentropy losses" + tag, d_losses.download(), losses,
                           testing::tolerances(losses, 2 * rtol, rtol));
    testing::expect_within("crossentropy dlogits" + tag, d_dlogits.download(), dlogits,
                           testing::tolerances(dlogits, rtol, rtol));
  }
  for (int C : {1, 50}) {
    const auto inp = philox_vector(size_t(N) * C, 38, uint64_t(C), 2.0f, 0.5f);
    const auto w = philox_vector(C, 39, 1, 0.5f, 1.0f), b = philox_vector(C, 39, 2, 0.5f);
    std::vector<float> out(inp.size()), mean(N), rstd(N);
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N, C);
    DeviceBuffer<float> d_inp(inp), d_w(w), d_b(b), d_out(inp.size()), d_mean(N), d_rstd(N);
    for (auto* buf : {&d_out, &d_mean, &d_rstd}) buf->poison();
    cuda::layernorm_forward(d_out.get(), d_mean.get(), d_rstd.get(), d_inp.get(), d_w.get(), d_b.get(), N, C,
                            nullptr);
    const double rtol = testing::sum_order_rtol(C) + 8 * testing::kFp32Unit;
    const std::string tag = " C " + std::to_string(C);
    testing::expect_within("layernorm mean" + tag, d_mean.download(), mean, testing::scaled_tolerances(mean, rtol));
    testing::expect_within("layernorm rstd" + tag, d_rstd.download(), rstd, testing::tolerances(rstd, 0.0, rtol));
    testing::expect_within("layernorm out" + tag, d_out.download(), out, testing::scaled_tolerances(out, 2 * rtol));
  }
}

}  // namespace
}  // namespace pt
