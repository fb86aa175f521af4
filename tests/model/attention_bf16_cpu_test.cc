// CPU twin of the bf16 flash attention (model/cpu/attention_bf16.h) against the fp32
// CPU attention (model/cpu/attention.h) on bf16-representable inputs: forward out,
// lse (against the exact double log-sum-exp) and the backward dq, dk, dv (against
// the fp32 backward). Runs without a GPU (label cpu); the gpu test
// tests/model/cuda/attention_bf16_test.cc checks the kernels against this twin.
//
// Bound (derived in the helper below; r = 2^-8, the bf16 unit roundoff): the twin
// rounds P (and dS) to bf16 before the P·V (dS·K, dSᵀ·Q, Pᵀ·dO) products and rounds
// its outputs, the fp32 reference does not. Per element
//   |out_twin - out_fp32| <= 1.01·δ + 1.01·r·|out_fp32|,  δ = (r + 3ε_P + 2e(T))·Σ_k p|v|,
// where ε_P (relative error of a probability: score error through exp2, one rescale
// per 64-key tile) and e(K) = 2γ_K (fp32 summation order) are ~1e-5, i.e. the bound
// is r·(Σ_k p|v| + |out|) to within a few %. dq, dk, dv: the same with Σ|ds||k|,
// Σ|ds||q|, Σ p|dout| and an extra term for the error of D = rowsum(dout ⊙ out),
// which the twin takes from its bf16 output (|ΔD| <= Σ_d |dout|·tol_out). A wrong
// mask, index or scale errs by O(p·|v|) ≈ O(0.1..1), far above these bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "common/rng.h"
#include "model/cpu/attention.h"
#include "model/cpu/attention_bf16.h"
#include "model/cpu/bf16.h"
#include "tests/model/attention_bf16_bounds.h"

