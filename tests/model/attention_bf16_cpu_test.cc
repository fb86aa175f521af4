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

namespace pt {
namespace {

using cpu::bf16;

// ---- Error-bound helper (identical in tests/model/attention_bf16_cpu_test.cc and
// tests/model/cuda/attention_bf16_test.cc). Notation: u = 2^-24 (fp32 unit
// roundoff); a bf16 rounding errs by <= 2^-8·|x| and two bf16 roundings of nearby
// fp32 values differ by at most one bf16 ulp <= 2^-7·|x| (a "flip"); e(K) bounds the
// difference of two fp32 sums of K terms relative to Σ|terms| (2·γ_K; doubled when
// one side is a tensor-core MMA, whose fp32 accumulation may truncate instead of
// round). Every tolerance below is r·(a sum of |terms| of the exact computation)
// plus fp32 terms, evaluated in double from the exact probabilities.

// Exact (double) magnitudes per element, from bf16-representable inputs.
struct AbsSums {
  std::vector<double> out_abs;       // (B, T, C): Σ_k p_tk |v_kd|
  std::vector<double> lse;           // (B, NH, T): exact log-sum-exp
  std::vector<double> adq, adk, adv;  // (B, T, C): scale·Σ_k |ds||k|, scale·Σ_t |ds||q|, Σ_t p |dout|
  std::vector<double> pk, pq;        // (B, T, C): scale·Σ_k p |k|, scale·Σ_t p |q|
  std::vector<double> pdp;           // (B, NH, T): Σ_k p |dp|
  std::vector<double> dnorm, onorm;  // (B, NH, T): row 2-norms of dout and out_used
  double qmax = 0, kmax = 0, vmax = 0;  // max row 2-norms over the whole input
};

// ds uses D_t = Σ_d dout·out_used (the bf16 forward output both sides consume).
AbsSums abs_sums(const std::vector<float>& inp, const std::vector<float>& dout, const std::vector<float>& out_used,
                 int B, int T, int C, int NH) {
  const int HS = C / NH;
  const size_t C3 = 3 * size_t(C);
  const double scale = 1.0 / std::sqrt(double(HS));
  AbsSums a;
  const size_t n = size_t(B) * T * C;
  a.out_abs.assign(n, 0.0);
  a.adq.assign(n, 0.0);
  a.adk.assign(n, 0.0);
  a.adv.assign(n, 0.0);
  a.pk.assign(n, 0.0);
  a.pq.assign(n, 0.0);
  a.dnorm.assign(size_t(B) * NH * T, 0.0);
  a.onorm.assign(size_t(B) * NH * T, 0.0);
  a.lse.assign(size_t(B) * NH * T, 0.0);
  a.pdp.assign(size_t(B) * NH * T, 0.0);
  auto norm = [&](const float* x) {
    double s = 0;
    for (int d = 0; d < HS; ++d) s += double(x[d]) * x[d];
    return std::sqrt(s);
  };
  std::vector<double> p(size_t(T) * T);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      auto q = [&](int t) { return inp.data() + (size_t(b) * T + t) * C3 + size_t(h) * HS; };
      auto k = [&](int t) { return q(t) + C; };
      auto v = [&](int t) { return q(t) + 2 * size_t(C); };
      auto go = [&](int t) { return dout.data() + (size_t(b) * T + t) * C + size_t(h) * HS; };
      auto fo = [&](int t) { return out_used.data() + (size_t(b) * T + t) * C + size_t(h) * HS; };
      auto at = [&](std::vector<double>& x, int t, int d) -> double& { return x[(size_t(b) * T + t) * C + size_t(h) * HS + d]; };
      const size_t row0 = (size_t(b) * NH + h) * T;
      for (int t = 0; t < T; ++t) {
        a.qmax = std::max(a.qmax, norm(q(t)));
        a.kmax = std::max(a.kmax, norm(k(t)));
        a.vmax = std::max(a.vmax, norm(v(t)));
        double mx = -1e300;
        for (int j = 0; j <= t; ++j) {
          double s = 0;
          for (int d = 0; d < HS; ++d) s += double(q(t)[d]) * k(j)[d];
          p[size_t(t) * T + j] = s * scale;
          mx = std::max(mx, s * scale);
        }
        double sum = 0;
        for (int j = 0; j <= t; ++j) sum += std::exp(p[size_t(t) * T + j] - mx);
        a.lse[row0 + t] = mx + std::log(sum);
        for (int j = 0; j <= t; ++j) p[size_t(t) * T + j] = std::exp(p[size_t(t) * T + j] - a.lse[row0 + t]);
      }
      for (int t = 0; t < T; ++t) {
        double D = 0;
        for (int d = 0; d < HS; ++d) D += double(go(t)[d]) * fo(t)[d];
        a.dnorm[row0 + t] = norm(go(t));
        a.onorm[row0 + t] = norm(fo(t));
        for (int j = 0; j <= t; ++j) {
          const double pj = p[size_t(t) * T + j];
          double dp = 0;
          for (int d = 0; d < HS; ++d) dp += double(go(t)[d]) * v(j)[d];
          const double ds = std::fabs(pj * (dp - D));
          a.pdp[row0 + t] += pj * std::fabs(dp);
          for (int d = 0; d < HS; ++d) {
            at(a.out_abs, t, d) += pj * std::fabs(v(j)[d]);
            at(a.adq, t, d) += scale * ds * std::fabs(k(j)[d]);
            at(a.adk, j, d) += scale * ds * std::fabs(q(t)[d]);
            at(a.adv, j, d) += pj * std::fabs(go(t)[d]);
            at(a.pk, t, d) += scale * pj * std::fabs(k(j)[d]);
            at(a.pq, j, d) += scale * pj * std::fabs(q(t)[d]);
          }
        }
      }
    }
  }
  return a;
}

