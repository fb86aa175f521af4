// Shared by the bf16 attention tests: exact (double) reference magnitudes and the
// error bounds derived from them. Header-only; included by one test per binary.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/rng.h"
#include "model/cpu/attention.h"
#include "model/cpu/bf16.h"
#include "tests/model/bf16_test_util.h"

namespace pt::attention_bf16_test {

using cpu::bf16;
using testing::bf16_normal;
using testing::widen;

// Notation: u = 2^-24 (fp32 unit
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
inline AbsSums abs_sums(const std::vector<float>& inp, const std::vector<float>& dout, const std::vector<float>& out_used,
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

}  // namespace pt::attention_bf16_test
