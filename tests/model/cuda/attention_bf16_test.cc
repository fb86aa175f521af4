// bf16 tensor-core flash attention (model/cuda/attention_bf16.h) against its CPU twin
// (model/cpu/attention_bf16.h) and against the fp32 CPU attention (model/cpu/attention.h),
// forward (out, lse) and backward (dq, dk, dv), on sizes that do not divide the 64-row
// tile (T = 77, 130, 65), every supported HS (64, 32, 128), several heads and batches,
// and Philox inputs rounded to bf16 (not all zero; checked).
//
// Tolerances (derived in the helper below, which is shared verbatim with
// tests/model/attention_bf16_cpu_test.cc):
//  * kernel vs twin. Both round the same intermediate tensors (P and dS to bf16
//    before their MMAs, outputs to bf16) after the same fp32 operations, so they
//    differ by (i) fp32 summation order — e(K) = 2·2γ_K relative to Σ|terms| (doubled
//    because tensor-core fp32 accumulation may truncate) — and exp2f/log2f ulps, and
//    (ii) at most one bf16 ulp (<= 2^-7 relative) where the two fp32 values of a P, dS
//    or output element straddle a rounding boundary. Bounding (ii) as if every P
//    element flipped gives, per element,
//      |out_gpu - out_twin| <= 1.01·(2^-7 + 3ε_P + 2e(T))·Σ_k p|v| + 1.01·2^-7·|out_twin|
//    (ε_P ~1e-5 is the relative fp32 error of a probability), and likewise for the
//    gradients with Σ|ds||k| (dq), Σ|ds||q| (dk), Σ p|dout| (dv). lse involves no bf16
//    rounding: |Δlse| <= ln2·E_s + ε_P + e(T) + 8u(|lse| + ...) (~1e-5). The backward
//    of both sides runs on the GPU's forward out and lse, so the inputs are identical.
//  * kernel vs fp32 CPU attention: r = 2^-8 (one bf16 rounding, of P, dS and the
//    output, against unrounded values) in place of 2^-7, plus the error of D that the
//    kernel takes from its bf16 output (|ΔD| <= Σ_d |dout|·tol_out). This catches a
//    twin that is wrong in the same way as the kernel.
// A wrong mask, index, tile offset or scale errs by O(p·|v|) = O(0.1..1) in many
// elements, far above these bounds (a few 1e-3 relative to the tensor's scale).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/rng.h"
#include "model/cpu/attention.h"
#include "model/cpu/attention_bf16.h"
#include "model/cpu/bf16.h"
#include "model/cuda/attention_bf16.h"
#include "tests/model/attention_bf16_bounds.h"
#include "tests/model/cuda/cuda_test_util.h"