// Tolerance model. r_p: allowance for the bf16 rounding of each P / dS element
// (2^-7: a flip between two roundings; 2^-8: one rounding vs an unrounded fp32
// reference); r_o: the same for the bf16 output itself; mma: 2 when one side sums
// on tensor cores, else 1.
struct Model {
  int B, T, C, NH;
  double r_p, r_o, mma;
  static constexpr double kU = 1.0 / 16777216.0;  // 2^-24
  double e(double K) const { return mma * 2.0 * K * kU / (1.0 - K * kU); }
  int HS() const { return C / NH; }
  double c() const { return (1.0 / std::sqrt(double(HS()))) * 1.4426950408889634; }
  // Absolute error of a score in the log2 domain (dot over HS plus the scaling).
  double Es(const AbsSums& a) const { return c() * (e(HS()) + 2 * kU) * a.qmax * a.kmax; }
  double S2(const AbsSums& a) const { return c() * a.qmax * a.kmax; }  // bounds |s2| and |m|
  // Relative error of a forward probability: exponent error (score, max, subtraction)
  // through exp2, exp2f ulps, and one alpha rescale per key tile.
  double eps_P(const AbsSums& a) const {
    const double eps_p = std::log(2.0) * (2 * Es(a) + 4 * kU * S2(a)) + 8 * kU;
    return (std::ceil(T / 64.0) + 1) * eps_p;
  }
  // |x_bf16 - ref| given |x_fp32 - ref_fp32| <= delta (see the header comment).
  double out_tol(double delta, double ref) const { return 1.01 * delta + 1.01 * r_o * std::fabs(ref) + 1e-30; }
  double fwd_delta(const AbsSums& a, size_t i) const {
    return (r_p + 3 * eps_P(a) + 2 * e(T)) * a.out_abs[i];
  }
  double lse_tol(const AbsSums& a, double lse) const {
    return std::log(2.0) * Es(a) + eps_P(a) + e(T) + 8 * kU * (std::fabs(lse) + std::log(2.0) * S2(a));
  }
  // Relative error of a recomputed backward probability; lse_err: absolute error of
  // the lse consumed relative to the reference's normalization.
  double eps_b(const AbsSums& a, double lse_max, double lse_err) const {
    return std::log(2.0) * (Es(a) + 4 * kU * (S2(a) + 1.45 * lse_max)) + 8 * kU + e(T) + 1.01 * lse_err;
  }
  // Bound on |Δ(dp - D)| over all rows: both dots over HS (fp32 order) plus the
  // subtraction; extraD (B, NH, T, may be empty) adds a per-row error of D itself.
  double G(const AbsSums& a, const std::vector<double>& extraD) const {
    double g = 0;
    for (size_t i = 0; i < a.dnorm.size(); ++i) {
      g = std::max(g, (e(HS()) + 2 * kU) * a.dnorm[i] * (a.vmax + a.onorm[i]) + (extraD.empty() ? 0.0 : extraD[i]));
    }
    return g;
  }
  // Pre-rounding error bounds of dq, dk (r_p covers bf16(ds)) and dv (bf16(p)).
  double dqk_delta(double eb, double g, double adx, double px) const {
    return (r_p + 2 * eb + 1.01 * e(T) + 4 * kU) * adx + 1.01 * g * px;
  }
  double dv_delta(double eb, double adv) const { return (r_p + 2 * eb + e(T) + 4 * kU) * adv; }
};
// ---- end of the error-bound helper


std::vector<float> to_float(const std::vector<bf16>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = cpu::bf16_to_float(v[i]);
  return f;
}

// Philox normal samples (scale·N(0,1)) rounded to bf16.
std::vector<bf16> bf16_normal(size_t n, uint64_t seed, uint64_t stream, float scale) {
  std::vector<bf16> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = cpu::float_to_bf16(scale * philox_normal(seed, stream, i));
  return v;
}

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
  const auto inp = to_float(inp_b), dout = to_float(dout_b);

  std::vector<bf16> out_b(size_t(B) * T * C), dinp_b(inp.size());
  std::vector<float> lse(size_t(B) * NH * T), scratch(size_t(B) * NH * T);
  cpu::attention_forward_bf16(out_b.data(), lse.data(), inp_b.data(), B, T, C, NH);
  cpu::attention_backward_bf16(dinp_b.data(), scratch.data(), dout_b.data(), inp_b.data(), out_b.data(), lse.data(),
                               B, T, C, NH);
  const auto out = to_float(out_b), dinp = to_float(dinp_b);

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
