// Tiled causal attention (fp32, online softmax, lse saved) vs the CPU twin that
// materializes the (T, T) probabilities. Shapes cover T not a multiple of the
// 32-row tile, head sizes 16, 36 and 128 (128 needs > 48 KB of shared memory),
// and several heads and batches so a wrong head/batch offset cannot pass.
//
// Tolerance: the longest reductions are the dot products over HS and the sums over
// up to T keys (softmax denominator, p·v, and in the backward Σ_q and Σ_k of ds
// terms); exp/log add a few ulp per term. The backward subtracts D = <p, dp> from
// dp, which cancels, so errors are relative to the tensor's scale, not to each
// element: tol_i = rtol·(|cpu_i| + max|cpu|) with rtol = 2·γ_{T+HS} + 16u (forward)
// and twice that for the gradients (two chained reductions).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "model/cpu/attention.h"
#include "model/cuda/attention.h"
#include "tests/model/cuda/cuda_test_util.h"

namespace pt {
namespace {

using testing::DeviceBuffer;
using testing::expect_within;
using testing::kFp32Unit;
using testing::philox_vector;

class CudaAttention : public testing::CudaTest {};

struct Shape {
  int B, T, C, NH;
};

void check_shape(const Shape& s) {
  const int B = s.B, T = s.T, C = s.C, NH = s.NH, HS = C / NH;
  const std::string tag = " B" + std::to_string(B) + " T" + std::to_string(T) + " C" + std::to_string(C) + " NH" +
                          std::to_string(NH);
  // Scale 1.5: scores of a few units, so the softmax is far from uniform.
  const auto inp = philox_vector(size_t(B) * T * 3 * C, 21, uint64_t(T * 1000 + C), 1.5f);
  const auto dout = philox_vector(size_t(B) * T * C, 22, uint64_t(T * 1000 + C));
  std::vector<float> out(size_t(B) * T * C), att(size_t(B) * NH * T * T), dinp(inp.size()), scratch(size_t(T) * T);
  cpu::attention_forward(out.data(), att.data(), inp.data(), B, T, C, NH);
  cpu::attention_backward(dinp.data(), scratch.data(), dout.data(), inp.data(), att.data(), B, T, C, NH);
  // The lse the GPU must save: log Σ_s exp(score_s), in double from the CPU's scores.
  std::vector<float> lse(size_t(B) * NH * T);
  const double scale = 1.0 / std::sqrt(double(HS));
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      for (int t = 0; t < T; ++t) {
        const float* q = inp.data() + (size_t(b) * T + t) * 3 * C + size_t(h) * HS;
        std::vector<double> sc(t + 1);
        double mx = -1e300;
        for (int u = 0; u <= t; ++u) {
          const float* k = inp.data() + (size_t(b) * T + u) * 3 * C + C + size_t(h) * HS;
          double d = 0.0;
          for (int i = 0; i < HS; ++i) d += double(q[i]) * double(k[i]);
          sc[u] = d * scale;
          mx = std::max(mx, sc[u]);
        }
        double sum = 0.0;
        for (int u = 0; u <= t; ++u) sum += std::exp(sc[u] - mx);
        lse[(size_t(b) * NH + h) * T + t] = float(mx + std::log(sum));
      }
    }
  }

  DeviceBuffer<float> d_inp(inp), d_dout(dout), d_out(out.size()), d_lse(lse.size()), d_dinp(dinp.size());
  DeviceBuffer<float> d_scratch(size_t(B) * NH * T);
  d_out.poison();
  d_lse.poison();
  cuda::attention_forward(d_out.get(), d_lse.get(), d_inp.get(), B, T, C, NH, nullptr);
  const double rtol = testing::sum_order_rtol(T + HS) + 16 * kFp32Unit;
  expect_within("attention out" + tag, d_out.download(), out, testing::scaled_tolerances(out, rtol));
  expect_within("attention lse" + tag, d_lse.download(), lse, testing::scaled_tolerances(lse, rtol));

  // Backward from the GPU's own forward state (as training runs it).
  d_dinp.poison();
  d_scratch.poison();
  cuda::attention_backward(d_dinp.get(), d_scratch.get(), d_dout.get(), d_inp.get(), d_out.get(), d_lse.get(), B, T,
                           C, NH, nullptr);
  const auto gpu_dinp = d_dinp.download();
  // Compare q, k, v thirds separately: each has its own scale.
  for (int third = 0; third < 3; ++third) {
    std::vector<float> g, c;
    for (size_t row = 0; row < size_t(B) * T; ++row) {
      for (int i = 0; i < C; ++i) {
        g.push_back(gpu_dinp[row * 3 * C + size_t(third) * C + i]);
        c.push_back(dinp[row * 3 * C + size_t(third) * C + i]);
      }
    }
    const char* name[] = {"dq", "dk", "dv"};
    expect_within(std::string("attention ") + name[third] + tag, g, c, testing::scaled_tolerances(c, 2 * rtol));
  }
  // Deterministic: a second backward gives the same bits.
  d_dinp.poison();
  cuda::attention_backward(d_dinp.get(), d_scratch.get(), d_dout.get(), d_inp.get(), d_out.get(), d_lse.get(), B, T,
                           C, NH, nullptr);
  testing::expect_bitwise_equal("attention dinp rerun" + tag, d_dinp.download(), gpu_dinp);
}

TEST_F(CudaAttention, MatchesCpuOnOddShapes) {
  for (const Shape& s : {Shape{2, 67, 108, 3}, Shape{3, 33, 64, 4}, Shape{1, 129, 128, 1}, Shape{2, 31, 96, 2}}) {
    check_shape(s);
  }
}

}  // namespace
}  // namespace pt
