// CPU twins of the bf16 ops (model/cpu/{matmul,layernorm,convert}_bf16.h) against the
// fp32 CPU ops (model/cpu/matmul.h, layernorm.h) on bf16-representable inputs, and
// the fp32 -> bf16 rounding rules (round to nearest, ties to even; NaN, ±inf,
// overflow, subnormals). Runs without a GPU (label cpu); the gpu test
// tests/model/cuda/bf16_ops_test.cc checks the kernels against these twins.
//
// Bounds (u = 2^-24 the fp32 unit roundoff, r = 2^-8 the bf16 unit roundoff). The
// inputs are bf16 values, so the twin and the fp32 op see the same fp32 numbers and
// every product of two of them is exact in fp32. Two fp32 sums of the same K terms in
// different orders differ by at most 2γ_K·Σ|terms|, γ_K = K·u/(1 - K·u) (Higham §3.1),
// and Σ|terms| is computed exactly enough by running the fp32 op on |inputs|. For a
// bf16 output the twin rounds its fp32 value a once, the fp32 op returns b unrounded:
//   |bf16(a) - b| <= |a - b| + r·|a| <= Δ + r·(|b| + Δ),   Δ >= |a - b|      (one_rounding)
// fp32 outputs (weight/bias gradients) are compared with Δ alone. LayerNorm's Δ is
// derived below, next to its test. A wrong index, transpose or rounding point errs
// by O(r·|x|) to O(|x|) in many elements; these bounds are ~r·|x|, and each check
// also asserts the reference is not all zero.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/rng.h"
#include "model/cpu/bf16.h"
#include "model/cpu/convert_bf16.h"
#include "model/cpu/gelu.h"
#include "model/cpu/layernorm.h"
#include "model/cpu/layernorm_bf16.h"
#include "model/cpu/matmul.h"
#include "model/cpu/matmul_bf16.h"
#include "tests/model/bf16_test_util.h"