namespace pt {
namespace {

using cpu::bf16;
using testing::DeviceBuffer;
using testing::expect_within;

static_assert(cpu::kAttentionBf16Tile == cuda::kAttentionBf16Tile, "twin and kernel must use the same key tile");

using namespace attention_bf16_test;


__nv_bfloat16* dev(const DeviceBuffer<bf16>& b) { return reinterpret_cast<__nv_bfloat16*>(b.get()); }

class CudaAttentionBf16 : public testing::CudaTest {};

struct Shape {
  int B, T, NH, HS;
};

// dinp third (0 q, 1 k, 2 v) as a (B, T, C) vector.
std::vector<float> third_of(const std::vector<float>& dinp, int third, size_t rows, int C) {
  std::vector<float> x;
  x.reserve(rows * C);
  for (size_t r = 0; r < rows; ++r) {
    for (int i = 0; i < C; ++i) x.push_back(dinp[r * 3 * C + size_t(third) * C + i]);
  }
  return x;
}

// Backward tolerances for the three thirds under model m.
std::vector<double> grad_tol(const Model& m, const AbsSums& a, int third, double eb, double g,
                             const std::vector<float>& ref) {
  std::vector<double> tol(ref.size());
  for (size_t e = 0; e < ref.size(); ++e) {
    const double delta = third == 0   ? m.dqk_delta(eb, g, a.adq[e], a.pk[e])
                         : third == 1 ? m.dqk_delta(eb, g, a.adk[e], a.pq[e])
                                      : m.dv_delta(eb, a.adv[e]);
    tol[e] = m.out_tol(delta, ref[e]);
  }
  return tol;
}

void check_shape(const Shape& s) {
  const int B = s.B, T = s.T, NH = s.NH, HS = s.HS, C = NH * HS;
  const std::string tag = " B" + std::to_string(B) + " T" + std::to_string(T) + " NH" + std::to_string(NH) +
                          " HS" + std::to_string(HS);
  const size_t rows = size_t(B) * T;
  // Scale 1.5: scores of a few units, so the softmax is far from uniform.
  const auto inp_b = bf16_normal(rows * 3 * C, 41, uint64_t(T * 1000 + C), 1.5f);
  const auto dout_b = bf16_normal(rows * C, 42, uint64_t(T * 1000 + C), 1.0f);
  const auto inp = widen(inp_b), dout = widen(dout_b);
  testing::expect_not_all_zero("inp" + tag, inp);
  testing::expect_not_all_zero("dout" + tag, dout);

  // GPU forward (outputs NaN-poisoned first).
  DeviceBuffer<bf16> d_inp(inp_b), d_dout(dout_b), d_out(rows * C), d_dinp(inp_b.size());
  DeviceBuffer<float> d_lse(size_t(B) * NH * T), d_scratch(size_t(B) * NH * T);
  d_out.poison();
  d_lse.poison();
  cuda::attention_forward_bf16(dev(d_out), d_lse.get(), dev(d_inp), B, T, C, NH, nullptr);
  const std::vector<bf16> out_gb = d_out.download();
  const std::vector<float> lse_g = d_lse.download();
  const auto out_g = widen(out_gb);

  // Twin forward.
  std::vector<bf16> out_cb(rows * C);
  std::vector<float> lse_c(lse_g.size());
  cpu::attention_forward_bf16(out_cb.data(), lse_c.data(), inp_b.data(), B, T, C, NH);
  const auto out_c = widen(out_cb);

  // fp32 reference on the same (bf16-representable) inputs.
  std::vector<float> out_f(rows * C), att(size_t(B) * NH * T * T), dinp_f(inp.size()), scr(size_t(T) * T);
  cpu::attention_forward(out_f.data(), att.data(), inp.data(), B, T, C, NH);
  cpu::attention_backward(dinp_f.data(), scr.data(), dout.data(), inp.data(), att.data(), B, T, C, NH);

  const AbsSums a = abs_sums(inp, dout, out_g, B, T, C, NH);
  const Model twin_m{B, T, C, NH, /*r_p=*/1.0 / 128, /*r_o=*/1.0 / 128, /*mma=*/2.0};
  const Model fp32_m{B, T, C, NH, /*r_p=*/1.0 / 256, /*r_o=*/1.0 / 256, /*mma=*/2.0};

  std::vector<double> tol_out_twin(out_c.size()), tol_out_f(out_f.size());
  for (size_t i = 0; i < out_c.size(); ++i) {
    tol_out_twin[i] = twin_m.out_tol(twin_m.fwd_delta(a, i), out_c[i]);
    tol_out_f[i] = fp32_m.out_tol(fp32_m.fwd_delta(a, i), out_f[i]);
  }
  expect_within("bf16 out vs twin" + tag, out_g, out_c, tol_out_twin);
  expect_within("bf16 out vs fp32" + tag, out_g, out_f, tol_out_f);
  std::vector<double> tol_lse_twin(lse_c.size()), tol_lse_exact(lse_c.size());
  std::vector<float> lse_exact(lse_c.size());
  double lse_err = 0, lse_max = 0;
  for (size_t i = 0; i < lse_c.size(); ++i) {
    tol_lse_twin[i] = twin_m.lse_tol(a, lse_c[i]);
    tol_lse_exact[i] = fp32_m.lse_tol(a, a.lse[i]);
    lse_exact[i] = float(a.lse[i]);
    lse_err = std::max(lse_err, tol_lse_exact[i]);
    lse_max = std::max(lse_max, std::fabs(a.lse[i]));
  }
  expect_within("bf16 lse vs twin" + tag, lse_g, lse_c, tol_lse_twin);
  expect_within("bf16 lse vs exact" + tag, lse_g, lse_exact, tol_lse_exact);

  // Backward: GPU and twin both from the GPU's forward out and lse.
  d_dinp.poison();
  d_scratch.poison();
  DeviceBuffer<bf16> d_out_g(out_gb);
  DeviceBuffer<float> d_lse_g(lse_g);
  cuda::attention_backward_bf16(dev(d_dinp), d_scratch.get(), dev(d_dout), dev(d_inp), dev(d_out_g), d_lse_g.get(),
                                B, T, C, NH, nullptr);
  const std::vector<bf16> dinp_gb = d_dinp.download();
  const auto dinp_g = widen(dinp_gb);
  std::vector<bf16> dinp_cb(inp_b.size());
  std::vector<float> scratch_c(size_t(B) * NH * T);
  cpu::attention_backward_bf16(dinp_cb.data(), scratch_c.data(), dout_b.data(), inp_b.data(), out_gb.data(),
                               lse_g.data(), B, T, C, NH);
  const auto dinp_c = widen(dinp_cb);

  // vs twin: identical inputs, D differs only by fp32 order (inside G).
  const double eb_twin = twin_m.eps_b(a, lse_max, 0.0), g_twin = twin_m.G(a, {});
  // vs fp32: the kernel's D comes from its bf16 out and its lse from its own forward.
  std::vector<double> extraD(size_t(B) * NH * T);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < NH; ++h) {
        const size_t r = (size_t(b) * NH + h) * T + t;
        double x = fp32_m.e(T) * a.pdp[r];
        for (int d = 0; d < HS; ++d) {
          const size_t i = (size_t(b) * T + t) * C + size_t(h) * HS + d;
          x += std::fabs(dout[i]) * tol_out_f[i];
        }
        extraD[r] = x;
      }
    }
  }
  const double eb_f = fp32_m.eps_b(a, lse_max, lse_err), g_f = fp32_m.G(a, extraD);
  const char* name[] = {"dq", "dk", "dv"};
  for (int third = 0; third < 3; ++third) {
    const auto g = third_of(dinp_g, third, rows, C);
    const auto c = third_of(dinp_c, third, rows, C);
    const auto f = third_of(dinp_f, third, rows, C);
    expect_within(std::string("bf16 ") + name[third] + " vs twin" + tag, g, c,
                  grad_tol(twin_m, a, third, eb_twin, g_twin, c));
    expect_within(std::string("bf16 ") + name[third] + " vs fp32" + tag, g, f,
                  grad_tol(fp32_m, a, third, eb_f, g_f, f));
  }

  // Deterministic: a second forward and backward give the same bits.
  d_out.poison();
  cuda::attention_forward_bf16(dev(d_out), d_lse.get(), dev(d_inp), B, T, C, NH, nullptr);
  testing::expect_bitwise_equal("bf16 out rerun" + tag, widen(d_out.download()), out_g);
  d_dinp.poison();
  cuda::attention_backward_bf16(dev(d_dinp), d_scratch.get(), dev(d_dout), dev(d_inp), dev(d_out_g), d_lse_g.get(),
                                B, T, C, NH, nullptr);
  testing::expect_bitwise_equal("bf16 dinp rerun" + tag, widen(d_dinp.download()), dinp_g);
}

TEST_F(CudaAttentionBf16, MatchesTwinAndFp32OnOddShapes) {
  for (const Shape& s : {Shape{2, 77, 3, 64}, Shape{1, 130, 2, 32}, Shape{1, 65, 1, 128}, Shape{2, 5, 2, 32},
                         Shape{1, 128, 2, 64}}) {
    check_shape(s);
  }
}

}  // namespace
}  // namespace pt