namespace pt {
namespace {

using cpu::bf16;

using namespace attention_bf16_test;


void expect_within(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref,
                   const std::vector<double>& tol) {
  ASSERT_EQ(got.size(), ref.size());
  ASSERT_EQ(tol.size(), ref.size());
  double worst = 0, mx = 0;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    mx = std::max(mx, double(std::fabs(ref[i])));
    const double err = std::fabs(double(got[i]) - double(ref[i]));
    worst = std::max(worst, err / tol[i]);
    if (!(err <= tol[i]) && bad++ < 5) {
      ADD_FAILURE() << what << "[" << i << "]: " << got[i] << " vs " << ref[i] << " (|diff| " << err << " > tol "
                    << tol[i] << ")";
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": elements outside tolerance";
  EXPECT_GT(mx, 0.0) << what << ": reference all zero, the comparison would be vacuous";
  std::printf("  %-28s n=%zu worst |diff|/tol %.3g\n", what.c_str(), ref.size(), worst);
}

struct Shape {
  int B, T, NH, HS;
};

void check_shape(const Shape& s) {
  const int B = s.B, T = s.T, NH = s.NH, C = NH * s.HS;
  const std::string tag = " B" + std::to_string(B) + " T" + std::to_string(T) + " NH" + std::to_string(NH) +
                          " HS" + std::to_string(s.HS);
  // Scale 1.5: scores of a few units, so the softmax is far from uniform.
  const auto inp_b = bf16_normal(size_t(B) * T * 3 * C, 31, uint64_t(T * 1000 + C), 1.5f);
  const auto dout_b = bf16_normal(size_t(B) * T * C, 32, uint64_t(T * 1000 + C), 1.0f);
  const auto inp = widen(inp_b), dout = widen(dout_b);

  std::vector<bf16> out_b(size_t(B) * T * C), dinp_b(inp.size());
  std::vector<float> lse(size_t(B) * NH * T), scratch(size_t(B) * NH * T);
  cpu::attention_forward_bf16(out_b.data(), lse.data(), inp_b.data(), B, T, C, NH);
  cpu::attention_backward_bf16(dinp_b.data(), scratch.data(), dout_b.data(), inp_b.data(), out_b.data(), lse.data(),
                               B, T, C, NH);
  const auto out = widen(out_b), dinp = widen(dinp_b);

  std::vector<float> out_f(out.size()), att(size_t(B) * NH * T * T), dinp_f(inp.size()), scr(size_t(T) * T);
  cpu::attention_forward(out_f.data(), att.data(), inp.data(), B, T, C, NH);
  cpu::attention_backward(dinp_f.data(), scr.data(), dout.data(), inp.data(), att.data(), B, T, C, NH);

  const AbsSums a = abs_sums(inp, dout, out, B, T, C, NH);
  const Model m{B, T, C, NH, /*r_p=*/1.0 / 256, /*r_o=*/1.0 / 256, /*mma=*/1.0};

  std::vector<double> tol_out(out.size());
  for (size_t i = 0; i < out.size(); ++i) tol_out[i] = m.out_tol(m.fwd_delta(a, i), out_f[i]);
  expect_within("twin out vs fp32" + tag, out, out_f, tol_out);

  std::vector<float> lse_exact(lse.size());
  std::vector<double> tol_lse(lse.size());
  double lse_err = 0, lse_max = 0;
  for (size_t i = 0; i < lse.size(); ++i) {
    lse_exact[i] = float(a.lse[i]);
    tol_lse[i] = m.lse_tol(a, a.lse[i]);
    lse_err = std::max(lse_err, tol_lse[i]);
    lse_max = std::max(lse_max, std::fabs(a.lse[i]));
  }
  expect_within("twin lse vs exact" + tag, lse, lse_exact, tol_lse);

  // D error of the twin: its bf16 out vs the exact output, plus the reference's own
  // Σ_k p·dp sum order.
  const int HS = s.HS;
  std::vector<double> extraD(size_t(B) * NH * T);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < NH; ++h) {
        double x = m.e(T) * a.pdp[(size_t(b) * NH + h) * T + t];
        for (int d = 0; d < HS; ++d) {
          const size_t i = (size_t(b) * T + t) * C + size_t(h) * HS + d;
          x += std::fabs(dout[i]) * tol_out[i];
        }
        extraD[(size_t(b) * NH + h) * T + t] = x;
      }
    }
  }
  const double eb = m.eps_b(a, lse_max, lse_err), g = m.G(a, extraD);
  const char* name[] = {"dq", "dk", "dv"};
  for (int third = 0; third < 3; ++third) {
    std::vector<float> got, ref;
    std::vector<double> tol;
    for (size_t row = 0; row < size_t(B) * T; ++row) {
      for (int i = 0; i < C; ++i) {
        const size_t e = row * C + i;
        got.push_back(dinp[row * 3 * C + size_t(third) * C + i]);
        ref.push_back(dinp_f[row * 3 * C + size_t(third) * C + i]);
        const double delta = third == 0   ? m.dqk_delta(eb, g, a.adq[e], a.pk[e])
                             : third == 1 ? m.dqk_delta(eb, g, a.adk[e], a.pq[e])
                                          : m.dv_delta(eb, a.adv[e]);
        tol.push_back(m.out_tol(delta, ref.back()));
      }
    }
    expect_within(std::string("twin ") + name[third] + " vs fp32" + tag, got, ref, tol);
  }
}

TEST(AttentionBf16Cpu, TwinMatchesFp32AttentionOnBf16Inputs) {
  // T not a multiple of the 64-row tile; several heads and batches; every HS the
  // kernels support, plus a tiny T.
  for (const Shape& s : {Shape{2, 77, 3, 64}, Shape{1, 130, 2, 32}, Shape{1, 65, 1, 128}, Shape{2, 5, 2, 32}}) {
    check_shape(s);
  }
}

TEST(AttentionBf16Cpu, Bf16RoundingIsNearestEven) {
  const float cases[][2] = {
      {1.0f, 1.0f},
      {1.0f + 1.0f / 256, 1.0f},                    // tie -> even (1.0)
      {1.0f + 3.0f / 256, 1.0f + 4.0f / 256},       // tie -> even (1 + 2^-6)
      {1.0f + 1.0f / 256 + 1.0f / 4096, 1.0f + 1.0f / 128},  // above the tie -> up
      {-2.5f, -2.5f},
      {3.4e38f, INFINITY},                            // past the largest finite bf16 + half an ulp
  };
  for (const auto& c : cases) EXPECT_EQ(cpu::round_to_bf16(c[0]), c[1]) << c[0];
  EXPECT_TRUE(std::isnan(cpu::round_to_bf16(NAN)));
}

}  // namespace
}  // namespace pt