namespace pt {
namespace {

using cpu::bf16;
using testing::bf16_normal;
using testing::widen;

constexpr double kU = 1.0 / 16777216.0;  // fp32 unit roundoff 2^-24
constexpr double kR = 1.0 / 256.0;       // bf16 unit roundoff 2^-8

// 2·γ_K: bound on the difference of two fp32 sums of K terms, relative to Σ|terms|.
double sum_order(double K) { return 2.0 * K * kU / (1.0 - K * kU); }

double one_rounding(double ref, double delta) { return delta + kR * (std::fabs(ref) + delta); }



std::vector<float> abs_of(std::vector<float> v) {
  for (auto& x : v) x = std::fabs(x);
  return v;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// |got_i - ref_i| <= tol_i for all i; ref not all zero; got finite.
void expect_within(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref,
                   const std::vector<double>& tol) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  ASSERT_EQ(tol.size(), ref.size()) << what;
  double ref_max = 0.0, worst = 0.0;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    ref_max = std::max(ref_max, double(std::fabs(ref[i])));
    const double err = std::fabs(double(got[i]) - double(ref[i]));
    if (tol[i] > 0) worst = std::max(worst, err / tol[i]);
    if (!(err <= tol[i]) && bad++ < 5) {
      ADD_FAILURE() << what << "[" << i << "]: " << got[i] << " vs " << ref[i] << " (|diff| " << err << " > tol "
                    << tol[i] << ")";
    }
  }
  EXPECT_GT(ref_max, 0.0) << what << ": reference all zero (vacuous)";
  EXPECT_EQ(bad, 0u) << what;
  std::printf("  %-44s n=%zu worst |diff|/tol %.3g\n", what.c_str(), ref.size(), worst);
}

// ---------------------------------------------------------------- conversions

TEST(Bf16Convert, RoundToNearestTiesToEven) {
  struct Case {
    float in;
    uint16_t out;
  };
  const float h = std::ldexp(1.0f, -8);  // half a bf16 ulp at 1
  const Case cases[] = {
      {1.0f, 0x3F80},
      {1.0f + h, 0x3F80},                                 // tie, 0x3F80 even: down
      {1.0f + 3 * h, 0x3F82},                             // tie, 0x3F81 odd: up to even
      {1.0f + h + std::ldexp(1.0f, -20), 0x3F81},         // just above the tie: up
      {1.0f + h - std::ldexp(1.0f, -20), 0x3F80},         // just below the tie: down
      {-(1.0f + h), 0xBF80},                              // sign-symmetric
      {-(1.0f + 3 * h), 0xBF82},
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {std::numeric_limits<float>::infinity(), 0x7F80},
      {-std::numeric_limits<float>::infinity(), 0xFF80},
      {std::numeric_limits<float>::max(), 0x7F80},         // overflow rounds to inf
      {-std::numeric_limits<float>::max(), 0xFF80},
      {float_of(0x7F7F7FFFu), 0x7F7F},                     // largest below the tie: max finite bf16
      {float_of(0x7F7F8000u), 0x7F80},                     // tie at the top, 0x7F7F odd: up to inf
      {float_of(0x7F7E8000u), 0x7F7E},                     // tie, 0x7F7E even: down
      {float_of(0x00008000u), 0x0000},                     // subnormal tie, even: down to zero
      {float_of(0x00018000u), 0x0002},                     // subnormal tie, odd: up
      {float_of(0x00007FFFu), 0x0000},
      {std::numeric_limits<float>::min(), 0x0080},         // smallest normal is exact
  };
  for (const Case& c : cases) {
    EXPECT_EQ(cpu::float_to_bf16(c.in).bits, c.out) << "input bits 0x" << std::hex << bits_of(c.in);
  }
  // NaN stays NaN, including NaNs whose payload lies only in the dropped low bits
  // (naive rounding would turn 0x7F800001 into inf).
  for (uint32_t nan_bits : {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0x7F80FFFFu}) {
    const bf16 b = cpu::float_to_bf16(float_of(nan_bits));
    EXPECT_TRUE(std::isnan(cpu::bf16_to_float(b))) << std::hex << nan_bits << " -> " << b.bits;
  }
}

TEST(Bf16Convert, RoundTripAndArrays) {
  // bf16 -> fp32 is exact: every non-NaN bf16 survives the round trip bit for bit.
  std::vector<bf16> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i].bits = uint16_t(i);
  std::vector<float> f(all.size());
  cpu::convert_bf16_to_fp32(f.data(), all.data(), all.size());
  std::vector<bf16> back(all.size());
  cpu::convert_fp32_to_bf16(back.data(), f.data(), f.size());
  size_t nan = 0;
  for (uint32_t i = 0; i < 65536; ++i) {
    ASSERT_EQ(bits_of(f[i]), i << 16);
    if (std::isnan(f[i])) {
      ++nan;
      EXPECT_TRUE(std::isnan(cpu::bf16_to_float(back[i])));
    } else {
      EXPECT_EQ(back[i].bits, uint16_t(i));
    }
  }
  EXPECT_EQ(nan, 2u * 127u);  // 2 signs x (2^7 - 1) mantissas
  // The array form equals the scalar rounding, and is within half an ulp (r·|x|).
  const size_t n = 4099;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = std::ldexp(philox_normal(5, 1, i), int(i % 41) - 20);
  std::vector<bf16> y(n);
  cpu::convert_fp32_to_bf16(y.data(), x.data(), n);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(y[i].bits, cpu::float_to_bf16(x[i]).bits);
    EXPECT_LE(std::fabs(double(cpu::bf16_to_float(y[i])) - x[i]), kR * std::fabs(x[i]));
  }
}

// In-place rounding (the bf16 storage of the stage model) equals convert there and
// back, bitwise for non-NaN, and is idempotent.
TEST(Bf16Convert, RoundInPlaceIsConvertThereAndBack) {
  const size_t n = 4099;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = std::ldexp(philox_normal(6, 1, i), int(i % 41) - 20);
  for (uint32_t b : {0x3F808000u, 0x3F818000u, 0x7F7F8000u, 0x00008000u, 0x7F800000u, 0x80000000u, 0x7FC00000u}) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    x.push_back(f);
  }
  std::vector<bf16> h(x.size());
  std::vector<float> ref(x.size()), y = x;
  cpu::convert_fp32_to_bf16(h.data(), x.data(), x.size());
  cpu::convert_bf16_to_fp32(ref.data(), h.data(), h.size());
  cpu::round_fp32_to_bf16(y.data(), y.size());
  std::vector<float> twice = y;
  cpu::round_fp32_to_bf16(twice.data(), twice.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(ref[i])) {
      EXPECT_TRUE(std::isnan(y[i]));
      continue;
    }
    ASSERT_EQ(bits_of(y[i]), bits_of(ref[i])) << i;
    ASSERT_EQ(bits_of(twice[i]), bits_of(y[i])) << i;
  }
}

