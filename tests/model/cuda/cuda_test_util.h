// Shared helpers of the gpu-labelled tests: GPU detection (tests skip with the
// reason when no GPU is visible, and fail on a GPU when results mismatch), a device
// buffer that can be poisoned with NaN, Philox inputs, and an elementwise
// comparison |gpu - cpu| <= tol_i that also counts elements never written.
//
// Tolerances (style rule 3). Let u = 2^-24, the fp32 unit roundoff. A sum of K
// products computed in any order has error <= γ_K · Σ|terms| with γ_K = K·u/(1-K·u)
// (Higham, Accuracy and Stability, §3.1; FMA only removes roundings). The CPU twin
// and the kernel sum in different orders, so |gpu - cpu| <= 2·γ_K · Σ|terms|.
// Where an op is a plain GEMM, Σ|terms| is computed exactly by running the CPU twin
// on |inputs| (see matmul_test). Elsewhere Σ|terms| is bounded by the scale of the
// tensor: tol_i = rtol·|cpu_i| + rtol·max_j|cpu_j|, with rtol = c·K·u for the
// op's longest reduction K and a small constant c for the roundings around it
// (exp/log are within 2 ulp on both sides). Every such tolerance is orders of
// magnitude below the O(1) relative error of a wrong index, mask or formula, and
// the tests assert that inputs and references are not all zero.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/rng.h"

namespace pt::testing {

constexpr double kFp32Unit = 1.0 / 16777216.0;  // u = 2^-24

// 2·γ_K: the bound on the difference of two fp32 sums of K terms, relative to Σ|terms|.
inline double sum_order_rtol(double K) { return 2.0 * K * kFp32Unit / (1.0 - K * kFp32Unit); }

// Empty when a GPU is usable; otherwise why not. cudaGetDeviceCount fails without a
// driver (cudaErrorInsufficientDriver / NoDevice) or returns 0 devices.
inline std::string gpu_unavailable_reason() {
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error so later calls do not see it
    return std::string("no usable GPU: cudaGetDeviceCount failed with ") + cudaGetErrorName(rc) + " (" +
           cudaGetErrorString(rc) + ")";
  }
  if (count == 0) return "no usable GPU: cudaGetDeviceCount returned 0 devices";
  return "";
}

// Test fixture: every test of a gpu suite derives from it and is skipped, with the
// reason, when no GPU is visible.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = gpu_unavailable_reason();
    if (!why.empty()) GTEST_SKIP() << why;
  }
};

// Owning device buffer of n elements of T (test code: errors become test failures).
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (cudaMalloc(&ptr_, std::max<size_t>(n, 1) * sizeof(T)) != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc of " << n * sizeof(T) << " bytes failed";
      ptr_ = nullptr;
    }
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) {
    ASSERT_EQ(host.size(), n_);
    ASSERT_EQ(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << cudaGetErrorString(cudaGetLastError());
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  // All bytes 0xFF: a NaN for float and double, so an element the kernel never
  // writes shows up as non-finite.
  void poison() { ASSERT_EQ(cudaMemset(ptr_, 0xFF, n_ * sizeof(T)), cudaSuccess); }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// x_i = shift + scale · N(0, 1), a pure function of (seed, stream, i).
inline std::vector<float> philox_vector(size_t n, uint64_t seed, uint64_t stream, float scale = 1.0f,
                                        float shift = 0.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = shift + scale * philox_normal(seed, stream, i);
  return v;
}

inline std::vector<float> abs_of(std::vector<float> v) {
  for (auto& x : v) x = std::fabs(x);
  return v;
}

inline double max_abs(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

// Non-vacuity: a comparison of zeros against zeros proves nothing.
inline void expect_not_all_zero(const std::string& what, const std::vector<float>& v) {
  EXPECT_GT(max_abs(v), 0.0) << what << " is all zero: the test would be vacuous";
}

// tol_i = atol + rtol · |ref_i|.
inline std::vector<double> tolerances(const std::vector<float>& ref, double atol, double rtol) {
  std::vector<double> t(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) t[i] = atol + rtol * std::fabs(double(ref[i]));
  return t;
}

// Scale-aware form used for reductions with sign cancellation (see the header).
inline std::vector<double> scaled_tolerances(const std::vector<float>& ref, double rtol) {
  return tolerances(ref, rtol * max_abs(ref), rtol);
}

// |gpu_i - ref_i| <= tol_i for every i; non-finite gpu values where ref is finite
// count as "not written" (outputs are NaN-poisoned before each run).
inline void expect_within(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& ref,
                          const std::vector<double>& tol) {
  ASSERT_EQ(gpu.size(), ref.size()) << what;
  ASSERT_EQ(tol.size(), ref.size()) << what;
  expect_not_all_zero(what + " (reference)", ref);
  size_t unwritten = 0, bad = 0, shown = 0;
  double worst = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(gpu[i]) && std::isfinite(ref[i])) {
      ++unwritten;
      continue;
    }
    const double err = std::fabs(double(gpu[i]) - double(ref[i]));
    if (tol[i] > 0.0) worst = std::max(worst, err / tol[i]);
    if (!(err <= tol[i])) {
      ++bad;
      if (shown++ < 5) {
        ADD_FAILURE() << what << "[" << i << "]: gpu " << gpu[i] << " vs cpu " << ref[i] << " (|diff| " << err
                      << " > tol " << tol[i] << ")";
      }
    }
  }
  EXPECT_EQ(unwritten, 0u) << what << ": elements left unwritten (still NaN) or non-finite";
  EXPECT_EQ(bad, 0u) << what << ": elements outside tolerance";
  std::printf("  %-34s n=%zu worst |diff|/tol %.3g\n", what.c_str(), ref.size(), worst);
}

inline void expect_bitwise_equal(const std::string& what, const std::vector<float>& gpu,
                                 const std::vector<float>& ref) {
  expect_within(what, gpu, ref, std::vector<double>(ref.size(), 0.0));
}

}  // namespace pt::testing