// ---------------------------------------------------------------- matmul

struct Shape {
  int N, C, OC;
};

std::string tag_of(const Shape& s) {
  return " N" + std::to_string(s.N) + " C" + std::to_string(s.C) + " OC" + std::to_string(s.OC);
}

class Bf16MatmulTwin : public ::testing::TestWithParam<Shape> {};

TEST_P(Bf16MatmulTwin, MatchesFp32Ops) {
  const Shape s = GetParam();
  const int N = s.N, C = s.C, OC = s.OC;
  const std::string tag = tag_of(s);
  const auto inp = bf16_normal(size_t(N) * C, 21, 1, 1.0f);
  const auto weight = bf16_normal(size_t(OC) * C, 21, 2, 0.2f);
  const auto bias = bf16_normal(OC, 21, 3, 0.5f);
  const auto dout = bf16_normal(size_t(N) * OC, 21, 4, 1.0f);
  const auto fi = widen(inp), fw = widen(weight), fb = widen(bias), fd = widen(dout);
  const auto ai = abs_of(fi), aw = abs_of(fw), ab = abs_of(fb), ad = abs_of(fd);

  // Forward, with and without bias: K = C products (+ the bias).
  for (bool with_bias : {true, false}) {
    std::vector<bf16> out(size_t(N) * OC);
    cpu::matmul_forward_bf16(out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr, N, C, OC);
    std::vector<float> ref(out.size()), mag(out.size());
    cpu::matmul_forward(ref.data(), fi.data(), fw.data(), with_bias ? fb.data() : nullptr, N, C, OC);
    cpu::matmul_forward(mag.data(), ai.data(), aw.data(), with_bias ? ab.data() : nullptr, N, C, OC);
    std::vector<double> tol(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) tol[i] = one_rounding(ref[i], (sum_order(C + 1) + kU) * mag[i]);
    expect_within(std::string("matmul_forward_bf16") + (with_bias ? "" : " (no bias)") + tag, widen(out), ref, tol);
  }

  // Fused GELU: pre_gelu = bf16(p) (as above), out = bf16(gelu(p)). Both sides run
  // cpu::gelu_forward on fp32 p's within Δp of each other; |gelu'| <= 1.13 and the
  // two fp32 GELU evaluations differ by a few u·|p| (tanhf within 2 ulp), so
  // Δout <= 1.13·Δp + 16u·(|p| + Δp).
  {
    std::vector<bf16> out(size_t(N) * OC), pre(size_t(N) * OC);
    cpu::matmul_forward_gelu_bf16(out.data(), pre.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
    std::vector<float> p(out.size()), mag(out.size()), g(out.size());
    cpu::matmul_forward(p.data(), fi.data(), fw.data(), fb.data(), N, C, OC);
    cpu::matmul_forward(mag.data(), ai.data(), aw.data(), ab.data(), N, C, OC);
    cpu::gelu_forward(g.data(), p.data(), int(p.size()));
    std::vector<double> tol_p(p.size()), tol_g(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      const double dp = (sum_order(C + 1) + kU) * mag[i];
      tol_p[i] = one_rounding(p[i], dp);
      tol_g[i] = one_rounding(g[i], 1.13 * dp + 16 * kU * (std::fabs(p[i]) + dp));
    }
    expect_within("matmul_forward_gelu_bf16 pre_gelu" + tag, widen(pre), p, tol_p);
    expect_within("matmul_forward_gelu_bf16 out" + tag, widen(out), g, tol_g);
  }

  // Input gradient: K = OC.
  {
    std::vector<bf16> dinp(size_t(N) * C);
    cpu::matmul_backward_input_bf16(dinp.data(), dout.data(), weight.data(), N, C, OC);
    std::vector<float> ref(dinp.size()), mag(dinp.size());
    cpu::matmul_backward_input(ref.data(), fd.data(), fw.data(), N, C, OC);
    cpu::matmul_backward_input(mag.data(), ad.data(), aw.data(), N, C, OC);
    std::vector<double> tol(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) tol[i] = one_rounding(ref[i], sum_order(OC) * mag[i]);
    expect_within("matmul_backward_input_bf16" + tag, widen(dinp), ref, tol);
  }

  // Input gradient with the GELU backward (DGELU): dinp = bf16(gelu'(pre)·a) against the
  // fp32 ops, cpu::gelu_backward on the fp32 op's a: both evaluate the same gelu' on the
  // same pre (bitwise), so Δ = 1.13·Δa + u·(2|ref| + Δa) (each side's product rounding),
  // then the twin's one bf16 rounding.
  {
    const auto pre = bf16_normal(size_t(N) * C, 21, 7, 1.5f);
    std::vector<bf16> dinp(size_t(N) * C);
    cpu::matmul_backward_input_dgelu_bf16(dinp.data(), dout.data(), weight.data(), pre.data(), N, C, OC);
    std::vector<float> a(dinp.size()), ref(dinp.size()), mag(dinp.size());
    cpu::matmul_backward_input(a.data(), fd.data(), fw.data(), N, C, OC);
    cpu::matmul_backward_input(mag.data(), ad.data(), aw.data(), N, C, OC);
    cpu::gelu_backward(ref.data(), widen(pre).data(), a.data(), int(a.size()));
    std::vector<double> tol(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      const double da = 1.13 * sum_order(OC) * mag[i];
      tol[i] = one_rounding(ref[i], da + kU * (2 * std::fabs(ref[i]) + da));
    }
    expect_within("matmul_backward_input_dgelu_bf16" + tag, widen(dinp), ref, tol);
  }

  // fp32-output forms (the CUDA backend's bf16 mode): the fp32 values the bf16 forms
  // round, so bf16 of each is bitwise the bf16 form (same serial sums, the same bias
  // value), and each is within Δ of the fp32 op (no rounding term).
  {
    std::vector<float> out(size_t(N) * OC), ref(out.size()), mag(out.size());
    std::vector<bf16> out16(out.size());
    cpu::matmul_forward_bf16_fp32out(out.data(), inp.data(), weight.data(), fb.data(), N, C, OC);
    cpu::matmul_forward_bf16(out16.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
    cpu::matmul_forward(ref.data(), fi.data(), fw.data(), fb.data(), N, C, OC);
    cpu::matmul_forward(mag.data(), ai.data(), aw.data(), ab.data(), N, C, OC);
    std::vector<double> tol(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) tol[i] = (sum_order(C + 1) + kU) * mag[i];
    expect_within("matmul_forward_bf16_fp32out" + tag, out, ref, tol);
    for (size_t i = 0; i < out.size(); ++i)
      ASSERT_EQ(cpu::float_to_bf16(out[i]).bits, out16[i].bits) << "forward fp32out vs bf16 form at " << i << tag;

    std::vector<float> dinp(size_t(N) * C), dref(dinp.size()), dmag(dinp.size());
    std::vector<bf16> dinp16(dinp.size());
    cpu::matmul_backward_input_bf16_fp32out(dinp.data(), dout.data(), weight.data(), N, C, OC);
    cpu::matmul_backward_input_bf16(dinp16.data(), dout.data(), weight.data(), N, C, OC);
    cpu::matmul_backward_input(dref.data(), fd.data(), fw.data(), N, C, OC);
    cpu::matmul_backward_input(dmag.data(), ad.data(), aw.data(), N, C, OC);
    std::vector<double> dtol(dref.size());
    for (size_t i = 0; i < dref.size(); ++i) dtol[i] = sum_order(OC) * dmag[i];
    expect_within("matmul_backward_input_bf16_fp32out" + tag, dinp, dref, dtol);
    for (size_t i = 0; i < dinp.size(); ++i)
      ASSERT_EQ(cpu::float_to_bf16(dinp[i]).bits, dinp16[i].bits) << "backward_input fp32out vs bf16 form at " << i
                                                                   << tag;
  }

  // Weight/bias gradients, fp32, accumulated twice onto non-zero initial values:
  // 2N products + the initial value per element, no bf16 rounding.
  {
    const auto dw0 = widen(bf16_normal(size_t(OC) * C, 21, 5, 1.0f));
    const auto db0 = widen(bf16_normal(OC, 21, 6, 1.0f));
    std::vector<float> dw = dw0, db = db0, ref_dw = dw0, ref_db = db0, mag_dw = abs_of(dw0), mag_db = abs_of(db0);
    for (int call = 0; call < 2; ++call) {
      cpu::matmul_backward_weight_bf16(dw.data(), db.data(), dout.data(), inp.data(), N, C, OC);
      cpu::matmul_backward_weight(ref_dw.data(), ref_db.data(), fd.data(), fi.data(), N, C, OC);
      cpu::matmul_backward_weight(mag_dw.data(), mag_db.data(), ad.data(), ai.data(), N, C, OC);
    }
    std::vector<double> tol_w(dw.size()), tol_b(db.size());
    for (size_t i = 0; i < dw.size(); ++i) tol_w[i] = (sum_order(2 * N + 1) + kU) * mag_dw[i];
    for (size_t i = 0; i < db.size(); ++i) tol_b[i] = (sum_order(2 * N + 1) + kU) * mag_db[i];
    expect_within("matmul_backward_weight_bf16 dweight (2 calls)" + tag, dw, ref_dw, tol_w);
    expect_within("matmul_backward_weight_bf16 dbias (2 calls)" + tag, db, ref_db, tol_b);
    // dbias may be null.
    std::vector<float> dw2 = dw0;
    cpu::matmul_backward_weight_bf16(dw2.data(), nullptr, dout.data(), inp.data(), N, C, OC);
    std::vector<float> ref2 = dw0;
    cpu::matmul_backward_weight(ref2.data(), nullptr, fd.data(), fi.data(), N, C, OC);
    std::vector<float> mag2 = abs_of(dw0);
    cpu::matmul_backward_weight(mag2.data(), nullptr, ad.data(), ai.data(), N, C, OC);
    std::vector<double> tol2(dw2.size());
    for (size_t i = 0; i < dw2.size(); ++i) tol2[i] = (sum_order(N + 1) + kU) * mag2[i];
    expect_within("matmul_backward_weight_bf16 (no dbias)" + tag, dw2, ref2, tol2);
  }
}

// The GPU test's shapes (C, OC multiples of 8) and one with no alignment at all
// (the twin has no size requirement).
INSTANTIATE_TEST_SUITE_P(Shapes, Bf16MatmulTwin,
                         ::testing::Values(Shape{77, 48, 200}, Shape{130, 96, 40}, Shape{13, 37, 45}));

// ---------------------------------------------------------------- layernorm
//
// Per row (x the widened bf16 input, C terms; m, s the reference mean and rstd):
//  mean: two fp32 sums of x differ by 2γ_C·Σ|x|, plus one division rounding each
//    side:  Δm = 2γ_C·M1 + 2u·|m|,  M1 = mean|x|.
//  rstd: v = Σ(x - m)²/C. The two sides' m differ by Δm, which changes Σ(x - m)²
//    by at most 2·Δm·Σ|x - m| + C·Δm² <= 2·Δm·sqrt(C·Σ(x - m)²) + C·Δm² (Cauchy-
//    Schwarz), i.e. relative 2·Δm·s' + (Δm·s')² with s' = 1/sqrt(v) >= s; the sums
//    differ by 2γ_C relative and the subtractions/squares/division add <= 8u. sqrt
//    halves a relative error and 1/x keeps it; sqrt and the division round once
//    each side. We use the generous Δs/s = 2γ_C + 16u + 2·Δm·s·(1 + Δm·s) with s
//    in place of s' (valid while eps << v, as for the test data: v ~ 1).
//  out = (x - m)·s·w + b: Δout <= |w|·(s·Δm + |x - m|·s·Δs/s) + 6u·(|x - m|·s·|w| + |b|).
//  Everything doubled for slack: the result is still ~1e-5 relative, far below the
//  bf16 rounding r = 2^-8 that dominates the tolerance.
//  backward_input (both sides given the same m, s): with dnorm = w·dout and
//    norm = (x - m)·s, the two means differ by Δa = 2γ_C·mean|dnorm| + 2u·|a| and
//    Δb = 2γ_C·mean|dnorm·norm| + 4u·mean|dnorm·norm| + 2u·|b|, so
//    Δdx <= s·(Δa + |norm|·Δb) + 6u·s·(|dnorm| + |a| + |norm·b|) (doubled).
//  backward_weight (fp32 +=): Δ <= (2γ_{N+1} + 4u)·(|initial| + Σ_n |dout·norm|).

struct RowBounds {
  std::vector<double> dm, ds_rel;  // per row: Δm and Δs/s
};

RowBounds ln_row_bounds(const std::vector<float>& x, const std::vector<float>& mean, const std::vector<float>& rstd,
                        int N, int C) {
  RowBounds rb{std::vector<double>(N), std::vector<double>(N)};
  for (int n = 0; n < N; ++n) {
    double m1 = 0;
    for (int c = 0; c < C; ++c) m1 += std::fabs(x[size_t(n) * C + c]);
    m1 /= C;
    const double dm = sum_order(C) * m1 + 2 * kU * std::fabs(mean[n]);
    const double dms = dm * rstd[n];
    rb.dm[n] = 2 * dm;
    rb.ds_rel[n] = 2 * (sum_order(C) + 16 * kU + 2 * dms * (1 + dms));
  }
  return rb;
}

// Per-element fp32 bound Δout of the forward output (see above).
std::vector<double> ln_out_delta(const std::vector<float>& x, const std::vector<float>& w,
                                 const std::vector<float>& b, const std::vector<float>& mean,
                                 const std::vector<float>& rstd, const RowBounds& rb, int N, int C) {
  std::vector<double> d(size_t(N) * C);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      const size_t i = size_t(n) * C + c;
      const double s = rstd[n], xm = std::fabs(double(x[i]) - mean[n]), aw = std::fabs(w[c]);
      d[i] = 2 * (aw * (s * rb.dm[n] + xm * s * rb.ds_rel[n]) + 6 * kU * (xm * s * aw + std::fabs(b[c])));
    }
  return d;
}

std::vector<double> ln_dinp_delta(const std::vector<float>& x, const std::vector<float>& w,
                                  const std::vector<float>& dout, const std::vector<float>& mean,
                                  const std::vector<float>& rstd, int N, int C) {
  std::vector<double> d(size_t(N) * C);
  for (int n = 0; n < N; ++n) {
    const double s = rstd[n];
    double a = 0, b = 0, a1 = 0, b1 = 0;
    for (int c = 0; c < C; ++c) {
      const size_t i = size_t(n) * C + c;
      const double dn = double(w[c]) * dout[i], nm = (double(x[i]) - mean[n]) * s;
      a += dn, b += dn * nm, a1 += std::fabs(dn), b1 += std::fabs(dn * nm);
    }
    a /= C, b /= C, a1 /= C, b1 /= C;
    const double da = sum_order(C) * a1 + 2 * kU * std::fabs(a);
    const double db = sum_order(C) * b1 + 4 * kU * b1 + 2 * kU * std::fabs(b);
    for (int c = 0; c < C; ++c) {
      const size_t i = size_t(n) * C + c;
      const double dn = std::fabs(double(w[c]) * dout[i]), nm = std::fabs((double(x[i]) - mean[n]) * s);
      d[i] = 2 * (s * (da + nm * db) + 6 * kU * s * (dn + std::fabs(a) + nm * std::fabs(b)));
    }
  }
  return d;
}

class Bf16LayerNormTwin : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(Bf16LayerNormTwin, MatchesFp32Ops) {
  const int N = GetParam().first, C = GetParam().second;
  const std::string tag = " N" + std::to_string(N) + " C" + std::to_string(C);
  const auto inp = bf16_normal(size_t(N) * C, 31, 1, 1.0f, 0.3f);  // non-zero mean
  const auto weight = bf16_normal(C, 31, 2, 0.3f, 1.0f);
  const auto bias = bf16_normal(C, 31, 3, 0.2f);
  const auto dout = bf16_normal(size_t(N) * C, 31, 4, 1.0f);
  const auto fx = widen(inp), fw = widen(weight), fb = widen(bias), fd = widen(dout);

  std::vector<bf16> out(size_t(N) * C);
  std::vector<float> mean(N), rstd(N), ref(out.size()), ref_mean(N), ref_rstd(N);
  cpu::layernorm_forward_bf16(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), N, C);
  cpu::layernorm_forward(ref.data(), ref_mean.data(), ref_rstd.data(), fx.data(), fw.data(), fb.data(), N, C);
  const RowBounds rb = ln_row_bounds(fx, ref_mean, ref_rstd, N, C);
  std::vector<double> tol_m(N), tol_s(N);
  for (int n = 0; n < N; ++n) {
    tol_m[n] = rb.dm[n];
    tol_s[n] = rb.ds_rel[n] * ref_rstd[n];
  }
  expect_within("layernorm_forward_bf16 mean" + tag, mean, ref_mean, tol_m);
  expect_within("layernorm_forward_bf16 rstd" + tag, rstd, ref_rstd, tol_s);
  const auto dout_delta = ln_out_delta(fx, fw, fb, ref_mean, ref_rstd, rb, N, C);
  std::vector<double> tol(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) tol[i] = one_rounding(ref[i], dout_delta[i]);
  expect_within("layernorm_forward_bf16 out" + tag, widen(out), ref, tol);

  // Backward on the reference statistics (both sides get the same mean/rstd).
  std::vector<bf16> dinp(size_t(N) * C);
  std::vector<float> ref_dinp(dinp.size());
  cpu::layernorm_backward_input_bf16(dinp.data(), dout.data(), inp.data(), weight.data(), ref_mean.data(),
                                     ref_rstd.data(), N, C);
  cpu::layernorm_backward_input(ref_dinp.data(), fd.data(), fx.data(), fw.data(), ref_mean.data(), ref_rstd.data(),
                                N, C);
  const auto ddx = ln_dinp_delta(fx, fw, fd, ref_mean, ref_rstd, N, C);
  std::vector<double> tol_dx(ddx.size());
  for (size_t i = 0; i < ddx.size(); ++i) tol_dx[i] = one_rounding(ref_dinp[i], ddx[i]);
  expect_within("layernorm_backward_input_bf16" + tag, widen(dinp), ref_dinp, tol_dx);

  const auto w0 = widen(bf16_normal(C, 31, 5, 1.0f)), b0 = widen(bf16_normal(C, 31, 6, 1.0f));
  std::vector<float> dw = w0, db = b0, ref_dw = w0, ref_db = b0;
  cpu::layernorm_backward_weight_bf16(dw.data(), db.data(), dout.data(), inp.data(), ref_mean.data(),
                                      ref_rstd.data(), N, C);
  cpu::layernorm_backward_weight(ref_dw.data(), ref_db.data(), fd.data(), fx.data(), ref_mean.data(),
                                 ref_rstd.data(), N, C);
  std::vector<double> tol_w(C), tol_b(C);
  for (int c = 0; c < C; ++c) {
    double mw = std::fabs(w0[c]), mb = std::fabs(b0[c]);
    for (int n = 0; n < N; ++n) {
      const size_t i = size_t(n) * C + c;
      mw += std::fabs(fd[i] * (double(fx[i]) - ref_mean[n]) * ref_rstd[n]);
      mb += std::fabs(fd[i]);
    }
    tol_w[c] = (sum_order(N + 1) + 4 * kU) * mw;
    tol_b[c] = (sum_order(N + 1) + 4 * kU) * mb;
  }
  expect_within("layernorm_backward_weight_bf16 dweight" + tag, dw, ref_dw, tol_w);
  expect_within("layernorm_backward_weight_bf16 dbias" + tag, db, ref_db, tol_b);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Bf16LayerNormTwin,
                         ::testing::Values(std::make_pair(77, 200), std::make_pair(130, 37),
                                           std::make_pair(3, 768)));

}  // namespace
}  // namespace pt
